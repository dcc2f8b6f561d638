/*
 * md_imgsize.c: an image's width and height read from its header bytes
 * (PNG, GIF, JPEG, WebP) without decoding anything — for URL previews'
 * og:image:width / og:image:height (as Synapse reports them), where loading
 * libvips for two numbers would be a waste.  Bounds-checked throughout:
 * the bytes come from arbitrary web servers.
 */
#include "media.h"

#include <errno.h>
#include <string.h>

static unsigned be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static unsigned le16(const unsigned char *p)
{
    return (unsigned)p[1] << 8 | p[0];
}

static unsigned be32(const unsigned char *p)
{
    return (unsigned)p[0] << 24 | (unsigned)p[1] << 16 | (unsigned)p[2] << 8 | p[3];
}

static int md_jpeg_size(const unsigned char *p, size_t len, unsigned *w, unsigned *h)
{
    size_t i = 2;
    while (i + 4 <= len) {
        if (p[i] != 0xff)
            return -EINVAL;
        unsigned char m = p[i + 1];
        if (m == 0xff) {          /* fill byte */
            i++;
            continue;
        }
        if (m == 0xd8 || (m >= 0xd0 && m <= 0xd7) || m == 0x01) {
            i += 2;
            continue;
        }
        unsigned seg = be16(p + i + 2);
        /* SOF0..SOF15, except DHT (c4), JPG (c8) and DAC (cc) */
        if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
            if (i + 9 > len)
                return -EINVAL;
            *h = be16(p + i + 5);
            *w = be16(p + i + 7);
            return 0;
        }
        if (seg < 2)
            return -EINVAL;
        i += 2 + seg;
    }
    return -EINVAL;
}

static int md_webp_size(const unsigned char *p, size_t len, unsigned *w, unsigned *h)
{
    if (len < 30)
        return -EINVAL;
    if (!memcmp(p + 12, "VP8 ", 4)) {
        *w = le16(p + 26) & 0x3fff;
        *h = le16(p + 28) & 0x3fff;
        return 0;
    }
    if (!memcmp(p + 12, "VP8L", 4)) {
        unsigned b = (unsigned)p[21] | (unsigned)p[22] << 8 | (unsigned)p[23] << 16 |
                     (unsigned)p[24] << 24;
        *w = (b & 0x3fff) + 1;
        *h = ((b >> 14) & 0x3fff) + 1;
        return 0;
    }
    if (!memcmp(p + 12, "VP8X", 4)) {
        *w = ((unsigned)p[24] | (unsigned)p[25] << 8 | (unsigned)p[26] << 16) + 1;
        *h = ((unsigned)p[27] | (unsigned)p[28] << 8 | (unsigned)p[29] << 16) + 1;
        return 0;
    }
    return -EINVAL;
}

int md_image_size(const void *data, size_t len, unsigned *w, unsigned *h)
{
    const unsigned char *p = data;
    if (len >= 24 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8) && !memcmp(p + 12, "IHDR", 4)) {
        *w = be32(p + 16);
        *h = be32(p + 20);
        return 0;
    }
    if (len >= 10 && !memcmp(p, "GIF8", 4)) {
        *w = le16(p + 6);
        *h = le16(p + 8);
        return 0;
    }
    if (len >= 4 && p[0] == 0xff && p[1] == 0xd8)
        return md_jpeg_size(p, len, w, h);
    if (len >= 16 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4))
        return md_webp_size(p, len, w, h);
    return -EINVAL;
}

/*
 * au_ulid.c: ULIDs (https://github.com/ulid/spec) for the admin API:
 * 48 bits of milliseconds then 80 bits, as 26 Crockford base32 digits.
 *
 * The admin API names every object with a ULID, as MAS does.  Rows that
 * have no ULID of their own get one derived stably from what they hold:
 * the time part is their creation time and the other 80 bits come from a
 * hash (a user: sha256 of its Matrix ID; a browser session: the first 20
 * hex digits of its stored cookie hash, so that the ULID can be turned
 * back into the row).  Random ULIDs stay au_ulid() (au_util.c).
 */
#include "au_admin.h"

#include <errno.h>
#include <string.h>

static const char aa_b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void au_ulid_encode(uint64_t ms, const unsigned char rnd[10], char out[AU_ULID_LEN + 1])
{
    unsigned char bytes[16];
    for (int i = 5; i >= 0; i--) {
        bytes[i] = (unsigned char)(ms & 0xff);
        ms >>= 8;
    }
    memcpy(bytes + 6, rnd, 10);
    /* 128 bits as 26 digits, most significant first (2 leading pad bits). */
    for (int i = 0; i < AU_ULID_LEN; i++) {
        int bit = i * 5 - 2;
        unsigned v = 0;
        for (int k = 0; k < 5; k++, bit++) {
            v <<= 1;
            if (bit >= 0)
                v |= (bytes[bit / 8] >> (7 - bit % 8)) & 1u;
        }
        out[i] = aa_b32[v];
    }
    out[AU_ULID_LEN] = '\0';
}

static int aa_b32_val(char c)
{
    if (c >= 'a' && c <= 'z')
        c = (char)(c - 'a' + 'A');
    const char *p = c ? strchr(aa_b32, c) : NULL;
    return p ? (int)(p - aa_b32) : -1;
}

int au_ulid_decode(const char *s, uint64_t *ms, unsigned char rnd[10])
{
    if (!s || strlen(s) != AU_ULID_LEN || aa_b32_val(s[0]) > 7)
        return -EINVAL;   /* the first digit carries only 3 bits */
    unsigned char bytes[16] = { 0 };
    for (int i = 0; i < AU_ULID_LEN; i++) {
        int v = aa_b32_val(s[i]);
        if (v < 0)
            return -EINVAL;
        for (int k = 4; k >= 0; k--) {
            int bit = i * 5 - 2 + (4 - k);
            if (bit >= 0 && ((v >> k) & 1))
                bytes[bit / 8] |= (unsigned char)(0x80u >> (bit % 8));
        }
    }
    uint64_t t = 0;
    for (int i = 0; i < 6; i++)
        t = (t << 8) | bytes[i];
    if (ms)
        *ms = t;
    if (rnd)
        memcpy(rnd, bytes + 6, 10);
    return 0;
}

bool au_ulid_valid(const char *s)
{
    if (au_ulid_decode(s, NULL, NULL) < 0)
        return false;
    for (const char *p = s; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            return false;   /* the canonical form is upper case */
    return true;
}

void au_ulid_derive(uint64_t ms, const char *seed, char out[AU_ULID_LEN + 1])
{
    unsigned char d[32];
    mx_sha256(seed, strlen(seed), d);
    au_ulid_encode(ms, d, out);
}

static int aa_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int au_ulid_from_hex(uint64_t ms, const char *hex, char out[AU_ULID_LEN + 1])
{
    unsigned char rnd[10];
    for (int i = 0; i < 10; i++) {
        int h = hex ? aa_hexval(hex[2 * i]) : -1, l = h >= 0 ? aa_hexval(hex[2 * i + 1]) : -1;
        if (h < 0 || l < 0)
            return -EINVAL;
        rnd[i] = (unsigned char)(h * 16 + l);
    }
    au_ulid_encode(ms, rnd, out);
    return 0;
}

int au_ulid_to_hex(const char *ulid, uint64_t *ms, char hex[21])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char rnd[10];
    int rc = au_ulid_decode(ulid, ms, rnd);
    if (rc < 0)
        return rc;
    for (int i = 0; i < 10; i++) {
        hex[2 * i] = digits[rnd[i] >> 4];
        hex[2 * i + 1] = digits[rnd[i] & 15];
    }
    hex[20] = '\0';
    return 0;
}

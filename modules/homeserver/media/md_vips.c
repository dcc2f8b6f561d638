/*
 * md_vips.c: thumbnailer.so — every libvips call of the media repository,
 * in a shared object of its own that md_thumbnail.c dlopens on the first
 * thumbnail (md_thumbnailer.h), so that an idle homeserver never maps
 * libvips, glib and the image codecs.
 *
 * A still thumbnail is vips_thumbnail's (shrink-on-load, centre crop or fit)
 * saved as JPEG (flattened) or PNG.  An animated one (GIF or WebP source
 * with several frames, asked for with animated=true) loads every frame,
 * scales them together, crops each frame for "crop", and is saved as an
 * animated WebP.  The source's dimensions are read from its header and
 * refused above max_pixels before anything is decoded; an animation whose
 * frames together pass that limit gets a still thumbnail.  Truncated files
 * fail (fail_on truncated).
 */
#include "md_thumbnailer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wshadow"
#include <vips/vips.h>
#pragma GCC diagnostic pop

static int tn_err(md_tn_job_t *j, const char *what)
{
    char *e = vips_error_buffer_copy();
    snprintf(j->errmsg, sizeof(j->errmsg), "%s: %s", what, e ? e : "?");
    if (e)
        g_free(e);
    for (char *p = j->errmsg; *p; p++)
        if (*p == '\n')
            *p = ' ';
    return -EINVAL;
}

/* Replaces *img by `next` (both owned). */
static void tn_swap(VipsImage **img, VipsImage *next)
{
    g_object_unref(*img);
    *img = next;
}

static int tn_still(md_tn_job_t *j, VipsImage **out)
{
    int rc;
    if (j->crop)
        rc = vips_thumbnail(j->src_path, out, j->w, "height", j->h, "crop",
                            VIPS_INTERESTING_CENTRE, "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
    else
        rc = vips_thumbnail(j->src_path, out, j->w, "height", j->h, "size", VIPS_SIZE_DOWN,
                            "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
    if (rc)
        return tn_err(j, "thumbnail");
    if (j->jpeg && vips_image_hasalpha(*out)) {
        VipsImage *flat = NULL;
        if (vips_flatten(*out, &flat, NULL)) {
            g_object_unref(*out);
            return tn_err(j, "flatten");
        }
        tn_swap(out, flat);
    }
    return 0;
}

/* Every frame of `src` (w x h per frame), scaled together; for "crop",
 * each frame then cut to the box around its centre. */
static int tn_animated(md_tn_job_t *j, int w, int h, VipsImage **out)
{
    VipsImage *all = vips_image_new_from_file(j->src_path, "n", -1, "access",
                                              VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                              VIPS_FAIL_ON_TRUNCATED, NULL);
    if (!all)
        return tn_err(j, "load");
    int tw = j->w, th = j->h;
    VipsSize how = VIPS_SIZE_DOWN;
    if (j->crop) {
        double s = (double)j->w / w > (double)j->h / h ? (double)j->w / w : (double)j->h / h;
        tw = (int)(w * s + 0.5);
        th = (int)(h * s + 0.5);
        tw = tw < j->w ? j->w : tw;
        th = th < j->h ? j->h : th;
        how = VIPS_SIZE_BOTH;
    }
    VipsImage *img = NULL;
    int rc = vips_thumbnail_image(all, &img, tw, "height", th, "size", how, NULL);
    g_object_unref(all);
    if (rc)
        return tn_err(j, "thumbnail");
    if (!j->crop) {
        *out = img;
        return 0;
    }
    int ph = vips_image_get_page_height(img);
    int n = ph > 0 ? vips_image_get_height(img) / ph : 1;
    int cw = vips_image_get_width(img);
    int left = cw > j->w ? (cw - j->w) / 2 : 0, top = ph > j->h ? (ph - j->h) / 2 : 0;
    int fw = cw < j->w ? cw : j->w, fh = ph < j->h ? ph : j->h;
    VipsImage **frames = calloc((size_t)n, sizeof(*frames));
    if (!frames) {
        g_object_unref(img);
        return -ENOMEM;
    }
    rc = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = vips_extract_area(img, &frames[i], left, i * ph + top, fw, fh, NULL);
    VipsImage *joined = NULL;
    if (!rc)
        rc = vips_arrayjoin(frames, &joined, n, "across", 1, NULL);
    for (int i = 0; i < n; i++)
        if (frames[i])
            g_object_unref(frames[i]);
    free(frames);
    g_object_unref(img);
    if (rc)
        return tn_err(j, "crop");
    vips_image_set_int(joined, VIPS_META_PAGE_HEIGHT, fh);
    *out = joined;
    return 0;
}

static int tn_make(md_tn_job_t *j)
{
    VipsImage *hdr = vips_image_new_from_file(j->src_path, "access", VIPS_ACCESS_SEQUENTIAL,
                                              NULL);
    if (!hdr)
        return tn_err(j, "header");
    int w = vips_image_get_width(hdr), h = vips_image_get_height(hdr);
    int pages = vips_image_get_n_pages(hdr);
    g_object_unref(hdr);
    uint64_t px = (uint64_t)w * (uint64_t)h;
    if (px >= j->max_pixels) {
        snprintf(j->errmsg, sizeof(j->errmsg), "image too large (%llu pixels)",
                 (unsigned long long)px);
        return -E2BIG;
    }
    bool anim = j->animated && pages > 1 && px * (uint64_t)pages < j->max_pixels;
    VipsImage *img = NULL;
    int rc = anim ? tn_animated(j, w, h, &img) : tn_still(j, &img);
    if (rc)
        return rc;
    void *buf = NULL;
    size_t len = 0;
    if (anim) {
        rc = vips_webpsave_buffer(img, &buf, &len, "Q", 75, "strip", TRUE, NULL);
        j->out_type = "image/webp";
        j->height = vips_image_get_page_height(img);
    } else if (j->jpeg) {
        rc = vips_jpegsave_buffer(img, &buf, &len, "Q", 80, "strip", TRUE, NULL);
        j->out_type = "image/jpeg";
        j->height = vips_image_get_height(img);
    } else {
        rc = vips_pngsave_buffer(img, &buf, &len, "strip", TRUE, NULL);
        j->out_type = "image/png";
        j->height = vips_image_get_height(img);
    }
    j->width = vips_image_get_width(img);
    g_object_unref(img);
    if (rc)
        return tn_err(j, "save");
    j->buf = malloc(len ? len : 1);
    if (j->buf)
        memcpy(j->buf, buf, len);
    g_free(buf);
    if (!j->buf)
        return -ENOMEM;
    j->len = len;
    return 0;
}

static int tn_init(char *err, size_t errlen)
{
    if (VIPS_INIT("mxstack")) {
        snprintf(err, errlen, "libvips: cannot initialise: %s", vips_error_buffer());
        return -EINVAL;
    }
    vips_block_untrusted_set(TRUE);
    vips_cache_set_max(0);      /* files change under the same names */
    return 0;
}

__attribute__((visibility("default"))) const md_tn_iface_t md_thumbnailer = {
    .abi = MD_TN_ABI,
    .init = tn_init,
    .make = tn_make,
};

/*
 * md_thumbnailer.h: the interface between md_thumbnail.c and the
 * thumbnailer shared object (thumbnailer.so, md_vips.c), which holds every
 * libvips call.  The homeserver module does not link libvips: it dlopens
 * thumbnailer.so on the first thumbnail, so an idle server never maps
 * libvips and its dependencies.  The object exports one symbol,
 * MD_TN_SYMBOL, a const md_tn_iface_t whose `abi` must equal MD_TN_ABI.
 */
#ifndef HS_MD_THUMBNAILER_H
#define HS_MD_THUMBNAILER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MD_TN_ABI 1
#define MD_TN_SYMBOL "md_thumbnailer"
#define MD_TN_FILE "thumbnailer.so"

/* One thumbnail to make.  The caller fills the inputs; make() fills the
 * outputs.  `buf` is malloc'd and owned by the caller (free()). */
typedef struct md_tn_job {
    const char *src_path;            /* a JPEG, PNG, GIF or WebP file (sniffed) */
    int w, h;                        /* the box */
    bool crop;                       /* fill the box exactly (crop) or fit in it */
    bool jpeg;                       /* still output: JPEG (else PNG) */
    bool animated;                   /* animated output wanted (animated=true) */
    uint64_t max_pixels;             /* refuse sources with more pixels */
    void *buf;
    size_t len;
    int width, height;               /* of the result (one frame) */
    const char *out_type;            /* static: image/jpeg, image/png, image/webp */
    char errmsg[256];
} md_tn_job_t;

typedef struct md_tn_iface {
    int abi;                         /* MD_TN_ABI */
    /* Once, before any make(): 0 or a negative code (message in err). */
    int (*init)(char *err, size_t errlen);
    /* Makes the thumbnail: 0, or a negative code with errmsg set.  Worker
     * threads; any number at once. */
    int (*make)(md_tn_job_t *job);
} md_tn_iface_t;

#endif /* HS_MD_THUMBNAILER_H */

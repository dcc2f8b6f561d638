/*
 * fs.c: small file-system helpers every module that ships files needs:
 * reading a whole (small) file into memory, and finding the directory of
 * files installed with mxstack ($(pkgdatadir)/web/..., or the source tree's
 * copy when running from a build tree).  Before they lived here, the auth,
 * web and admin modules each had their own copy.
 */
#include "core.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *mx_read_file(int dirfd, const char *path, int flags, size_t max_len, size_t *len)
{
    /* O_NONBLOCK: a FIFO in place of the file must not hang the open. */
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | flags);
    if (fd < 0)
        return NULL;
    struct stat st;
    int err = 0;
    if (fstat(fd, &st) < 0)
        err = errno;
    else if (!S_ISREG(st.st_mode))
        err = EINVAL;
    else if ((uint64_t)st.st_size > (uint64_t)max_len)
        err = EFBIG;
    /* The size is a hint (the file may grow or shrink while it is read):
     * read until EOF, and refuse more than max_len bytes. */
    if (max_len > SIZE_MAX / 4)
        max_len = SIZE_MAX / 4;
    size_t cap = 0, n = 0;
    char *buf = NULL;
    if (!err) {
        cap = ((uint64_t)st.st_size < (uint64_t)max_len ? (size_t)st.st_size : max_len) + 2;
        if (!(buf = malloc(cap)))
            err = ENOMEM;
    }
    while (!err) {
        if (n > max_len) {
            err = EFBIG;
            break;
        }
        if (n + 1 == cap) {
            size_t ncap = cap * 2 < max_len + 2 ? cap * 2 : max_len + 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                err = ENOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            err = errno;
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    close(fd);
    if (err) {
        free(buf);
        errno = err;
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

char *mx_share_dir(const char *configured, const char *sub)
{
    if (configured && *configured)
        return strdup(configured);
    if (!sub || !*sub || sub[0] == '/' || strstr(sub, "..")) {
        errno = EINVAL;
        return NULL;
    }
    static const char *const bases[] = {
#ifdef MX_DATADIR
        MX_DATADIR,
#endif
#ifdef MX_SRCDIR
        MX_SRCDIR,
#endif
        NULL,
    };
    for (size_t i = 0; bases[i]; i++) {
        size_t n = strlen(bases[i]) + strlen(sub) + 2;
        char *p = malloc(n);
        if (!p)
            return NULL;
        snprintf(p, n, "%s/%s", bases[i], sub);
        if (is_dir(p))
            return p;
        free(p);
    }
    return strdup(sub);
}

/*
 * http_sendfile.c: mx_req_reply_file, replies whose body is a range of an
 * open file (static files of the web module, later media downloads).
 *
 * The API is shaped for sendfile(2): the module hands over a descriptor,
 * an offset and a length, never the bytes.  This first implementation reads
 * the range into memory and replies through mx_req_reply, because the
 * connection code (http_conn.c) writes each response with one uv_write and
 * resumes parsing as soon as it is queued; sending the body with
 * uv_fs_sendfile (plain TCP) or read+write chunks (TLS) needs a hook there:
 * "headers written, now stream this file, then call request_done".  When
 * that hook exists only this file changes; modules stay as they are.
 */
#include "http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads `len` bytes at `off` into `buf`; 0, or -errno (-EIO on a short
 * file: it shrank since the caller's fstat). */
static int read_range(int fd, char *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, off + (off_t)done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        done += (size_t)n;
    }
    return 0;
}

void mx_req_reply_file(mx_req_t *r, int status, const char *content_type, int fd, off_t offset,
                       size_t len)
{
    if (!r || r->magic != MX__REQ_MAGIC || r->replied || !r->conn || offset < 0) {
        if (fd >= 0)
            close(fd);
        mx_req_reply(r, offset < 0 ? 500 : status, content_type, NULL, 0);
        return;
    }
    /* A HEAD reply only announces the length: zeroed (lazily mapped)
     * memory stands in for bytes that are never sent. */
    char *buf = !len ? NULL : r->is_head ? calloc(1, len) : malloc(len);
    int rc = 0;
    if (len && !buf)
        rc = -ENOMEM;
    else if (len && !r->is_head)
        rc = read_range(fd, buf, len, offset);
    if (fd >= 0)
        close(fd);
    if (rc < 0) {
        free(buf);
        mx_log("http", MX_LOG_ERROR, "reading the body of %s failed: %s", r->path, strerror(-rc));
        mx_req_error(r, 500, "M_UNKNOWN", "Internal server error");
        return;
    }
    mx_req_reply(r, status, content_type, buf, len);
    free(buf);
}

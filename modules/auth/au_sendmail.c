/*
 * au_sendmail.c: the `sendmail` e-mail transport (MAS's `email.transport:
 * sendmail` with `command`, default "sendmail"): one child process per
 * message, spawned with uv_spawn (never through a shell) with the
 * arguments MAS's mailer passes: `command -i -f <from> -- <recipient>`; the
 * RFC 5322 message is written on its stdin, which is then closed.
 *
 * The message counts as sent when the command exits with status 0; a
 * non-zero status, a signal, a failed spawn or write, or no exit within the
 * timeout (the child is killed) is a failure.  The first bytes the command
 * writes on stderr are kept for the log.  Everything runs on the loop; the
 * callback runs once every handle is closed.
 */
#include "auth.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define AU_SM_ERR_MAX 300

typedef struct au_sm {
    uv_process_t proc;
    uv_pipe_t in, err;
    uv_timer_t timer;
    uv_write_t wr;
    uv_shutdown_t shut;
    char *msg;                    /* malloc'd copy being written */
    size_t msg_len;
    int open;                     /* handles not yet closed */
    int status;                   /* first failure, 0 while fine */
    bool exited;
    char errtext[AU_SM_ERR_MAX + 1];
    size_t errlen;
    au_sendmail_fn cb;
    void *ud;
} au_sm_t;

static void au_sm_fail(au_sm_t *s, int status, const char *why)
{
    if (s->status)
        return;
    s->status = status;
    if (why && !s->errlen)
        s->errlen = (size_t)snprintf(s->errtext, sizeof(s->errtext), "%s", why);
}

static void au_sm_closed(uv_handle_t *h)
{
    au_sm_t *s = h->data;
    if (--s->open > 0)
        return;
    s->cb(s->status, s->errlen ? s->errtext : "", s->ud);
    free(s->msg);
    free(s);
}

static void au_sm_close(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, au_sm_closed);
}

static void au_sm_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
    au_sm_t *s = p->data;
    s->exited = true;
    if (term_signal)
        au_sm_fail(s, -EIO, "killed by a signal");
    else if (exit_status != 0) {
        char why[64];
        snprintf(why, sizeof(why), "exit status %lld", (long long)exit_status);
        au_sm_fail(s, -EIO, why);
    }
    uv_timer_stop(&s->timer);
    au_sm_close((uv_handle_t *)&s->timer);
    au_sm_close((uv_handle_t *)&s->in);
    au_sm_close((uv_handle_t *)&s->err);   /* a grandchild may hold it open */
    au_sm_close((uv_handle_t *)p);
}

static void au_sm_timeout(uv_timer_t *t)
{
    au_sm_t *s = t->data;
    au_sm_fail(s, MX_ETIMEOUT, "timed out");
    uv_process_kill(&s->proc, SIGKILL);
}

static void au_sm_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char scratch[512];   /* read on the loop only; copied at once */
    *buf = uv_buf_init(scratch, sizeof(scratch));
}

static void au_sm_err_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    au_sm_t *s = st->data;
    if (n < 0) {
        au_sm_close((uv_handle_t *)st);
        return;
    }
    size_t room = AU_SM_ERR_MAX - s->errlen;
    size_t take = (size_t)n < room ? (size_t)n : room;
    if (s->status == 0 && take) {   /* the command's own words come first */
        for (size_t i = 0; i < take; i++) {
            char c = buf->base[i];
            s->errtext[s->errlen++] = (c >= 0x20 && c < 0x7f) ? c : ' ';
        }
        s->errtext[s->errlen] = '\0';
    }
}

static void au_sm_shut(uv_shutdown_t *req, int status)
{
    (void)status;
    au_sm_close((uv_handle_t *)req->handle);
}

static void au_sm_written(uv_write_t *w, int status)
{
    au_sm_t *s = w->data;
    if (status < 0) {
        au_sm_fail(s, -EIO, uv_strerror(status));
        au_sm_close((uv_handle_t *)&s->in);
        return;
    }
    s->shut.data = s;
    if (uv_is_closing((uv_handle_t *)&s->in) ||
        uv_shutdown(&s->shut, (uv_stream_t *)&s->in, au_sm_shut) < 0)
        au_sm_close((uv_handle_t *)&s->in);
}

int au_sendmail_run(const char *command, const char *from, const char *rcpt, const char *msg,
                    uint64_t timeout_ms, au_sendmail_fn cb, void *ud)
{
    if (!command || !from || !rcpt || !msg || !cb)
        return -EINVAL;
    au_sm_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->msg = strdup(msg))) {
        free(s);
        return -ENOMEM;
    }
    s->msg_len = strlen(msg);
    s->cb = cb;
    s->ud = ud;
    uv_loop_t *loop = mx_loop();
    uv_pipe_init(loop, &s->in, 0);
    uv_pipe_init(loop, &s->err, 0);
    uv_timer_init(loop, &s->timer);
    s->in.data = s->err.data = s->timer.data = s->proc.data = s->wr.data = s;
    s->open = 4;                  /* in, err, timer, process */
    char *args[] = { (char *)command, "-i", "-f", (char *)from, "--", (char *)rcpt, NULL };
    uv_stdio_container_t io[3] = {
        { .flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&s->in },
        { .flags = UV_IGNORE },
        { .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&s->err },
    };
    uv_process_options_t o = { .exit_cb = au_sm_exit, .file = command, .args = args,
                               .stdio_count = 3, .stdio = io };
    int rc = uv_spawn(loop, &s->proc, &o);
    if (rc < 0) {
        /* No process (the handle must still be closed): the callback
         * comes from the closes. */
        au_sm_fail(s, -EIO, uv_strerror(rc));
        au_sm_close((uv_handle_t *)&s->proc);
        au_sm_close((uv_handle_t *)&s->in);
        au_sm_close((uv_handle_t *)&s->err);
        au_sm_close((uv_handle_t *)&s->timer);
        return 0;
    }
    uv_timer_start(&s->timer, au_sm_timeout, timeout_ms, 0);
    uv_read_start((uv_stream_t *)&s->err, au_sm_alloc, au_sm_err_read);
    uv_buf_t b = uv_buf_init(s->msg, (unsigned)s->msg_len);
    if (uv_write(&s->wr, (uv_stream_t *)&s->in, &b, 1, au_sm_written) < 0) {
        au_sm_fail(s, -EIO, "cannot write to the command");
        au_sm_close((uv_handle_t *)&s->in);
    }
    return 0;
}

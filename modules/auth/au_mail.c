/*
 * au_mail.c: outgoing e-mail (`auth.email`, MAS's `email:` section) over
 * SMTP with libcurl, or through a local sendmail command (au_sendmail.c).
 *
 *   email:
 *     from: '"Example" <auth@example.com>'   required with smtp
 *     reply_to: '"No reply" <no-reply@example.com>'
 *     transport: blackhole | smtp | sendmail
 *     command: sendmail                      sendmail only: the program
 *                                            (PATH searched without a /)
 *     mode: plain | tls | starttls           default starttls
 *     hostname, port                         port: 25 / 465 / 587 by mode
 *     username, password                     AUTH when set
 *     timeout: 30s                           whole transfer (connect: 10s),
 *                                            or the sendmail command's run
 *     ca_file                                extra CA bundle (self-signed)
 *
 * As in MAS, the keys of the other transport are refused (mode, hostname,
 * port, username, password, ca_file with sendmail; command with smtp).
 *
 * The transfer never runs on the loop: each message is one uv_queue_work
 * job (libcurl's easy interface in a pool thread, CURLOPT_NOSIGNAL, with
 * timeouts), at most AU_MAIL_INFLIGHT at a time so that a stalled server
 * cannot take the whole thread pool (password hashing uses it too); more
 * wait in a bounded FIFO.  The callback runs on the loop.  Sendmail jobs
 * share the FIFO and the limit; they run on the loop (child processes).
 *
 * Header injection is impossible by construction: every header value is
 * checked for control characters (au_mail_header_ok) and the Subject is
 * RFC 2047-encoded when not plain ASCII.
 */
#include "auth.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define AU_MAIL_INFLIGHT 2
#define AU_MAIL_QUEUE_MAX 64
#define AU_MAIL_CONNECT_MS 10000L

typedef struct au_mail_job {
    uv_work_t work;
    struct au_mail_job *next;
    char *url, *from_addr, *rcpt, *msg;   /* malloc'd, owned by the job */
    size_t msg_len, msg_off;
    int status;                           /* set by the worker */
    char errbuf[CURL_ERROR_SIZE];
    au_mail_fn cb;
    void *ud;
} au_mail_job_t;

struct au_mail {
    bool smtp;                   /* transport: smtp */
    char *command;               /* transport: sendmail: the program (malloc) */
    char *url;                   /* smtp[s]://host:port (malloc) */
    char *from_addr;             /* the bare address of `from` (malloc) */
    int inflight, queued;
    au_mail_job_t *head, *tail;  /* waiting jobs */
    bool curl_ready;
};

/* ------------------------------------------------------------ checks --- */

bool au_mail_header_ok(const char *s)
{
    if (!s)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return strlen(s) <= 900;
}

/* The addr-spec of `mailbox` ("Name <a@b>" or "a@b") into `out`; 0 or -EINVAL. */
static int au_mail_addr(const char *mailbox, char *out, size_t outlen)
{
    if (!au_mail_header_ok(mailbox))
        return -EINVAL;
    const char *lt = strrchr(mailbox, '<');
    const char *s = mailbox;
    size_t n = strlen(mailbox);
    if (lt) {
        const char *gt = strchr(lt, '>');
        if (!gt || gt[1])
            return -EINVAL;
        s = lt + 1;
        n = (size_t)(gt - s);
    }
    while (n && *s == ' ')
        s++, n--;
    while (n && s[n - 1] == ' ')
        n--;
    if (n >= outlen)
        return -EINVAL;
    memcpy(out, s, n);
    out[n] = '\0';
    return au_email_valid(out) ? 0 : -EINVAL;
}

/* ------------------------------------------------------------ config --- */

static int au_mail_fail(char *err, size_t errlen, const char *key, const char *why)
{
    snprintf(err, errlen, "auth.email.%s: %s", key, why);
    return -EINVAL;
}

/* transport: sendmail: `from` and a usable `command` (a path must name an
 * executable file; a bare name is looked up in PATH when sending). */
static int au_mail_sendmail_init(struct au_mail *m, char *err, size_t errlen)
{
    const au_conf_t *c = au.conf;
    const char *cmd = c->email_command ? c->email_command : "sendmail";
    if (!c->email_from)
        return au_mail_fail(err, errlen, "from", "required with transport: sendmail");
    if (!*cmd || !au_mail_header_ok(cmd))
        return au_mail_fail(err, errlen, "command", "must be a program name or path");
    if (strchr(cmd, '/') && access(cmd, X_OK) < 0)
        return au_mail_fail(err, errlen, "command", "not an executable file");
    char addr[256];
    if (au_mail_addr(c->email_from, addr, sizeof(addr)) < 0 || addr[0] == '-')
        return au_mail_fail(err, errlen, "from", "not a mailbox (\"Name\" <a@b.c> or a@b.c)");
    m->command = strdup(cmd);
    m->from_addr = strdup(addr);
    return m->command && m->from_addr ? 0 : -ENOMEM;
}

int au_mail_init(char *err, size_t errlen)
{
    static const char *const known[] = { "from", "reply_to", "transport", "mode", "hostname",
                                         "port", "username", "password", "timeout", "ca_file",
                                         "command", NULL };
    static const char *const smtp_only[] = { "mode", "hostname", "port", "username",
                                             "password", "ca_file", NULL };
    const au_conf_t *c = au.conf;
    const json_t *sec = json_object_get(json_object_get(mx_server_conf()->root, "auth"), "email");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)sec, k, v) {
        size_t i = 0;
        while (known[i] && strcmp(known[i], k))
            i++;
        if (!known[i])
            return au_mail_fail(err, errlen, k, "unknown key");
    }
    const char *tr = c->email_transport ? c->email_transport : "blackhole";
    const char *ev = json_string_value(json_object_get(c->account, "email_verification"));
    bool smtp = !strcmp(tr, "smtp"), sendmail = !strcmp(tr, "sendmail");
    if (!smtp && !sendmail && strcmp(tr, "blackhole"))
        return au_mail_fail(err, errlen, "transport", "must be blackhole, smtp or sendmail");
    if (ev && !strcmp(ev, "smtp") && !smtp && !sendmail) {
        snprintf(err, errlen, "auth.account.email_verification: smtp needs auth.email with "
                              "transport: smtp (hostname and from) or sendmail (from)");
        return -EINVAL;
    }
    for (size_t i = 0; sendmail && smtp_only[i]; i++)
        if (json_object_get(sec, smtp_only[i]))
            return au_mail_fail(err, errlen, smtp_only[i], "not used with transport: sendmail");
    if (!sendmail && c->email_command)
        return au_mail_fail(err, errlen, "command", "only used with transport: sendmail");
    struct au_mail *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    au.mail = m;
    m->smtp = smtp;
    char addr[256];
    if (c->email_from && au_mail_addr(c->email_from, addr, sizeof(addr)) < 0)
        return au_mail_fail(err, errlen, "from", "not a mailbox (\"Name\" <a@b.c> or a@b.c)");
    if (c->email_reply_to && au_mail_addr(c->email_reply_to, addr, sizeof(addr)) < 0)
        return au_mail_fail(err, errlen, "reply_to",
                            "not a mailbox (\"Name\" <a@b.c> or a@b.c)");
    if (sendmail)
        return au_mail_sendmail_init(m, err, errlen);
    if (!smtp)
        return 0;
    const char *mode = c->email_mode ? c->email_mode : "starttls";
    bool tls = !strcmp(mode, "tls");
    if (!tls && strcmp(mode, "plain") && strcmp(mode, "starttls"))
        return au_mail_fail(err, errlen, "mode", "must be plain, tls or starttls");
    if (!c->email_from)
        return au_mail_fail(err, errlen, "from", "required with transport: smtp");
    au_mail_addr(c->email_from, addr, sizeof(addr));
    const char *host = c->email_hostname;
    if (!host || !*host || strlen(host) > 253 || strpbrk(host, "/@?#:[] \t\r\n"))
        return au_mail_fail(err, errlen, "hostname", "a host name or IPv4 address is required");
    int64_t port = c->email_port ? c->email_port : tls ? 465 : !strcmp(mode, "plain") ? 25 : 587;
    if (port < 1 || port > 65535)
        return au_mail_fail(err, errlen, "port", "must be between 1 and 65535");
    if (!c->email_username != !c->email_password)
        return au_mail_fail(err, errlen, c->email_username ? "password" : "username",
                            "username and password go together");
    if (c->email_timeout_ms < 1000)
        return au_mail_fail(err, errlen, "timeout", "must be at least 1s");
    size_t ul = strlen(host) + 32;
    m->url = malloc(ul);
    m->from_addr = strdup(addr);
    if (!m->url || !m->from_addr)
        return -ENOMEM;
    snprintf(m->url, ul, "%s://%s:%lld", tls ? "smtps" : "smtp", host, (long long)port);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "auth.email: libcurl initialisation failed");
        return -EIO;
    }
    m->curl_ready = true;
    return 0;
}

bool au_mail_smtp(void)
{
    return au.mail && (au.mail->smtp || au.mail->command);
}

static void au_mail_job_free(au_mail_job_t *j)
{
    free(j->url);
    free(j->from_addr);
    free(j->rcpt);
    free(j->msg);
    free(j);
}

void au_mail_fini(void)
{
    struct au_mail *m = au.mail;
    if (!m)
        return;
    /* Jobs still waiting never started; running ones cannot be in flight
     * here (the loop has stopped). */
    while (m->head) {
        au_mail_job_t *j = m->head;
        m->head = j->next;
        au_mail_job_free(j);
    }
    if (m->curl_ready && !m->inflight)
        curl_global_cleanup();
    free(m->url);
    free(m->command);
    free(m->from_addr);
    free(m);
    au.mail = NULL;
}

/* ----------------------------------------------------------- message --- */

/* RFC 5322 date of `t` (UTC), locale-independent. */
static void au_mail_date(time_t t, char *out, size_t n)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const mons[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, n, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* `s` as a header value: itself when printable ASCII, else RFC 2047
 * base64 words (pool). */
static char *au_mail_word(mx_pool_t *pool, const char *s)
{
    bool ascii = true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p >= 0x80)
            ascii = false;
    if (ascii)
        return mx_pstrdup(pool, s);
    char *b = mx_b64_encode(s, strlen(s), 0);
    char *o = b ? mx_psprintf(pool, "=?UTF-8?B?%s?=", b) : NULL;
    free(b);
    return o;
}

/* `body` with every line ending as CRLF (pool). */
static char *au_mail_crlf(mx_pool_t *pool, const char *body)
{
    size_t n = strlen(body), extra = 0;
    for (size_t i = 0; i < n; i++)
        extra += body[i] == '\n' && (i == 0 || body[i - 1] != '\r');
    char *o = mx_palloc(pool, n + extra + 3);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (body[i] == '\n' && (i == 0 || body[i - 1] != '\r'))
            o[k++] = '\r';
        o[k++] = body[i];
    }
    if (k < 2 || o[k - 1] != '\n')
        o[k++] = '\r', o[k++] = '\n';
    o[k] = '\0';
    return o;
}

char *au_mail_compose(mx_pool_t *pool, const char *to, const char *subject, const char *body)
{
    const au_conf_t *c = au.conf;
    char addr[256];
    if (!c->email_from || au_mail_addr(to, addr, sizeof(addr)) < 0 ||
        !au_mail_header_ok(subject))
        return NULL;
    char date[64];
    au_mail_date(time(NULL), date, sizeof(date));
    const char *at = strrchr(addr, '@');
    char from_addr[256];
    au_mail_addr(c->email_from, from_addr, sizeof(from_addr));
    const char *domain = strrchr(from_addr, '@') + 1;
    char *subj = au_mail_word(pool, subject);
    char *text = au_mail_crlf(pool, body);
    char *id = au_ulid(pool);
    if (!subj || !text || !id || !at)
        return NULL;
    return mx_psprintf(pool,
                       "From: %s\r\n"
                       "To: <%s>\r\n"
                       "%s%s%s"
                       "Subject: %s\r\n"
                       "Date: %s\r\n"
                       "Message-ID: <%s@%s>\r\n"
                       "MIME-Version: 1.0\r\n"
                       "Content-Type: text/plain; charset=utf-8\r\n"
                       "Content-Transfer-Encoding: 8bit\r\n"
                       "Auto-Submitted: auto-generated\r\n"
                       "\r\n%s",
                       c->email_from, addr, c->email_reply_to ? "Reply-To: " : "",
                       c->email_reply_to ? c->email_reply_to : "",
                       c->email_reply_to ? "\r\n" : "", subj, date, id, domain, text);
}

/* ------------------------------------------------------------ sending --- */

static size_t au_mail_read(char *buf, size_t size, size_t nitems, void *ud)
{
    au_mail_job_t *j = ud;
    size_t room = size * nitems, left = j->msg_len - j->msg_off;
    size_t n = left < room ? left : room;
    memcpy(buf, j->msg + j->msg_off, n);
    j->msg_off += n;
    return n;
}

/* Pool thread: the whole SMTP transaction. */
static void au_mail_work(uv_work_t *w)
{
    au_mail_job_t *j = w->data;
    const au_conf_t *c = au.conf;
    CURL *h = curl_easy_init();
    struct curl_slist *rcpt = NULL;
    char rcpt_b[300], from_b[300];
    snprintf(rcpt_b, sizeof(rcpt_b), "<%s>", j->rcpt);
    snprintf(from_b, sizeof(from_b), "<%s>", j->from_addr);
    if (!h || !(rcpt = curl_slist_append(NULL, rcpt_b))) {
        snprintf(j->errbuf, sizeof(j->errbuf), "out of memory");
        j->status = -ENOMEM;
        goto out;
    }
    bool starttls = c->email_mode == NULL || !strcmp(c->email_mode, "starttls");
    curl_easy_setopt(h, CURLOPT_URL, j->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, AU_MAIL_CONNECT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->email_timeout_ms);
    curl_easy_setopt(h, CURLOPT_USE_SSL, starttls ? (long)CURLUSESSL_ALL : (long)CURLUSESSL_NONE);
    if (c->email_ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->email_ca_file);
    if (c->email_username) {
        curl_easy_setopt(h, CURLOPT_USERNAME, c->email_username);
        curl_easy_setopt(h, CURLOPT_PASSWORD, c->email_password);
    }
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, from_b);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, au_mail_read);
    curl_easy_setopt(h, CURLOPT_READDATA, j);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, j->errbuf);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        if (!j->errbuf[0])
            snprintf(j->errbuf, sizeof(j->errbuf), "%s", curl_easy_strerror(rc));
        j->status = rc == CURLE_OPERATION_TIMEDOUT ? MX_ETIMEOUT : -EIO;
    }
out:
    curl_slist_free_all(rcpt);
    if (h)
        curl_easy_cleanup(h);
}

static void au_mail_next(void);

/* A job is over (either transport): log, tell, start the next one. */
static void au_mail_done(au_mail_job_t *j)
{
    struct au_mail *m = au.mail;
    if (j->status < 0)
        mx_log(AU_LOG, MX_LOG_WARN, "e-mail to <%s> not sent: %s", j->rcpt,
               j->errbuf[0] ? j->errbuf : "cancelled");
    else
        mx_log(AU_LOG, MX_LOG_INFO, "e-mail sent to <%s>", j->rcpt);
    j->cb(j->status, j->ud);
    au_mail_job_free(j);
    if (m) {
        m->inflight--;
        au_mail_next();
    }
}

static void au_mail_after(uv_work_t *w, int uvstatus)
{
    au_mail_job_t *j = w->data;
    if (uvstatus < 0 && !j->status)
        j->status = -ECANCELED;
    au_mail_done(j);
}

static void au_mail_spawned(int status, const char *why, void *ud)
{
    au_mail_job_t *j = ud;
    j->status = status;
    if (status < 0)
        snprintf(j->errbuf, sizeof(j->errbuf), "%s: %s", au.mail->command, why);
    au_mail_done(j);
}

/* Starts job `j`: a pool thread for SMTP, a child process for sendmail. */
static int au_mail_start(au_mail_job_t *j)
{
    struct au_mail *m = au.mail;
    if (m->command)
        return au_sendmail_run(m->command, j->from_addr, j->rcpt, j->msg, au.conf->email_timeout_ms,
                               au_mail_spawned, j);
    return uv_queue_work(mx_loop(), &j->work, au_mail_work, au_mail_after);
}

/* Starts waiting jobs while there is room. */
static void au_mail_next(void)
{
    struct au_mail *m = au.mail;
    while (m->head && m->inflight < AU_MAIL_INFLIGHT) {
        au_mail_job_t *j = m->head;
        m->head = j->next;
        if (!m->head)
            m->tail = NULL;
        m->queued--;
        j->work.data = j;
        if (au_mail_start(j) < 0) {
            j->cb(-EIO, j->ud);
            au_mail_job_free(j);
            continue;
        }
        m->inflight++;
    }
}

int au_mail_send(const char *to, const char *message, au_mail_fn cb, void *ud)
{
    struct au_mail *m = au.mail;
    char addr[256];
    if (!m || (!m->smtp && !m->command))
        return -ENOSYS;
    if (au_mail_addr(to, addr, sizeof(addr)) < 0 || !message)
        return -EINVAL;
    if (m->queued >= AU_MAIL_QUEUE_MAX)
        return -EAGAIN;
    au_mail_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->url = strdup(m->url ? m->url : "");
    j->from_addr = strdup(m->from_addr);
    j->rcpt = strdup(addr);
    j->msg = strdup(message);
    if (!j->url || !j->from_addr || !j->rcpt || !j->msg) {
        au_mail_job_free(j);
        return -ENOMEM;
    }
    j->msg_len = strlen(j->msg);
    j->cb = cb;
    j->ud = ud;
    if (m->tail)
        m->tail->next = j;
    else
        m->head = j;
    m->tail = j;
    m->queued++;
    au_mail_next();
    return 0;
}

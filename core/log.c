/*
 * log.c: the process log.  Text lines by default ("2026-11-22T10:00:00.123Z
 * INFO homeserver: message"), JSON lines with `log_format: json`.  Levels
 * are set globally (`log_level`) and per module (`log_levels:`).  The log
 * file is reopened on SIGHUP (logrotate).  Before the core context exists
 * (CLI commands), lines go to stderr at INFO.
 *
 * Lines are written with one write(2) each so that concurrent writers
 * (storage threads) never interleave within a line.
 */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct mx_log_state {
    int fd;                 /* 2 or the opened file */
    bool json;
    mx_log_level_t level;
    json_t *levels;         /* borrowed from the config */
};

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

static int parse_level(const char *s, mx_log_level_t *out)
{
    static const char *const lower[] = { "error", "warn", "info", "debug" };
    for (int i = 0; i < 4; i++) {
        if (s && strcasecmp(s, lower[i]) == 0) {
            *out = (mx_log_level_t)i;
            return 0;
        }
    }
    if (s && strcasecmp(s, "warning") == 0) {
        *out = MX_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

int mx__log_open(const mx_conf_t *conf)
{
    if (!mx__ctx)
        return -EINVAL;
    struct mx_log_state *st = mx__ctx->log;
    if (!st) {
        st = calloc(1, sizeof(*st));
        if (!st)
            return -ENOMEM;
        st->fd = 2;
        mx__ctx->log = st;
    }
    st->json = conf->log_format && strcmp(conf->log_format, "json") == 0;
    st->level = MX_LOG_INFO;
    parse_level(conf->log_level, &st->level);
    st->levels = conf->log_levels;
    if (conf->log_file) {
        int fd = open(conf->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0)
            return -errno;
        if (st->fd > 2)
            close(st->fd);
        st->fd = fd;
    }
    return 0;
}

void mx__log_close(void)
{
    if (!mx__ctx || !mx__ctx->log)
        return;
    if (mx__ctx->log->fd > 2)
        close(mx__ctx->log->fd);
    free(mx__ctx->log);
    mx__ctx->log = NULL;
}

static bool level_enabled(const struct mx_log_state *st, const char *module, mx_log_level_t lvl)
{
    mx_log_level_t max = st ? st->level : MX_LOG_INFO;
    if (st && st->levels && module) {
        json_t *v = json_object_get(st->levels, module);
        if (json_is_string(v))
            parse_level(json_string_value(v), &max);
    }
    return lvl <= max;
}

static size_t timestamp(char *buf, size_t len)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, len - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    return n;
}

static void write_line(const char *line, size_t len)
{
    int fd = (mx__ctx && mx__ctx->log) ? mx__ctx->log->fd : 2;
    while (len > 0) {
        ssize_t w = write(fd, line, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        line += w;
        len -= (size_t)w;
    }
}

static void emit(const char *module, mx_log_level_t lvl, const char *msg, json_t *extra)
{
    const struct mx_log_state *st = mx__ctx ? mx__ctx->log : NULL;
    char ts[40];
    timestamp(ts, sizeof(ts));
    if (st && st->json) {
        json_t *o = extra ? extra : json_object();
        json_object_set_new(o, "ts", json_string(ts));
        json_object_set_new(o, "level", json_string(level_names[lvl]));
        json_object_set_new(o, "module", json_string(module ? module : "core"));
        json_object_set_new(o, "msg", json_string(msg));
        char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(o);
        if (s) {
            size_t n = strlen(s);
            s[n] = '\n';   /* replaces the NUL; we pass the length */
            write_line(s, n + 1);
            free(s);
        }
        return;
    }
    if (extra)
        json_decref(extra);
    char line[4096];
    int n = snprintf(line, sizeof(line) - 1, "%s %s %s: %s", ts, level_names[lvl],
                     module ? module : "core", msg);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    write_line(line, (size_t)n);
}

void mx_log(const char *module, mx_log_level_t lvl, const char *fmt, ...)
{
    const struct mx_log_state *st = mx__ctx ? mx__ctx->log : NULL;
    if (!level_enabled(st, module, lvl))
        return;
    char msg[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(module, lvl, msg, NULL);
}

void mx__log_access(const char *method, const char *path, int status, uint64_t bytes,
                    double duration_ms, const char *user, const char *ip)
{
    const struct mx_log_state *st = mx__ctx ? mx__ctx->log : NULL;
    if (!level_enabled(st, "access", MX_LOG_INFO))
        return;
    if (st && st->json) {
        json_t *o = json_pack("{s:s, s:s, s:i, s:I, s:f, s:s?, s:s?}", "method", method,
                              "path", path, "status", status, "bytes", (json_int_t)bytes,
                              "duration_ms", duration_ms, "user", user, "ip", ip);
        emit("access", MX_LOG_INFO, "request", o);
        return;
    }
    char msg[2048];
    snprintf(msg, sizeof(msg), "%s - %s \"%s %.1500s\" %d %llu %.3fms", ip ? ip : "-",
             user ? user : "-", method, path, status, (unsigned long long)bytes, duration_ms);
    emit("access", MX_LOG_INFO, msg, NULL);
}

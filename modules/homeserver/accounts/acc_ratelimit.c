/*
 * acc_ratelimit.c: token-bucket rate limiting (Synapse's rc_* settings):
 * logins and registrations per client IP, messages per user.  Buckets live
 * in memory per process, keyed "<kind>:<ip or user>", and are dropped once
 * full again.  Over the limit: 429 M_LIMIT_EXCEEDED with retry_after_ms.
 */
#include "acc_int.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct acc_bucket {
    double tokens;
    double rate, burst;
    uint64_t last_ms;
} acc_bucket_t;

int64_t acc_rl_take(const char *key, double rate, double burst, bool consume)
{
    if (rate <= 0 || !hs_acc)
        return 0;
    if (burst < 1)
        burst = 1;
    uint64_t now = mx_now_ms();
    acc_bucket_t *b = acc_map_get(&hs_acc->buckets, key);
    if (!b) {
        b = calloc(1, sizeof(*b));
        if (!b)
            return 0;  /* fail open: rate limits are not worth an outage */
        b->tokens = burst;
        b->last_ms = now;
        if (acc_map_put(&hs_acc->buckets, key, b) < 0) {
            free(b);
            return 0;
        }
    }
    b->rate = rate;
    b->burst = burst;
    if (now > b->last_ms) {
        b->tokens += (double)(now - b->last_ms) * rate / 1000.0;
        if (b->tokens > burst)
            b->tokens = burst;
        b->last_ms = now;
    }
    if (b->tokens < 1.0)
        return (int64_t)((1.0 - b->tokens) * 1000.0 / rate) + 1;
    if (consume)
        b->tokens -= 1.0;
    return 0;
}

static bool acc_bucket_full(const char *key, void *val, void *ud)
{
    (void)key;
    const acc_bucket_t *b = val;
    uint64_t now = *(const uint64_t *)ud;
    return b->tokens + (double)(now - b->last_ms) * b->rate / 1000.0 >= b->burst;
}

void acc_rl_expire(void)
{
    uint64_t now = mx_now_ms();
    acc_map_filter(&hs_acc->buckets, acc_bucket_full, &now);
}

int64_t hs_ratelimit_message(const char *user_id)
{
    char key[300];
    snprintf(key, sizeof(key), "msg:%s", user_id ? user_id : "");
    double rate = (double)hs.conf.rc_message_per_second;
    double burst = (double)hs.conf.rc_message_burst;
    /* An admin's override for this user wins (0 per second: no limit). */
    hs_admin_ratelimit_override(user_id, &rate, &burst);
    return acc_rl_take(key, rate, burst, true);
}

void hs_reply_ratelimited(mx_req_t *req, int64_t retry_after_ms)
{
    if (retry_after_ms < 1)
        retry_after_ms = 1;
    char secs[32];
    snprintf(secs, sizeof(secs), "%lld", (long long)((retry_after_ms + 999) / 1000));
    mx_req_set_header(req, "Retry-After", mx_pstrdup(mx_req_pool(req), secs));
    json_t *b = json_pack("{s:s, s:s, s:I}", "errcode", "M_LIMIT_EXCEEDED", "error",
                          "Too Many Requests", "retry_after_ms", (json_int_t)retry_after_ms);
    if (b)
        mx_req_reply_json(req, 429, b);
    else
        mx_req_error(req, 429, "M_LIMIT_EXCEEDED", "Too Many Requests");
}

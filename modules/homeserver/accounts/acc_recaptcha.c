/*
 * acc_recaptcha.c: the m.login.recaptcha stage's check, as Synapse does it:
 * the client's `response` goes to the siteverify API
 * (`recaptcha_siteverify_api`) as a form with the private key and the
 * client's IP, and the stage passes when the answer is JSON with
 * "success": true.  The API is a configured peer (Google's by default, a
 * local mock in tests), so the SSRF guard's whitelist applies as for any
 * outbound fetch.
 */
#include "acc_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACC_RECAPTCHA_TIMEOUT_MS 10000

typedef struct acc_rc_call {
    acc_recaptcha_fn done;
    void *ud;
} acc_rc_call_t;

bool acc_recaptcha_enabled(void)
{
    return hs.conf.recaptcha_private_key && *hs.conf.recaptcha_private_key;
}

static void acc_rc_answered(const mx_http_response_t *resp, void *ud)
{
    acc_rc_call_t *c = ud;
    bool ok = false;
    if (resp->err == 0 && resp->status == 200) {
        json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
        ok = json_is_true(json_object_get(j, "success"));
        json_decref(j);
    } else {
        mx_log("homeserver", MX_LOG_WARN, "reCAPTCHA siteverify failed: %s",
               resp->err ? (resp->errmsg ? resp->errmsg : "error") : "HTTP status not 200");
    }
    c->done(ok, c->ud);
    free(c);
}

int acc_recaptcha_verify(const char *response, const char *client_ip, acc_recaptcha_fn done,
                         void *ud)
{
    if (!acc_recaptcha_enabled())
        return -ENOTSUP;
    acc_rc_call_t *c = malloc(sizeof(*c));
    char *secret = hs_form_escape(hs.conf.recaptcha_private_key);
    char *resp = hs_form_escape(response);
    char *ip = hs_form_escape(client_ip ? client_ip : "");
    size_t n = secret && resp && ip ? strlen(secret) + strlen(resp) + strlen(ip) + 40 : 0;
    char *body = n ? malloc(n) : NULL;
    int rc = -ENOMEM;
    if (c && body) {
        snprintf(body, n, "secret=%s&response=%s&remoteip=%s", secret, resp, ip);
        c->done = done;
        c->ud = ud;
        const char *headers[] = { "Content-Type: application/x-www-form-urlencoded",
                                  "Accept: application/json", NULL };
        mx_http_request_t rq = {
            .method = "POST", .url = hs.conf.recaptcha_siteverify_api, .headers = headers,
            .body = body, .body_len = strlen(body), .timeout_ms = ACC_RECAPTCHA_TIMEOUT_MS,
            .max_response = 65536,
        };
        rc = mx_http_fetch(&rq, acc_rc_answered, c);
    }
    if (rc < 0)
        free(c);
    free(secret);
    free(resp);
    free(ip);
    if (body)
        memset(body, 0, strlen(body));   /* it holds the private key */
    free(body);
    return rc;
}

/*
 * acc_password.c: password hashing and checking with argon2id (libsodium
 * crypto_pwhash_str), costed by homeserver.argon2_opslimit /
 * argon2_memlimit_kib.  A hash takes tens of milliseconds, so both run on
 * the libuv thread pool (uv_queue_work) and report back on the loop.
 *
 * Password policy follows Synapse's defaults: any non-empty string of at
 * most 512 bytes.
 */
#include "acc_int.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define ACC_PW_MAX 512

typedef struct acc_pw_job {
    uv_work_t work;
    char *password;               /* malloc'd, wiped before free */
    char *hash_in;                /* verify: stored hash, or NULL */
    char hash_out[crypto_pwhash_STRBYTES];
    unsigned long long ops;
    size_t mem;
    int status;
    bool ok;
    acc_pw_hash_fn hash_cb;
    acc_pw_verify_fn verify_cb;
    void *ud;
} acc_pw_job_t;

static void acc_pw_free(acc_pw_job_t *j)
{
    if (j->password) {
        sodium_memzero(j->password, strlen(j->password));
        free(j->password);
    }
    free(j->hash_in);
    free(j);
}

/* Worker thread: touches only the job. */
static void acc_pw_work(uv_work_t *w)
{
    acc_pw_job_t *j = w->data;
    if (j->hash_cb || !j->hash_in) {
        /* Hashing, or checking a password of an unknown user: do the same
         * amount of work so timing does not tell which users exist. */
        j->status = crypto_pwhash_str(j->hash_out, j->password, strlen(j->password), j->ops,
                                      j->mem) == 0 ? 0 : -ENOMEM;
        j->ok = false;
    } else {
        j->ok = crypto_pwhash_str_verify(j->hash_in, j->password, strlen(j->password)) == 0;
    }
}

static void acc_pw_after(uv_work_t *w, int status)
{
    acc_pw_job_t *j = w->data;
    if (status < 0 && !j->status)
        j->status = status;
    if (j->hash_cb)
        j->hash_cb(j->status, j->status ? NULL : j->hash_out, j->ud);
    else
        j->verify_cb(j->ok, j->ud);
    acc_pw_free(j);
}

static int acc_pw_queue(acc_pw_job_t *j, const char *password)
{
    j->password = strdup(password ? password : "");
    j->ops = (unsigned long long)hs.conf.argon2_opslimit;
    j->mem = (size_t)hs.conf.argon2_memlimit_kib * 1024u;
    j->work.data = j;
    if (!j->password) {
        acc_pw_free(j);
        return -ENOMEM;
    }
    int rc = uv_queue_work(mx_loop(), &j->work, acc_pw_work, acc_pw_after);
    if (rc < 0)
        acc_pw_free(j);
    return rc;
}

int acc_pw_hash(const char *password, acc_pw_hash_fn cb, void *ud)
{
    acc_pw_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->hash_cb = cb;
    j->ud = ud;
    return acc_pw_queue(j, password);
}

int acc_pw_verify(const char *hash, const char *password, acc_pw_verify_fn cb, void *ud)
{
    acc_pw_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->verify_cb = cb;
    j->ud = ud;
    if (hash && !(j->hash_in = strdup(hash))) {
        free(j);
        return -ENOMEM;
    }
    return acc_pw_queue(j, password);
}

bool acc_pw_acceptable(mx_req_t *req, const json_t *pw)
{
    if (!json_is_string(pw) || json_string_length(pw) == 0) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid password");
        return false;
    }
    if (json_string_length(pw) > ACC_PW_MAX) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Password too long");
        return false;
    }
    if (memchr(json_string_value(pw), '\0', json_string_length(pw))) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid password");
        return false;
    }
    return true;
}

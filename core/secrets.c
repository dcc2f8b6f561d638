/*
 * secrets.c: `mxstack init-secrets` and the first start of the zero-config
 * server.  Creates, under the data directory, every secret a deployment
 * needs, and never overwrites one that exists (the ESS chart's init-secrets
 * hook runs this on every install and upgrade):
 *
 *   signing.key                 ed25519 server signing key (Synapse's format)
 *   registration_shared_secret  for /_synapse/admin/v1/register
 *   macaroon_secret_key         key for tokens the homeserver derives
 *   form_secret                 key for CSRF tokens on HTML forms
 *   cookie_key                  key for the auth module's session cookies
 *   internal_secret             bearer secret of calls between mxstack processes
 *   oidc_rsa.pem, oidc_ec.pem   the OIDC provider's RS256 and ES256 keys
 *
 * Files are written to a temporary name, fsync'd, then renamed: a crash
 * never leaves a half-written secret behind.  Mode 0600.
 */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>

static int write_secret_file(const char *path, const void *data, size_t len)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return -e;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return -EIO;
    }
    /* link() fails when the target exists: another process won the race,
     * and its secret stays. */
    if (link(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return e == EEXIST ? 0 : -e;
    }
    unlink(tmp);
    return 0;
}

static int make_random_secret(const char *path)
{
    char *s = mx_random_string(48);
    if (!s)
        return -ENOMEM;
    char line[64];
    int n = snprintf(line, sizeof(line), "%s\n", s);
    free(s);
    return write_secret_file(path, line, (size_t)n);
}

static int make_signing_key(const char *path)
{
    mx_signing_key_t k;
    int rc = mx__signing_key_generate(&k);
    if (rc)
        return rc;
    rc = mx__signing_key_save(path, &k);
    memset(&k, 0, sizeof(k));
    return rc;
}

static int make_pk_key(const char *path, bool rsa)
{
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context pk;
    unsigned char pem[8192];
    int rc;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_pk_init(&pk);
    rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                               (const unsigned char *)"mxstack-secrets", 15);
    if (rc == 0)
        rc = mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(rsa ? MBEDTLS_PK_RSA : MBEDTLS_PK_ECKEY));
    if (rc == 0) {
        if (rsa)
            rc = mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), mbedtls_ctr_drbg_random, &drbg, 2048, 65537);
        else
            rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk),
                                     mbedtls_ctr_drbg_random, &drbg);
    }
    if (rc == 0)
        rc = mbedtls_pk_write_key_pem(&pk, pem, sizeof(pem));
    if (rc == 0)
        rc = write_secret_file(path, pem, strlen((char *)pem));
    else
        rc = -EIO;
    memset(pem, 0, sizeof(pem));
    mbedtls_pk_free(&pk);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return rc;
}

int mx__secrets_init(const char *data_dir, int verbose, char *err, size_t errlen)
{
    static const struct {
        const char *file;
        int kind;   /* 0 random string, 1 signing key, 2 RSA, 3 EC */
    } secrets[] = {
        { "signing.key", 1 },
        { "registration_shared_secret", 0 },
        { "macaroon_secret_key", 0 },
        { "form_secret", 0 },
        { "cookie_key", 0 },
        { "internal_secret", 0 },
        { "oidc_rsa.pem", 2 },
        { "oidc_ec.pem", 3 },
    };
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create data directory: %s", data_dir, strerror(errno));
        return -errno;
    }
    for (size_t i = 0; i < sizeof(secrets) / sizeof(*secrets); i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", data_dir, secrets[i].file);
        if (access(path, F_OK) == 0) {
            if (verbose)
                printf("kept     %s\n", path);
            continue;
        }
        int rc;
        switch (secrets[i].kind) {
        case 1: rc = make_signing_key(path); break;
        case 2: rc = make_pk_key(path, true); break;
        case 3: rc = make_pk_key(path, false); break;
        default: rc = make_random_secret(path); break;
        }
        if (rc) {
            snprintf(err, errlen, "%s: cannot write: %s", path, rc < 0 ? strerror(-rc) : "error");
            return rc < 0 ? rc : -EIO;
        }
        if (verbose)
            printf("created  %s\n", path);
    }
    return 0;
}

/*
 * signing_key.c: the server's ed25519 signing key on disk.
 *
 * The file format is Synapse's, so a key can move between the two servers:
 * one line "ed25519 <version> <unpadded base64 of the 32-byte seed>", the
 * key id being "ed25519:<version>".  New keys get a version like Synapse's
 * ("a_" and four random letters or digits).  Saving is atomic (temporary
 * file, fsync, rename) and the file is readable by its owner only.
 */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* Longest key file we read; a real one is about 60 bytes. */
#define KEY_FILE_MAX 4096

/* Fills pk/sk from a seed and the key id from a version. */
static int key_from_seed(mx_signing_key_t *k, const unsigned char seed[32], const char *version,
                         size_t vlen)
{
    if (vlen == 0 || vlen + sizeof("ed25519:") > sizeof(k->key_id))
        return -EINVAL;
    if (crypto_sign_seed_keypair(k->pk, k->sk, seed) != 0)
        return -EINVAL;
    memcpy(k->key_id, "ed25519:", 8);
    memcpy(k->key_id + 8, version, vlen);
    k->key_id[8 + vlen] = '\0';
    return 0;
}

int mx__signing_key_generate(mx_signing_key_t *k)
{
    unsigned char seed[32];
    char version[7] = "a_";
    char *suffix = mx_random_string(4);
    int rc;

    if (!suffix)
        return -ENOMEM;
    memcpy(version + 2, suffix, 5);
    free(suffix);
    randombytes_buf(seed, sizeof(seed));
    rc = key_from_seed(k, seed, version, strlen(version));
    sodium_memzero(seed, sizeof(seed));
    return rc;
}

/* Writes all of buf; 0 or -errno. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* fsyncs the directory holding `path`, so the rename survives a crash. */
static void sync_parent_dir(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash == dir)
        d = "/";
    else if (slash) {
        *slash = '\0';
        d = dir;
    }
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int mx__signing_key_save(const char *path, const mx_signing_key_t *k)
{
    unsigned char seed[32];
    char line[160], *tmp, *b64;
    int fd, rc, n;

    if (!path || !k || strncmp(k->key_id, "ed25519:", 8) != 0 || !k->key_id[8])
        return -EINVAL;
    crypto_sign_ed25519_sk_to_seed(seed, k->sk);
    b64 = mx_b64_encode(seed, sizeof(seed), 0);
    sodium_memzero(seed, sizeof(seed));
    if (!b64)
        return -ENOMEM;
    n = snprintf(line, sizeof(line), "ed25519 %s %s\n", k->key_id + 8, b64);
    sodium_memzero(b64, strlen(b64));
    free(b64);
    if (n < 0 || (size_t)n >= sizeof(line))
        return -EINVAL;

    size_t plen = strlen(path);
    tmp = malloc(plen + sizeof(".tmp.XXXXXX"));
    if (!tmp)
        return -ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof(".tmp.XXXXXX"));
    /* mkstemp creates the file with mode 0600; fchmod keeps it so under an
     * unusual umask too. */
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    rc = fchmod(fd, 0600) != 0 ? -errno : 0;
    if (rc == 0)
        rc = write_all(fd, line, (size_t)n);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0)
        unlink(tmp);
    else
        sync_parent_dir(path);
out:
    sodium_memzero(line, sizeof(line));
    free(tmp);
    return rc;
}

/* Splits off the next token of [*p, end) separated by spaces or tabs. */
static const char *next_token(const char **p, const char *end, size_t *len)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    const char *t = s;
    while (s < end && *s != ' ' && *s != '\t')
        s++;
    *len = (size_t)(s - t);
    *p = s;
    return *len ? t : NULL;
}

static int load_err(char *err, size_t errlen, int rc, const char *path, const char *what)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", path, what);
    return rc;
}

int mx__signing_key_load(const char *path, mx_signing_key_t *k, char *err, size_t errlen)
{
    char buf[KEY_FILE_MAX + 1];
    size_t got = 0;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (!path || !k)
        return -EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        return load_err(err, errlen, rc, path, strerror(-rc));
    }
    while (got < sizeof(buf)) {
        ssize_t n = read(fd, buf + got, sizeof(buf) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            close(fd);
            return load_err(err, errlen, rc, path, strerror(-rc));
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    rc = -EINVAL;
    if (got > KEY_FILE_MAX) {
        load_err(err, errlen, rc, path, "file too large for a signing key");
        goto out;
    }

    /* Only the first line counts (Synapse may list older keys after it). */
    const char *p = buf, *end = memchr(buf, '\n', got);
    if (!end)
        end = buf + got;
    if (end > p && end[-1] == '\r')
        end--;
    if (memchr(p, '\0', (size_t)(end - p))) {
        load_err(err, errlen, rc, path, "NUL byte in key file");
        goto out;
    }
    size_t alen, vlen, blen, xlen;
    const char *alg = next_token(&p, end, &alen);
    const char *version = next_token(&p, end, &vlen);
    const char *b64 = next_token(&p, end, &blen);
    const char *extra = next_token(&p, end, &xlen);
    if (!alg) {
        load_err(err, errlen, rc, path, "empty key file (expected \"ed25519 <version> <base64 seed>\")");
        goto out;
    }
    if (!version || !b64 || extra) {
        load_err(err, errlen, rc, path, "expected \"ed25519 <version> <base64 seed>\" on the first line");
        goto out;
    }
    if (alen != 7 || memcmp(alg, "ed25519", 7) != 0) {
        load_err(err, errlen, rc, path, "unsupported key algorithm (only ed25519)");
        goto out;
    }
    for (size_t i = 0; i < vlen; i++) {
        char c = version[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_')) {
            load_err(err, errlen, rc, path, "key version may only hold letters, digits and '_'");
            goto out;
        }
    }
    if (vlen + sizeof("ed25519:") > sizeof(k->key_id)) {
        load_err(err, errlen, rc, path, "key version too long");
        goto out;
    }
    unsigned char *seed = NULL;
    size_t seedlen = 0;
    if (mx_b64_decode(b64, blen, &seed, &seedlen) != 0) {
        load_err(err, errlen, rc, path, "key seed is not valid base64");
        goto out;
    }
    if (seedlen != 32) {
        char msg[80];
        snprintf(msg, sizeof(msg), "key seed must be 32 bytes, not %zu", seedlen);
        load_err(err, errlen, rc, path, msg);
    } else {
        rc = key_from_seed(k, seed, version, vlen);
        if (rc != 0)
            load_err(err, errlen, rc, path, "cannot derive the key from its seed");
    }
    sodium_memzero(seed, seedlen);
    free(seed);
out:
    sodium_memzero(buf, sizeof(buf));
    return rc;
}

/*
 * test_fs.c: unit tests for core/fs.c (mx_read_file, mx_share_dir): whole
 * files, empty files, the size limit, directories and missing files,
 * O_NOFOLLOW relative to a directory descriptor, and the share-dir lookup
 * order (configured, installed or source tree, bare name).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

static char tmpdir[64];

static void put(const char *name, const char *data, size_t len)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/mx-test-fs-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_read_whole(void **state)
{
    (void)state;
    /* larger than any first guess a reader might make */
    size_t big = 100000;
    char *data = malloc(big);
    assert_non_null(data);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)('a' + i % 26);
    put("big.txt", data, big);
    char p[256];
    snprintf(p, sizeof(p), "%s/big.txt", tmpdir);
    size_t len = 0;
    char *got = mx_read_file(AT_FDCWD, p, 0, 1 << 20, &len);
    assert_non_null(got);
    assert_int_equal(len, big);
    assert_memory_equal(got, data, big);
    assert_int_equal(got[len], '\0');
    free(got);
    /* exactly at the limit: fine; one byte less: EFBIG */
    got = mx_read_file(AT_FDCWD, p, 0, big, NULL);
    assert_non_null(got);
    free(got);
    errno = 0;
    assert_null(mx_read_file(AT_FDCWD, p, 0, big - 1, &len));
    assert_int_equal(errno, EFBIG);
    free(data);
}

static void test_read_empty_and_binary(void **state)
{
    (void)state;
    put("empty", "", 0);
    put("bin", "a\0b", 3);
    int dfd = open(tmpdir, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    size_t len = 99;
    char *got = mx_read_file(dfd, "empty", 0, 10, &len);
    assert_non_null(got);
    assert_int_equal(len, 0);
    assert_string_equal(got, "");
    free(got);
    got = mx_read_file(dfd, "bin", 0, 10, &len);
    assert_non_null(got);
    assert_int_equal(len, 3);
    assert_memory_equal(got, "a\0b", 3);
    free(got);
    close(dfd);
}

static void test_read_refused(void **state)
{
    (void)state;
    put("target", "secret", 6);
    char link[256], sub[256];
    snprintf(link, sizeof(link), "%s/link", tmpdir);
    assert_int_equal(symlink("target", link), 0);
    snprintf(sub, sizeof(sub), "%s/sub", tmpdir);
    assert_int_equal(mkdir(sub, 0700), 0);
    int dfd = open(tmpdir, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    /* a symlink: followed by default, refused with O_NOFOLLOW */
    size_t len = 0;
    char *got = mx_read_file(dfd, "link", 0, 100, &len);
    assert_non_null(got);
    assert_string_equal(got, "secret");
    free(got);
    errno = 0;
    assert_null(mx_read_file(dfd, "link", O_NOFOLLOW, 100, &len));
    assert_int_equal(errno, ELOOP);
    /* a directory, a missing file */
    errno = 0;
    assert_null(mx_read_file(dfd, "sub", 0, 100, &len));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(mx_read_file(dfd, "missing", 0, 100, &len));
    assert_int_equal(errno, ENOENT);
    close(dfd);
}

static void test_share_dir(void **state)
{
    (void)state;
    char *d = mx_share_dir("/etc/custom", "web/landing");
    assert_string_equal(d, "/etc/custom");
    free(d);
    /* not configured: the installed copy, else the source tree's (this
     * test runs from a build tree, so one of them holds web/landing) */
    d = mx_share_dir(NULL, "web/landing");
    assert_non_null(d);
    struct stat st;
    assert_int_equal(stat(d, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    size_t n = strlen(d);
    assert_true(n > 12 && d[0] == '/' && !strcmp(d + n - 12, "/web/landing"));
    free(d);
    d = mx_share_dir("", "no/such/dir");
    assert_string_equal(d, "no/such/dir");
    free(d);
    errno = 0;
    assert_null(mx_share_dir(NULL, "../etc"));
    assert_int_equal(errno, EINVAL);
    assert_null(mx_share_dir(NULL, "/abs"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_whole),
        cmocka_unit_test(test_read_empty_and_binary),
        cmocka_unit_test(test_read_refused),
        cmocka_unit_test(test_share_dir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

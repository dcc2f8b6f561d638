/*
 * test_config.c: unit tests of the config loader (core/config*.c): the
 * built-in defaults, YAML typing, SIZE/DURATION parsing, listeners, the
 * database shapes, environment overrides, error messages with their
 * FILE:LINE, mx__conf_fill, and the example files in conf/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_priv.h"

mx_ctx_t *mx__ctx;

static char tmpdir[256];
static char errbuf[8192];

static void clear_env(void)
{
    static const char *const vars[] = {
        "MXSTACK_SERVER_NAME", "MXSTACK_PUBLIC_BASEURL", "MXSTACK_DATABASE_URI",
        "MXSTACK_REGISTRATION_SHARED_SECRET", "MXSTACK_SIGNING_KEY_PATH", "MXSTACK_DATA", NULL
    };
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
}

static int setup(void **state)
{
    (void)state;
    clear_env();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/mxconf-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
    clear_env();
    return 0;
}

/* Writes `text` to tmpdir/name; returns the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static mx_conf_t *load_text(const char *text)
{
    const char *p = write_file("c.yaml", text);
    errbuf[0] = '\0';
    return mx__conf_load(p, NULL, errbuf, sizeof(errbuf));
}

/* The load fails and `err` holds a line containing "c.yaml:LINE: KEY: " +
 * `reason_part`. */
static void expect_error(const char *text, int line, const char *key, const char *reason_part)
{
    mx_conf_t *c = load_text(text);
    if (c)
        fail_msg("config loaded, expected an error about %s", key);
    char want[512];
    if (line > 0)
        snprintf(want, sizeof(want), "c.yaml:%d: %s: ", line, key);
    else
        snprintf(want, sizeof(want), "c.yaml: %s: ", key);
    const char *hit = strstr(errbuf, want);
    if (!hit)
        fail_msg("want \"%s\" in:\n%s", want, errbuf);
    const char *eol = strchr(hit, '\n');
    size_t n = eol ? (size_t)(eol - hit) : strlen(hit);
    char linebuf[1024];
    snprintf(linebuf, sizeof(linebuf), "%.*s", (int)n, hit);
    if (!strstr(linebuf, reason_part))
        fail_msg("want \"%s\" in \"%s\"", reason_part, linebuf);
}

/* ------------------------------------------------------------ defaults --- */

static void test_defaults(void **state)
{
    (void)state;
    mx_conf_t *c = mx__conf_load(NULL, tmpdir, errbuf, sizeof(errbuf));
    assert_non_null(c);
    assert_string_equal(c->path, "(built-in defaults)");
    assert_string_equal(c->server.server_name, "localhost");
    assert_string_equal(c->server.public_baseurl, "http://127.0.0.1:8008/");
    assert_string_equal(c->server.data_dir, tmpdir);
    char want[512];
    snprintf(want, sizeof(want), "%s/signing.key", tmpdir);
    assert_string_equal(c->server.signing_key_path, want);
    snprintf(want, sizeof(want), "%s/media_store", tmpdir);
    assert_string_equal(c->server.media_store_path, want);
    assert_null(c->server.registration_shared_secret);
    assert_int_equal(c->server.max_upload_size, 50 << 20);
    assert_int_equal(c->server.enable_registration, 0);
    assert_string_equal(c->server.default_room_version, "10");
    assert_ptr_equal(c->server.root, c->root);

    assert_int_equal(c->nlisteners, 1);
    const mx_listener_conf_t *li = &c->listeners[0];
    assert_int_equal(li->port, 8008);
    assert_int_equal(li->nbind, 1);
    assert_string_equal(li->bind_addresses[0], "127.0.0.1");
    assert_string_equal(li->type, "http");
    assert_false(li->tls);
    assert_int_equal(li->nresources, 9);
    static const char *const res[] = { "client", "federation", "media", "admin", "metrics",
                                       "web", "auth", "health" };
    for (int i = 0; i < 8; i++)
        assert_string_equal(li->resources[i], res[i]);

    assert_string_equal(c->db.engine, "sqlite3");
    snprintf(want, sizeof(want), "%s/homeserver.db", tmpdir);
    assert_string_equal(c->db.sqlite_path, want);
    assert_int_equal(c->nmodules, -1);
    assert_null(c->module_dir);
    assert_string_equal(c->log_format, "text");
    assert_string_equal(c->log_level, "info");
    assert_null(c->log_file);

    assert_int_equal(c->http.max_body_size, 10 << 20);
    assert_int_equal(c->http.max_header_size, 16 << 10);
    assert_int_equal(c->http.header_timeout_ms, 10000);
    assert_int_equal(c->http.idle_timeout_ms, 60000);
    assert_int_equal(c->http.body_timeout_ms, 30000);
    assert_int_equal(c->http.max_connections, 10000);
    assert_int_equal(c->http.shutdown_grace_ms, 10000);
    assert_int_equal(c->http.ntrusted_proxies, 2);
    assert_string_equal(c->http.trusted_proxies[0], "127.0.0.0/8");
    assert_string_equal(c->http.trusted_proxies[1], "::1/128");
    assert_int_equal(c->client.nwhitelist, 0);
    assert_null(c->client.extra_ca_file);
    assert_string_equal(c->client.ca_file, "/etc/ssl/certs/ca-certificates.crt");
    mx__conf_free(c);
}

static void test_defaults_secret_file(void **state)
{
    (void)state;
    write_file("registration_shared_secret", "s3cret\n");
    mx_conf_t *c = mx__conf_load(NULL, tmpdir, errbuf, sizeof(errbuf));
    assert_non_null(c);
    assert_string_equal(c->server.registration_shared_secret, "s3cret");
    mx__conf_free(c);
}

static void test_minimal_file(void **state)
{
    (void)state;
    mx_conf_t *c = load_text("server_name: example.org\n");
    assert_non_null(c);
    assert_string_equal(c->server.server_name, "example.org");
    assert_string_equal(c->server.public_baseurl, "http://127.0.0.1:8008/");
    char want[512];
    /* Relative to the file: tmpdir/mxstack-data (tmpdir is under /tmp, no symlinks). */
    snprintf(want, sizeof(want), "%s/mxstack-data", tmpdir);
    assert_string_equal(c->server.data_dir, want);
    mx__conf_free(c);

    /* --data-dir wins over the file's data_dir. */
    const char *p = write_file("d.yaml", "server_name: example.org\ndata_dir: x\n");
    c = mx__conf_load(p, "/srv/data/", errbuf, sizeof(errbuf));
    assert_non_null(c);
    assert_string_equal(c->server.data_dir, "/srv/data");
    assert_string_equal(c->server.signing_key_path, "/srv/data/signing.key");
    mx__conf_free(c);
    c = mx__conf_load(p, NULL, errbuf, sizeof(errbuf));
    assert_non_null(c);
    snprintf(want, sizeof(want), "%s/x", tmpdir);
    assert_string_equal(c->server.data_dir, want);
    mx__conf_free(c);
}

/* ---------------------------------------------------------------- YAML --- */

static json_t *yaml(const char *text, json_t *lines, int *nerr)
{
    mx_conf_errs_t e;
    mx__conf_errs_init(&e, "t.yaml", lines, NULL, errbuf, sizeof(errbuf));
    json_t *v = mx__yaml_parse(text, strlen(text), lines, &e);
    *nerr = e.count;
    return v;
}

static void test_yaml_scalars(void **state)
{
    (void)state;
    int nerr;
    json_t *v = yaml("a: 12\nb: -7\nc: 0x1f\nd: 1_000\ne: 1.5\nf: -2.5e3\n"
                     "g: true\nh: no\ni: Yes\nj: ~\nk: null\nl:\nm: '12'\nn: \"true\"\n"
                     "o: hello world\np: |\n  block\nq: 010\nr: 9223372036854775807\n"
                     "s: 1.2.3\nt: .inf\n", NULL, &nerr);
    assert_non_null(v);
    assert_int_equal(nerr, 0);
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 12);
    assert_int_equal(json_integer_value(json_object_get(v, "b")), -7);
    assert_int_equal(json_integer_value(json_object_get(v, "c")), 31);
    assert_int_equal(json_integer_value(json_object_get(v, "d")), 1000);
    assert_true(json_real_value(json_object_get(v, "e")) == 1.5);
    assert_true(json_real_value(json_object_get(v, "f")) == -2500.0);
    assert_true(json_is_true(json_object_get(v, "g")));
    assert_true(json_is_false(json_object_get(v, "h")));
    assert_true(json_is_true(json_object_get(v, "i")));
    assert_true(json_is_null(json_object_get(v, "j")));
    assert_true(json_is_null(json_object_get(v, "k")));
    assert_true(json_is_null(json_object_get(v, "l")));
    assert_string_equal(json_string_value(json_object_get(v, "m")), "12");
    assert_string_equal(json_string_value(json_object_get(v, "n")), "true");
    assert_string_equal(json_string_value(json_object_get(v, "o")), "hello world");
    assert_string_equal(json_string_value(json_object_get(v, "p")), "block\n");
    assert_int_equal(json_integer_value(json_object_get(v, "q")), 8);
    assert_true(json_integer_value(json_object_get(v, "r")) == INT64_MAX);
    assert_string_equal(json_string_value(json_object_get(v, "s")), "1.2.3");
    assert_string_equal(json_string_value(json_object_get(v, "t")), ".inf");
    json_decref(v);

    json_t *lines = json_object();
    v = yaml("ok: 1\nbig: 99999999999999999999\n", lines, &nerr);
    assert_int_equal(nerr, 1);
    assert_non_null(strstr(errbuf, "t.yaml:2: big: integer 99999999999999999999 out of range"));
    json_decref(v);
    json_decref(lines);
}

static void test_yaml_structure(void **state)
{
    (void)state;
    int nerr;
    json_t *lines = json_object();
    json_t *v = yaml("base: &b\n  x: 1\n  y: [a, b]\n"
                     "copy: *b\n"
                     "merged:\n  <<: *b\n  x: 2\n"
                     "list:\n  - one\n  - k: v\n    k2: v2\n", lines, &nerr);
    assert_non_null(v);
    assert_int_equal(nerr, 0);
    assert_true(json_equal(json_object_get(v, "base"), json_object_get(v, "copy")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "merged"), "x")), 2);
    assert_non_null(json_object_get(json_object_get(v, "merged"), "y"));
    assert_int_equal(json_integer_value(json_object_get(lines, "base")), 1);
    assert_int_equal(json_integer_value(json_object_get(lines, "base.y")), 3);
    assert_int_equal(json_integer_value(json_object_get(lines, "merged.x")), 7);
    assert_int_equal(json_integer_value(json_object_get(lines, "list.0")), 9);
    assert_int_equal(json_integer_value(json_object_get(lines, "list.1")), 10);
    assert_int_equal(json_integer_value(json_object_get(lines, "list.1.k2")), 11);
    json_decref(v);
    json_decref(lines);

    /* Empty document: null. */
    v = yaml("# nothing\n", NULL, &nerr);
    assert_true(json_is_null(v));
    json_decref(v);
    /* A scalar document (used for defaults). */
    v = yaml("10M", NULL, &nerr);
    assert_string_equal(json_string_value(v), "10M");
    json_decref(v);
}

/* ------------------------------------------------------ SIZE, DURATION --- */

static void test_size(void **state)
{
    (void)state;
    static const struct { const char *s; uint64_t v; } ok[] = {
        { "0", 0 }, { "100", 100 }, { "512K", 512 << 10 }, { "512k", 512 << 10 },
        { "10M", 10 << 20 }, { "50M", 50 << 20 }, { "1G", 1ULL << 30 }, { "2T", 2ULL << 40 },
        { "10MB", 10 << 20 }, { "10MiB", 10 << 20 }, { "100B", 100 },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 1;
        assert_int_equal(mx__conf_parse_size(ok[i].s, &v), 0);
        assert_true(v == ok[i].v);
    }
    static const char *const bad[] = { "", "M", "10X", "-1", "1.5M", "10 M", "10MM",
                                       "99999999999999999999", "20000000000000T", NULL };
    for (int i = 0; bad[i]; i++) {
        uint64_t v;
        if (mx__conf_parse_size(bad[i], &v) == 0)
            fail_msg("size \"%s\" accepted", bad[i]);
    }
}

static void test_duration(void **state)
{
    (void)state;
    static const struct { const char *s; uint64_t v; } ok[] = {
        { "0", 0 }, { "250", 250 }, { "500ms", 500 }, { "10s", 10000 }, { "5m", 300000 },
        { "1h", 3600000 }, { "2d", 172800000 }, { "1w", 604800000 },
        { "1y", 31536000000ULL },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 1;
        assert_int_equal(mx__conf_parse_duration(ok[i].s, &v), 0);
        assert_true(v == ok[i].v);
    }
    static const char *const bad[] = { "", "s", "10x", "10S", "-5s", "1.5s", "10 s", NULL };
    for (int i = 0; bad[i]; i++) {
        uint64_t v;
        if (mx__conf_parse_duration(bad[i], &v) == 0)
            fail_msg("duration \"%s\" accepted", bad[i]);
    }
}

static void test_cidr(void **state)
{
    (void)state;
    assert_int_equal(mx__conf_cidr_valid("10.0.0.0/8"), 0);
    assert_int_equal(mx__conf_cidr_valid("192.168.1.1"), 0);
    assert_int_equal(mx__conf_cidr_valid("::1/128"), 0);
    assert_int_equal(mx__conf_cidr_valid("fd00::/8"), 0);
    assert_int_not_equal(mx__conf_cidr_valid("10.0.0.0/33"), 0);
    assert_int_not_equal(mx__conf_cidr_valid("::/129"), 0);
    assert_int_not_equal(mx__conf_cidr_valid("10.0.0/8"), 0);
    assert_int_not_equal(mx__conf_cidr_valid("example.com/8"), 0);
    assert_int_not_equal(mx__conf_cidr_valid("10.0.0.0/"), 0);
}

/* ----------------------------------------------------------- top level --- */

static void test_keys(void **state)
{
    (void)state;
    write_file("secret.txt", "from-file\n");
    mx_conf_t *c = load_text(
        "server_name: example.com:8448\n"
        "public_baseurl: https://matrix.example.com\n"
        "data_dir: /srv/mx\n"
        "registration_shared_secret_path: secret.txt\n"
        "signing_key_path: keys/signing.key\n"
        "media_store_path: /media\n"
        "max_upload_size: 1G\n"
        "enable_registration: yes\n"
        "default_room_version: 11\n"
        "modules: [homeserver, web]\n"
        "module_dir: mods\n"
        "log_format: json\n"
        "log_file: /var/log/mx.log\n"
        "log_level: debug\n"
        "log_levels: {homeserver: warn, access: error}\n"
        "http:\n  max_body_size: 2M\n  idle_timeout: 2m\n  max_connections: 5\n"
        "  trusted_proxies: [10.0.0.0/8, '::1']\n"
        "ip_range_whitelist: [192.168.0.0/16]\n"
        "http_client: {extra_ca_file: secret.txt}\n"
        "report_stats: true\n"              /* a Synapse key: ignored */
        "homeserver: {rc_message_burst: 5}\n");
    if (!c)
        fail_msg("%s", errbuf);
    char want[512];
    assert_string_equal(c->server.server_name, "example.com:8448");
    assert_string_equal(c->server.public_baseurl, "https://matrix.example.com/");
    assert_string_equal(c->server.data_dir, "/srv/mx");
    assert_string_equal(c->server.registration_shared_secret, "from-file");
    snprintf(want, sizeof(want), "%s/keys/signing.key", tmpdir);
    assert_string_equal(c->server.signing_key_path, want);
    assert_string_equal(c->server.media_store_path, "/media");
    assert_true(c->server.max_upload_size == 1ULL << 30);
    assert_int_equal(c->server.enable_registration, 1);
    assert_string_equal(c->server.default_room_version, "11");
    assert_int_equal(c->nmodules, 2);
    assert_string_equal(c->modules[0], "homeserver");
    assert_string_equal(c->modules[1], "web");
    snprintf(want, sizeof(want), "%s/mods", tmpdir);
    assert_string_equal(c->module_dir, want);
    assert_string_equal(c->log_format, "json");
    assert_string_equal(c->log_file, "/var/log/mx.log");
    assert_string_equal(c->log_level, "debug");
    assert_string_equal(json_string_value(json_object_get(c->log_levels, "access")), "error");
    assert_int_equal(c->http.max_body_size, 2 << 20);
    assert_int_equal(c->http.idle_timeout_ms, 120000);
    assert_int_equal(c->http.max_connections, 5);
    assert_int_equal(c->http.header_timeout_ms, 10000);
    assert_int_equal(c->http.ntrusted_proxies, 2);
    assert_string_equal(c->http.trusted_proxies[1], "::1");
    assert_int_equal(c->client.nwhitelist, 1);
    assert_string_equal(c->client.ip_range_whitelist[0], "192.168.0.0/16");
    snprintf(want, sizeof(want), "%s/secret.txt", tmpdir);
    assert_string_equal(c->client.extra_ca_file, want);
    assert_int_equal(mx__conf_line(c, "http.idle_timeout"), 18);
    assert_int_equal(mx__conf_line(c, "modules.1"), 10);
    assert_int_equal(mx__conf_line(c, "nope"), 0);
    mx__conf_free(c);

    /* An empty modules list means none (core only); [] trusts no proxy. */
    c = load_text("server_name: a.b\nmodules: []\nhttp: {trusted_proxies: []}\n");
    assert_non_null(c);
    assert_int_equal(c->nmodules, 0);
    assert_int_equal(c->http.ntrusted_proxies, 0);
    mx__conf_free(c);
}

static void test_listeners(void **state)
{
    (void)state;
    write_file("cert.pem", "x");
    write_file("key.pem", "x");
    mx_conf_t *c = load_text(
        "server_name: example.com\n"
        "tls_certificate_path: cert.pem\n"
        "tls_private_key_path: key.pem\n"
        "listeners:\n"
        "  - port: 8448\n"
        "    tls: true\n"
        "    bind_addresses: ['::1', 127.0.0.1]\n"
        "    resources:\n"
        "      - names: [federation, keys]\n"
        "        compress: false\n"
        "      - names: [client, federation]\n"
        "  - port: 8008\n"
        "    bind_address: 0.0.0.0\n"
        "    x_forwarded: true\n"
        "    vhost: matrix.example.com\n"
        "    tag: main\n"
        "    resources: [{names: [auth]}]\n"
        "  - port: 9000\n"
        "    type: metrics\n");
    if (!c)
        fail_msg("%s", errbuf);
    assert_int_equal(c->nlisteners, 3);
    const mx_listener_conf_t *a = &c->listeners[0], *b = &c->listeners[1], *m = &c->listeners[2];
    assert_int_equal(a->port, 8448);
    assert_true(a->tls);
    char want[512];
    snprintf(want, sizeof(want), "%s/cert.pem", tmpdir);
    assert_string_equal(a->tls_certificate_path, want);
    assert_int_equal(a->nbind, 2);
    assert_string_equal(a->bind_addresses[1], "127.0.0.1");
    /* federation, media (implied), client, health; keys ignored */
    assert_int_equal(a->nresources, 4);
    assert_string_equal(a->resources[0], "federation");
    assert_string_equal(a->resources[1], "media");
    assert_string_equal(a->resources[2], "client");
    assert_string_equal(a->resources[3], "health");
    assert_int_equal(a->line, 5);
    assert_string_equal(c->server.public_baseurl, "https://[::1]:8448/");

    assert_int_equal(b->nbind, 1);
    assert_string_equal(b->bind_addresses[0], "0.0.0.0");
    assert_true(b->x_forwarded);
    assert_false(b->tls);
    assert_null(b->tls_certificate_path);
    assert_string_equal(b->vhost, "matrix.example.com");
    assert_int_equal(b->nresources, 2);
    assert_string_equal(b->resources[0], "auth");
    assert_string_equal(b->resources[1], "health");

    assert_string_equal(m->type, "metrics");
    assert_int_equal(m->nbind, 2);
    assert_string_equal(m->bind_addresses[0], "::");
    assert_string_equal(m->bind_addresses[1], "0.0.0.0");
    assert_int_equal(m->nresources, 1);
    assert_string_equal(m->resources[0], "metrics");
    mx__conf_free(c);

    /* Listening everywhere: Synapse's default public_baseurl. */
    c = load_text("server_name: example.com\nlisteners:\n  - port: 8008\n"
                  "    resources: [{names: [client]}]\n");
    assert_non_null(c);
    assert_string_equal(c->server.public_baseurl, "https://example.com/");
    mx__conf_free(c);
}

/* ------------------------------------------------------------ database --- */

static void test_db_sqlite(void **state)
{
    (void)state;
    mx_conf_t *c = load_text("server_name: a.b\ndatabase:\n  name: sqlite3\n"
                             "  args:\n    database: db/hs.db\n    cp_min: 1\n");
    assert_non_null(c);
    char want[512];
    snprintf(want, sizeof(want), "%s/db/hs.db", tmpdir);
    assert_string_equal(c->db.engine, "sqlite3");
    assert_string_equal(c->db.sqlite_path, want);
    assert_null(c->db.pg_conninfo);
    mx__conf_free(c);

    c = load_text("server_name: a.b\ndatabase: {name: sqlite3, args: {database: ':memory:'}}\n");
    assert_non_null(c);
    assert_string_equal(c->db.sqlite_path, ":memory:");
    mx__conf_free(c);
}

static void test_db_pg_args(void **state)
{
    (void)state;
    mx_conf_t *c = load_text("server_name: a.b\ndatabase:\n  name: psycopg2\n  txn_limit: 10\n"
                             "  args:\n    user: synapse\n    password: \"it's\"\n"
                             "    database: synapse\n    host: localhost\n    port: 5432\n"
                             "    sslmode: require\n    cp_min: 2\n    cp_max: 7\n");
    if (!c)
        fail_msg("%s", errbuf);
    assert_string_equal(c->db.engine, "psycopg2");
    assert_null(c->db.sqlite_path);
    assert_string_equal(c->db.pg_conninfo, "user='synapse' password='it\\'s' dbname='synapse' "
                        "host='localhost' port='5432' sslmode='require'");
    assert_int_equal(c->db.cp_min, 2);
    assert_int_equal(c->db.cp_max, 7);
    mx__conf_free(c);
}

static void test_db_uri(void **state)
{
    (void)state;
    mx_conf_t *c = load_text("server_name: a.b\ndatabase:\n  name: psycopg2\n  args:\n"
                             "    uri: postgresql://app:pw@db-rw:5432/app\n"
                             "    sslmode: verify-full\n    application_name: mx stack\n");
    if (!c)
        fail_msg("%s", errbuf);
    assert_string_equal(c->db.pg_conninfo, "postgresql://app:pw@db-rw:5432/app"
                        "?sslmode=verify-full&application_name=mx%20stack");
    assert_int_equal(c->db.cp_min, 5);
    assert_int_equal(c->db.cp_max, 10);
    mx__conf_free(c);

    c = load_text("server_name: a.b\ndatabase:\n  name: psycopg2\n  args:\n"
                  "    dsn: host=/run/postgresql dbname=mx\n    user: me\n");
    assert_non_null(c);
    assert_string_equal(c->db.pg_conninfo, "host=/run/postgresql dbname=mx user='me'");
    mx__conf_free(c);

    expect_error("server_name: a.b\ndatabase:\n  name: psycopg2\n  args:\n"
                 "    uri: mysql://x\n", 5, "database.args.uri", "postgresql://");
    expect_error("server_name: a.b\ndatabase:\n  name: psycopg2\n  args:\n"
                 "    hots: x\n", 5, "database.args.hots", "unknown PostgreSQL");
    expect_error("server_name: a.b\ndatabase:\n  name: mysql\n", 3, "database.name",
                 "unsupported database");
    expect_error("server_name: a.b\ndatabase:\n  args: {}\n", 2, "database.name", "required");
    expect_error("server_name: a.b\ndatabase:\n  name: psycopg2\n  args:\n    cp_min: 5\n"
                 "    cp_max: 2\n", 6, "database.args.cp_max", "cp_min");
    expect_error("server_name: a.b\ndatabases: {}\n", 2, "databases", "not supported");

    /* database.args.synchronous (SQLite only): normal by default, or full. */
    c = load_text("server_name: a.b\ndatabase:\n  name: sqlite3\n  args: {database: x.db}\n");
    assert_non_null(c);
    assert_false(c->db.sqlite_sync_full);
    mx__conf_free(c);
    c = load_text("server_name: a.b\ndatabase:\n  name: sqlite3\n  args:\n"
                  "    synchronous: full\n");
    assert_non_null(c);
    assert_true(c->db.sqlite_sync_full);
    mx__conf_free(c);
    expect_error("server_name: a.b\ndatabase:\n  name: sqlite3\n  args:\n"
                 "    synchronous: extra\n", 5, "database.args.synchronous", "normal or full");
    expect_error("server_name: a.b\ndatabase:\n  name: psycopg2\n  args:\n"
                 "    synchronous: full\n", 5, "database.args.synchronous", "sqlite3 only");
}

static void test_db_module_section(void **state)
{
    (void)state;
    mx_conf_t *c = load_text("server_name: a.b\nauth:\n  issuer: x\n  database:\n"
                             "    name: psycopg2\n    args: {uri: 'postgres://a@b/c'}\n");
    if (!c)
        fail_msg("%s", errbuf);
    mx_db_conf_t db;
    assert_int_equal(mx__conf_db(c, "auth", &db, errbuf, sizeof(errbuf)), 0);
    assert_string_equal(db.engine, "psycopg2");
    assert_string_equal(db.pg_conninfo, "postgres://a@b/c");
    assert_int_equal(mx__conf_db(c, "homeserver", &db, errbuf, sizeof(errbuf)), -ENOENT);
    mx__conf_free(c);
    expect_error("server_name: a.b\nauth:\n  database:\n    name: oracle\n", 4,
                 "auth.database.name", "unsupported");
}

/* ----------------------------------------------------------------- env --- */

static void test_env(void **state)
{
    (void)state;
    setenv("MXSTACK_SERVER_NAME", "env.example", 1);
    setenv("MXSTACK_PUBLIC_BASEURL", "https://env.example/matrix", 1);
    setenv("MXSTACK_REGISTRATION_SHARED_SECRET", "envsecret", 1);
    setenv("MXSTACK_SIGNING_KEY_PATH", "rel/signing.key", 1);
    setenv("MXSTACK_DATABASE_URI", "postgresql://u:p@h/d", 1);
    setenv("MXSTACK_DATA", "/env/data", 1);
    /* No server_name in the file: the environment supplies it.  The file's
     * secret path would not be readable; the env secret replaces it. */
    mx_conf_t *c = load_text("registration_shared_secret_path: /nonexistent\n"
                             "database:\n  name: sqlite3\n  args: {cp_min: 3, cp_max: 4}\n");
    if (!c)
        fail_msg("%s", errbuf);
    assert_string_equal(c->server.server_name, "env.example");
    assert_string_equal(c->server.public_baseurl, "https://env.example/matrix/");
    assert_string_equal(c->server.registration_shared_secret, "envsecret");
    assert_string_equal(c->server.signing_key_path, "rel/signing.key");
    assert_string_equal(c->server.data_dir, "/env/data");
    assert_string_equal(c->server.media_store_path, "/env/data/media_store");
    assert_string_equal(c->db.engine, "psycopg2");
    assert_string_equal(c->db.pg_conninfo, "postgresql://u:p@h/d");
    assert_int_equal(c->db.cp_min, 3);
    assert_int_equal(c->db.cp_max, 4);
    mx__conf_free(c);

    /* Zero-config too. */
    c = mx__conf_load(NULL, tmpdir, errbuf, sizeof(errbuf));
    assert_non_null(c);
    assert_string_equal(c->server.server_name, "env.example");
    assert_string_equal(c->server.data_dir, tmpdir);   /* --data-dir wins */
    mx__conf_free(c);

    /* Errors name the variable. */
    setenv("MXSTACK_SERVER_NAME", "https://bad/", 1);
    c = load_text("{}\n");
    assert_null(c);
    assert_non_null(strstr(errbuf, "environment variable MXSTACK_SERVER_NAME: server_name: "));
}

/* -------------------------------------------------------------- errors --- */

static void test_error_syntax(void **state)
{
    (void)state;
    mx_conf_t *c = load_text("server_name: a.b\nlisteners:\n  - port: 8008\n   bad: [\n");
    assert_null(c);
    assert_non_null(strstr(errbuf, "c.yaml:4: YAML syntax error at column"));
    c = load_text("a: 'unterminated\n");
    assert_null(c);
    assert_non_null(strstr(errbuf, "YAML syntax error"));
    c = load_text("- a\n- b\n");
    assert_null(c);
    assert_non_null(strstr(errbuf, "c.yaml:1: the configuration must be a mapping"));
    c = load_text("a: 1\n---\nb: 2\n");
    assert_null(c);
    assert_non_null(strstr(errbuf, "only one YAML document"));
    errbuf[0] = 0;
    c = mx__conf_load("/nonexistent/x.yaml", NULL, errbuf, sizeof(errbuf));
    assert_null(c);
    assert_non_null(strstr(errbuf, "/nonexistent/x.yaml: cannot read: "));
}

static void test_error_types(void **state)
{
    (void)state;
    expect_error("server_name: a.b\nenable_registration: maybe\n", 2, "enable_registration",
                 "expected true or false");
    expect_error("server_name: a.b\nmax_upload_size: lots\n", 2, "max_upload_size",
                 "expected a size");
    expect_error("server_name: a.b\nhttp:\n  idle_timeout: 5 minutes\n", 3, "http.idle_timeout",
                 "expected a duration");
    expect_error("server_name: [a]\n", 1, "server_name", "expected a string");
    expect_error("server_name: a.b\nlisteners:\n  - port: '80'\n    resources: [{names: [web]}]\n",
                 3, "listeners.0.port", "expected an integer");
    expect_error("server_name: a.b\nlog_format: xml\n", 2, "log_format", "text or json");
    expect_error("server_name: a.b\nlog_levels: {homeserver: loud}\n", 2,
                 "log_levels.homeserver", "one of");
    expect_error("server_name: a.b\nmodules: [home-server]\n", 2, "modules.0",
                 "not a valid module name");
    expect_error("server_name: a.b\nmodules: [web, web]\n", 2, "modules.1", "twice");
    expect_error("server_name: a.b\npublic_baseurl: matrix.example.com\n", 2, "public_baseurl",
                 "http://");
    expect_error("server_name: https://a.b/\n", 1, "server_name", "not a valid server name");
    expect_error("server_name: a.b\nhttp:\n  max_bodysize: 1M\n", 3, "http.max_bodysize",
                 "unknown key");
}

static void test_error_listeners(void **state)
{
    (void)state;
    expect_error("server_name: a.b\nlisteners:\n  - port: 70000\n    resources: [{names: [web]}]\n",
                 3, "listeners.0.port", "between 1 and 65535");
    expect_error("server_name: a.b\nlisteners:\n  - port: 0\n    resources: [{names: [web]}]\n",
                 3, "listeners.0.port", "between 1 and 65535");
    expect_error("server_name: a.b\nlisteners:\n  - resources: [{names: [web]}]\n", 3,
                 "listeners.0.port", "required");
    expect_error("server_name: a.b\nlisteners:\n  - port: 80\n    resources: [{names: [web]}]\n"
                 "    colour: blue\n", 5, "listeners.0.colour", "unknown listener key");
    expect_error("server_name: a.b\nlisteners:\n  - port: 80\n"
                 "    resources: [{names: [web, pop3]}]\n", 4, "listeners.0.resources.0.names.1",
                 "unknown resource");
    expect_error("server_name: a.b\nlisteners:\n  - port: 80\n    type: manhole\n"
                 "    resources: [{names: [web]}]\n", 4, "listeners.0.type", "not supported");
    expect_error("server_name: a.b\nlisteners:\n  - port: 80\n    bind_addresses: [localhost]\n"
                 "    resources: [{names: [web]}]\n", 4, "listeners.0.bind_addresses.0",
                 "not a valid IP address");
    expect_error("server_name: a.b\nlisteners:\n  - port: 80\n", 3, "listeners.0.resources",
                 "required");
    expect_error("server_name: a.b\nlisteners:\n  - port: 80\n    tls: true\n"
                 "    resources: [{names: [web]}]\n", 4, "listeners.0.tls",
                 "tls_certificate_path");
    expect_error("server_name: a.b\nlisteners:\n  - port: 80\n    resources: [{names: [web]}]\n"
                 "  - port: 80\n    resources: [{names: [client]}]\n", 5, "listeners.1.port",
                 "already used");
    expect_error("server_name: a.b\nlisteners: []\n", 2, "listeners", "at least one");
}

static void test_error_duplicate(void **state)
{
    (void)state;
    expect_error("server_name: a.b\nhttp:\n  max_connections: 5\n  max_connections: 6\n", 4,
                 "http.max_connections", "duplicate key (first at line 3)");
}

static void test_error_cidr(void **state)
{
    (void)state;
    expect_error("server_name: a.b\nhttp:\n  trusted_proxies:\n    - 10.0.0.0/8\n"
                 "    - 10.0.0.300/8\n", 5, "http.trusted_proxies.1", "not a valid CIDR");
    expect_error("server_name: a.b\nip_range_whitelist: [fe80::/200]\n", 2,
                 "ip_range_whitelist.0", "not a valid CIDR");
}

static void test_error_missing_server_name(void **state)
{
    (void)state;
    expect_error("enable_registration: false\n", 0, "server_name", "required");
}

static void test_error_secret(void **state)
{
    (void)state;
    expect_error("server_name: a.b\nregistration_shared_secret: x\n"
                 "registration_shared_secret_path: /etc/passwd\n", 3,
                 "registration_shared_secret_path", "mutually exclusive");
    expect_error("server_name: a.b\nregistration_shared_secret_path: nope.txt\n", 2,
                 "registration_shared_secret_path", "cannot read");
}

static void test_error_many(void **state)
{
    (void)state;
    mx_conf_t *c = load_text(
        "listeners:\n"
        "  - port: 99999\n"
        "    bogus: 1\n"
        "    resources: [{names: [client]}]\n"
        "enable_registration: 3\n"
        "http:\n"
        "  trusted_proxies: [nonsense]\n"
        "  idle_timeout: forever\n");
    assert_null(c);
    static const char *const want[] = {
        "c.yaml: server_name: required",
        "c.yaml:2: listeners.0.port: must be between 1 and 65535",
        "c.yaml:3: listeners.0.bogus: unknown listener key",
        "c.yaml:5: enable_registration: expected true or false",
        "c.yaml:7: http.trusted_proxies.0: \"nonsense\" is not a valid CIDR",
        "c.yaml:8: http.idle_timeout: expected a duration",
        NULL
    };
    for (int i = 0; want[i]; i++)
        if (!strstr(errbuf, want[i]))
            fail_msg("want \"%s\" in:\n%s", want[i], errbuf);
    int lines = 1;
    for (const char *p = errbuf; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 6);
    /* In file order, those without a line first. */
    for (int i = 1; want[i]; i++)
        assert_true(strstr(errbuf, want[i - 1]) < strstr(errbuf, want[i]));

    /* A small buffer is never overrun and stays NUL-terminated. */
    char small[40];
    const char *p = write_file("c.yaml", "listeners: 5\nhttp: 7\n");
    assert_null(mx__conf_load(p, NULL, small, sizeof(small)));
    assert_true(strlen(small) < sizeof(small));
}

/* ---------------------------------------------------------------- fill --- */

typedef struct sample {
    char *name;
    char *secret;
    int64_t count;
    int flag;
    uint64_t size;
    uint64_t wait;
    json_t *extra;
    json_t *deflt;
    char *nested;
    char *unset;
} sample_t;

static const mx_conf_item_t sample_items[] = {
    MX_CONF_STR("name", sample_t, name, "anon"),
    MX_CONF_SECRET("secret", sample_t, secret, NULL),
    MX_CONF_INT("count", sample_t, count, "3"),
    MX_CONF_BOOL("flag", sample_t, flag, "true"),
    MX_CONF_SIZE("size", sample_t, size, "512K"),
    MX_CONF_DURATION("wait", sample_t, wait, "1m"),
    MX_CONF_JSON("extra", sample_t, extra),
    MX_CONF_ITEM("deflt", MX_CONF_T_JSON, sample_t, deflt, "[1, 2]", 0),
    MX_CONF_STR("sub.nested", sample_t, nested, NULL),
    MX_CONF_STR("unset", sample_t, unset, NULL),
    MX_CONF_END
};

static void test_fill(void **state)
{
    (void)state;
    mx_conf_t *c = load_text("server_name: a.b\n"
                             "sample:\n"
                             "  name: 42\n"
                             "  secret: hunter2\n"
                             "  count: -9\n"
                             "  flag: off\n"
                             "  size: 2G\n"
                             "  wait: 250\n"
                             "  extra: {a: [1, 2]}\n"
                             "  sub: {nested: deep}\n"
                             "  database: {name: sqlite3}\n");
    if (!c)
        fail_msg("%s", errbuf);
    sample_t s;
    memset(&s, 0xff, sizeof(s));
    assert_int_equal(mx__conf_fill(c, "sample", sample_items, &s, errbuf, sizeof(errbuf)), 0);
    assert_string_equal(s.name, "42");
    assert_string_equal(s.secret, "hunter2");
    assert_int_equal(s.count, -9);
    assert_int_equal(s.flag, 0);
    assert_true(s.size == 2ULL << 30);
    assert_int_equal(s.wait, 250);
    assert_true(json_is_array(json_object_get(s.extra, "a")));
    assert_int_equal(json_array_size(s.deflt), 2);
    assert_string_equal(s.nested, "deep");
    assert_null(s.unset);

    /* A missing section: every default. */
    memset(&s, 0xff, sizeof(s));
    assert_int_equal(mx__conf_fill(c, "other", sample_items, &s, errbuf, sizeof(errbuf)), 0);
    assert_string_equal(s.name, "anon");
    assert_null(s.secret);
    assert_int_equal(s.count, 3);
    assert_int_equal(s.flag, 1);
    assert_int_equal(s.size, 512 << 10);
    assert_int_equal(s.wait, 60000);
    assert_null(s.extra);
    assert_int_equal(json_integer_value(json_array_get(s.deflt, 1)), 2);
    assert_null(s.nested);
    mx__conf_free(c);

    /* Errors, all of them, with lines. */
    c = load_text("server_name: a.b\n"
                  "sample:\n"
                  "  count: many\n"
                  "  flag: 1\n"
                  "  size: -1\n"
                  "  typo: x\n");
    assert_non_null(c);
    assert_int_equal(mx__conf_fill(c, "sample", sample_items, &s, errbuf, sizeof(errbuf)),
                     -EINVAL);
    static const char *const want[] = {
        "c.yaml:3: sample.count: expected an integer",
        "c.yaml:4: sample.flag: expected true or false",
        "c.yaml:5: sample.size: expected a size",
        "c.yaml:6: sample.typo: unknown key",
        NULL
    };
    for (int i = 0; want[i]; i++)
        if (!strstr(errbuf, want[i]))
            fail_msg("want \"%s\" in:\n%s", want[i], errbuf);
    mx__conf_free(c);

    c = load_text("server_name: a.b\nsample: [1]\n");
    assert_non_null(c);
    assert_int_equal(mx__conf_fill(c, "sample", sample_items, &s, errbuf, sizeof(errbuf)),
                     -EINVAL);
    assert_non_null(strstr(errbuf, "c.yaml:2: sample: expected a mapping"));
    mx__conf_free(c);
}

static void test_server_conf(void **state)
{
    (void)state;
    assert_null(mx_server_conf());
    mx_ctx_t ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.conf = mx__conf_load(NULL, tmpdir, errbuf, sizeof(errbuf));
    assert_non_null(ctx.conf);
    mx__ctx = &ctx;
    const mx_server_conf_t *s = mx_server_conf();
    assert_non_null(s);
    assert_string_equal(s->server_name, "localhost");
    mx__ctx = NULL;
    mx__conf_free(ctx.conf);
}

/* ------------------------------------------------------- conf files ---- */

static void test_conf_files(void **state)
{
    (void)state;
    static const char *const files[] = { "mxstack.yaml", "single-node-sqlite.yaml",
                                         "production-postgres.yaml", NULL };
    for (int i = 0; files[i]; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/conf/%s", MX_SRCDIR, files[i]);
        mx_conf_t *c = mx__conf_load(path, NULL, errbuf, sizeof(errbuf));
        if (!c)
            fail_msg("%s:\n%s", files[i], errbuf);
        if (i == 0) {
            assert_string_equal(c->server.server_name, "localhost");
            assert_string_equal(c->server.public_baseurl, "http://127.0.0.1:8008/");
            assert_int_equal(c->listeners[0].nresources, 8);
            assert_int_equal(c->nmodules, -1);
        } else if (i == 1) {
            assert_string_equal(c->db.sqlite_path, "/var/lib/mxstack/homeserver.db");
            assert_int_equal(c->nlisteners, 3);
            assert_true(c->listeners[0].x_forwarded);
        } else {
            assert_string_equal(c->db.engine, "psycopg2");
            assert_string_equal(c->db.pg_conninfo,
                                "postgresql://mxstack:CHANGE_ME@mxstack-db-rw.matrix.svc:5432/"
                                "mxstack?sslmode=require&connect_timeout=10");
            assert_int_equal(c->db.cp_max, 20);
            assert_string_equal(c->log_format, "json");
            assert_int_equal(c->nmodules, 3);
            assert_true(c->listeners[0].x_forwarded);
            assert_int_equal(c->http.shutdown_grace_ms, 25000);
        }
        mx__conf_free(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_defaults),
        T(test_defaults_secret_file),
        T(test_minimal_file),
        T(test_yaml_scalars),
        T(test_yaml_structure),
        T(test_size),
        T(test_duration),
        T(test_cidr),
        T(test_keys),
        T(test_listeners),
        T(test_db_sqlite),
        T(test_db_pg_args),
        T(test_db_uri),
        T(test_db_module_section),
        T(test_env),
        T(test_error_syntax),
        T(test_error_types),
        T(test_error_listeners),
        T(test_error_duplicate),
        T(test_error_cidr),
        T(test_error_missing_server_name),
        T(test_error_secret),
        T(test_error_many),
        T(test_fill),
        T(test_server_conf),
        T(test_conf_files),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

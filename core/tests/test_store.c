/*
 * test_store.c: the storage API on both engines.
 *
 * Every test runs against SQLite (a file in a temporary directory) and,
 * when MXSTACK_TEST_PG holds a libpq conninfo, against PostgreSQL too.
 * Asynchronous batches run on a real libuv loop.  MXSTACK_STORE_BENCH=1
 * adds a write benchmark (32 concurrent writers).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* serve.c defines the context in the binary; the test has its own. */
mx_ctx_t *mx__ctx;

static mx_ctx_t ctx;
static uv_loop_t loop;
static char tmpdir[64];
static char dbpath[128];
static bool sync_full;      /* the SQLite group runs with synchronous: full */

/* ------------------------------------------------------------ helpers --- */

static void sync_exec(mx_db_t *db, const char *sql)
{
    mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_WRITE);
    assert_non_null(b);
    assert_int_equal(mx__sql_add_script(b, sql), 0);
    mx_sql_res_t *res = NULL;
    int rc = mx_sql_run_sync(b, &res);
    if (rc)
        fprintf(stderr, "sync_exec(%s): %s\n", sql, mx_sql_errmsg(res));
    assert_int_equal(rc, 0);
    mx_sql_res_free(res);
}

static int64_t sync_count(mx_db_t *db, const char *sql)
{
    mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_READ);
    assert_int_equal(mx_sql_add(b, sql, ""), 0);
    mx_sql_res_t *res = NULL;
    assert_int_equal(mx_sql_run_sync(b, &res), 0);
    assert_int_equal(mx_sql_nrows(res, 0), 1);
    int64_t v = mx_sql_int(res, 0, 0, 0);
    mx_sql_res_free(res);
    return v;
}

static void run_loop(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
}

static void on_timer(uv_timer_t *t)
{
    (void)t;
}

static void sleep_on_loop(uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, on_timer, ms, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
}

static const char *T_DDL_SQLITE =
    "DROP TABLE IF EXISTS t_kv; "
    "CREATE TABLE t_kv (k INTEGER PRIMARY KEY, s TEXT, b BLOB, d REAL, n INTEGER)";
static const char *T_DDL_PG =
    "DROP TABLE IF EXISTS t_kv; "
    "CREATE TABLE t_kv (k BIGINT PRIMARY KEY, s TEXT, b BYTEA, d DOUBLE PRECISION, n BIGINT)";

static mx_db_t *fresh_kv(void)
{
    mx_db_t *db = mx_db_get(NULL);
    assert_non_null(db);
    sync_exec(db, mx_db_is_postgres(db) ? T_DDL_PG : T_DDL_SQLITE);
    return db;
}

/* ------------------------------------------------------------- setups --- */

static int common_setup(const mx_db_conf_t *conf)
{
    memset(&ctx, 0, sizeof(ctx));
    if (uv_loop_init(&loop) != 0)
        return -1;
    ctx.loop = &loop;
    mx__ctx = &ctx;
    char err[256] = "";
    int rc = mx__store_init(conf, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "mx__store_init: %s\n", err);
        return -1;
    }
    return 0;
}

static int setup_sqlite(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/mxstore-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(dbpath, sizeof(dbpath), "%s/test.db", tmpdir);
    mx_db_conf_t conf = { .engine = "sqlite3", .sqlite_path = dbpath,
                          .sqlite_sync_full = sync_full };
    return common_setup(&conf);
}

static int setup_pg(void **state)
{
    (void)state;
    const char *ci = getenv("MXSTACK_TEST_PG");
    mx_db_conf_t conf = { .engine = "psycopg2", .pg_conninfo = ci, .cp_min = 2, .cp_max = 6 };
    return common_setup(&conf);
}

static int teardown_any(void **state)
{
    (void)state;
    mx__store_close();
    uv_run(&loop, UV_RUN_DEFAULT); /* let the closed handles go */
    int rc = uv_loop_close(&loop);
    mx__ctx = NULL;
    if (tmpdir[0]) {
        char p[200];
        const char *sfx[] = { "", "-wal", "-shm" };
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof(p), "%s%s", dbpath, sfx[i]);
            unlink(p);
        }
        rmdir(tmpdir);
        tmpdir[0] = '\0';
    }
    return rc == 0 ? 0 : -1;
}

/* -------------------------------------------------------------- tests --- */

static void test_placeholders(void **state)
{
    (void)state;
    char *out = NULL;
    int n = mx__sql_placeholders(
        "SELECT '?', ?, \"a?\", $$ ? $$, $t$ ? $t$, E'\\'?', x -- ?\n, /* ? */ ?, 'it''s?', ?",
        &out);
    assert_int_equal(n, 3);
    assert_string_equal(out, "SELECT '?', $1, \"a?\", $$ ? $$, $t$ ? $t$, E'\\'?', x -- ?\n, "
                             "/* ? */ $2, 'it''s?', $3");
    free(out);
    assert_int_equal(mx__sql_placeholders("SELECT $1, ?", NULL), 1);
    assert_int_equal(mx__sql_placeholders("INSERT INTO t VALUES (?,?,?,?,?,?,?,?,?,?,?)", &out),
                     11);
    assert_non_null(strstr(out, "$10,$11)"));
    free(out);
}

static const mx_migration_t test_mig[] = {
    { 1, "CREATE TABLE t_mig (id INTEGER PRIMARY KEY, name TEXT NOT NULL)", NULL, NULL },
    { 2, NULL, "ALTER TABLE t_mig ADD COLUMN extra BLOB; CREATE INDEX t_mig_name ON t_mig(name)",
      "ALTER TABLE t_mig ADD COLUMN extra BYTEA; CREATE INDEX t_mig_name ON t_mig(name)" },
};

static void test_migrations(void **state)
{
    (void)state;
    mx_db_t *db = mx_db_get(NULL);
    sync_exec(db, "DROP TABLE IF EXISTS t_mig; CREATE TABLE IF NOT EXISTS mx_schema "
                  "(module TEXT PRIMARY KEY, version INTEGER NOT NULL); "
                  "DELETE FROM mx_schema WHERE module LIKE 'test%'");
    assert_int_equal(mx_db_migrate(db, "testmod", test_mig, 1), 0);
    assert_int_equal(sync_count(db, "SELECT version FROM mx_schema WHERE module = 'testmod'"), 1);
    assert_int_equal(mx_db_migrate(db, "testmod", test_mig, 2), 0);
    assert_int_equal(sync_count(db, "SELECT version FROM mx_schema WHERE module = 'testmod'"), 2);
    /* Idempotent: nothing left to apply, the table is not re-created. */
    assert_int_equal(mx_db_migrate(db, "testmod", test_mig, 2), 0);
    sync_exec(db, "INSERT INTO t_mig (id, name) VALUES (1, 'x')");
    assert_int_equal(sync_count(db, "SELECT COUNT(*) FROM t_mig"), 1);
    /* An older build (knowing only version 1) refuses the database. */
    assert_true(mx_db_migrate(db, "testmod", test_mig, 1) < 0);
    sync_exec(db, "UPDATE mx_schema SET version = 99 WHERE module = 'testmod'");
    assert_true(mx_db_migrate(db, "testmod", test_mig, 2) < 0);
    /* A failing migration applies nothing and keeps the version. */
    static const mx_migration_t bad[] = {
        { 1, "CREATE TABLE t_mig2 (a INTEGER)", NULL, NULL },
        { 2, "CREATE TABLE t_mig3 (a INTEGER); THIS IS NOT SQL", NULL, NULL },
    };
    sync_exec(db, "DROP TABLE IF EXISTS t_mig2; DROP TABLE IF EXISTS t_mig3");
    assert_true(mx_db_migrate(db, "testbad", bad, 2) < 0);
    assert_int_equal(sync_count(db, "SELECT version FROM mx_schema WHERE module = 'testbad'"), 1);
    mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_READ);
    mx_sql_add(b, "SELECT COUNT(*) FROM t_mig3", "");
    mx_sql_res_t *res;
    assert_int_equal(mx_sql_run_sync(b, &res), MX_EDB);
    assert_non_null(mx_sql_errmsg(res));
    mx_sql_res_free(res);
    sync_exec(db, "DROP TABLE t_mig; DROP TABLE t_mig2; DELETE FROM mx_schema WHERE module LIKE 'test%'");
}

static const unsigned char blob_bytes[] = { 0, 1, 2, 0, 255, 'a', 0, '\\', 'x', 0 };

static void test_types(void **state)
{
    (void)state;
    mx_db_t *db = fresh_kv();
    const char *utf8 = "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9d\x84\x9e";
    int64_t big = (int64_t)1 << 53;
    mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_WRITE);
    assert_int_equal(mx_sql_add(b, "INSERT INTO t_kv (k, s, b, d, n) VALUES (?, ?, ?, ?, ?)",
                                "isbdn", big + 1, utf8, blob_bytes, sizeof(blob_bytes), 1.5), 0);
    assert_int_equal(mx_sql_add(b, "INSERT INTO t_kv (k, s, b, d, n) VALUES (?, ?, ?, ?, ?)",
                                "isbdi", INT64_MIN, (const char *)NULL, "", (size_t)0, -2.25,
                                INT64_MAX), 0);
    assert_int_equal(mx_sql_add(b, "UPDATE t_kv SET d = d WHERE k <> ?", "i", (int64_t)0), 0);
    assert_int_equal(mx_sql_add(b, "INSERT INTO t_kv (k) VALUES (?) RETURNING k", "i", (int64_t)7),
                     0);
    mx_sql_res_t *res = NULL;
    assert_int_equal(mx_sql_run_sync(b, &res), 0);
    assert_null(mx_sql_errmsg(res));
    assert_int_equal(mx_sql_changes(res, 0), 1);
    assert_int_equal(mx_sql_changes(res, 2), 2);
    assert_int_equal(mx_sql_nrows(res, 3), 1);
    assert_int_equal(mx_sql_int(res, 3, 0, 0), 7);
    mx_sql_res_free(res);

    b = mx_sql_batch_new(db, MX_SQL_READ);
    mx_sql_add(b, "SELECT k, s, b, d, n FROM t_kv WHERE k = ?", "i", big + 1);
    mx_sql_add(b, "SELECT k, s, b, d, n FROM t_kv WHERE k = ?", "i", INT64_MIN);
    mx_sql_add(b, "SELECT k FROM t_kv WHERE s = ?", "s", utf8);
    mx_sql_add(b, "SELECT k FROM t_kv WHERE b = ?", "b", blob_bytes, sizeof(blob_bytes));
    mx_sql_add(b, "SELECT k FROM t_kv WHERE k < 0 ORDER BY k", "");
    assert_int_equal(mx_sql_run_sync(b, &res), 0);
    assert_int_equal(mx_sql_nrows(res, 0), 1);
    assert_int_equal(mx_sql_int(res, 0, 0, 0), big + 1);
    assert_string_equal(mx_sql_text(res, 0, 0, 0), "9007199254740993");
    assert_string_equal(mx_sql_text(res, 0, 0, 1), utf8);
    size_t len = 0;
    const void *p = mx_sql_blob(res, 0, 0, 2, &len);
    assert_int_equal(len, sizeof(blob_bytes));
    assert_memory_equal(p, blob_bytes, sizeof(blob_bytes));
    assert_string_equal(mx_sql_text(res, 0, 0, 3), "1.5");
    assert_true(mx_sql_is_null(res, 0, 0, 4));
    assert_null(mx_sql_text(res, 0, 0, 4));
    assert_false(mx_sql_is_null(res, 0, 0, 1));

    assert_int_equal(mx_sql_int(res, 1, 0, 0), INT64_MIN);
    assert_true(mx_sql_is_null(res, 1, 0, 1));
    p = mx_sql_blob(res, 1, 0, 2, &len);
    assert_non_null(p);
    assert_int_equal(len, 0);
    assert_false(mx_sql_is_null(res, 1, 0, 2));
    assert_string_equal(mx_sql_text(res, 1, 0, 3), "-2.25");
    assert_int_equal(mx_sql_int(res, 1, 0, 4), INT64_MAX);

    assert_int_equal(mx_sql_nrows(res, 2), 1);
    assert_int_equal(mx_sql_int(res, 2, 0, 0), big + 1);
    assert_int_equal(mx_sql_nrows(res, 3), 1);
    assert_int_equal(mx_sql_nrows(res, 4), 1);
    /* Out of range is harmless. */
    assert_int_equal(mx_sql_nrows(res, 9), 0);
    assert_null(mx_sql_text(res, 0, 5, 0));
    assert_true(mx_sql_is_null(res, 0, 0, 9));
    mx_sql_res_free(res);
}

static void test_errors(void **state)
{
    (void)state;
    mx_db_t *db = fresh_kv();
    /* Placeholder / parameter mismatch: refused before running. */
    mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_WRITE);
    assert_int_equal(mx_sql_add(b, "INSERT INTO t_kv (k) VALUES (?)", "ii", (int64_t)1, (int64_t)2),
                     -EINVAL);
    assert_int_equal(mx_sql_add(b, "INSERT INTO t_kv (k) VALUES (?)", "x", 1), -EINVAL);
    mx_sql_res_t *res = NULL;
    assert_int_equal(mx_sql_run_sync(b, &res), -EINVAL);
    mx_sql_res_free(res);
    b = mx_sql_batch_new(db, MX_SQL_WRITE);
    mx_sql_add(b, "INSERT INTO t_kv (k) VALUES (?)", "ii", (int64_t)1, (int64_t)2);
    assert_int_equal(mx_sql_run(b, NULL, NULL), -EINVAL);

    /* Syntax error: MX_EDB, naming the statement. */
    b = mx_sql_batch_new(db, MX_SQL_WRITE);
    mx_sql_add(b, "INSERT INTO t_kv (k) VALUES (?)", "i", (int64_t)1);
    mx_sql_add(b, "SELEKT nonsense", "");
    assert_int_equal(mx_sql_run_sync(b, &res), MX_EDB);
    assert_non_null(strstr(mx_sql_errmsg(res), "statement 2 (SELEKT"));
    mx_sql_res_free(res);
    assert_int_equal(sync_count(db, "SELECT COUNT(*) FROM t_kv"), 0);

    /* Constraint: MX_ECONSTRAINT. */
    b = mx_sql_batch_new(db, MX_SQL_WRITE);
    mx_sql_add(b, "INSERT INTO t_kv (k) VALUES (?)", "i", (int64_t)1);
    mx_sql_add(b, "INSERT INTO t_kv (k) VALUES (?)", "i", (int64_t)1);
    assert_int_equal(mx_sql_run_sync(b, &res), MX_ECONSTRAINT);
    assert_non_null(strstr(mx_sql_errmsg(res), "statement 2"));
    mx_sql_res_free(res);
    assert_int_equal(sync_count(db, "SELECT COUNT(*) FROM t_kv"), 0);

    /* A read batch cannot write. */
    b = mx_sql_batch_new(db, MX_SQL_READ);
    mx_sql_add(b, "SELECT 1", "");
    mx_sql_add(b, "INSERT INTO t_kv (k) VALUES (5)", "");
    assert_true(mx_sql_run_sync(b, &res) < 0);
    mx_sql_res_free(res);
    assert_int_equal(sync_count(db, "SELECT COUNT(*) FROM t_kv"), 0);
    assert_null(mx_sql_batch_new(db, 7));
}

/* Asynchronous runs ------------------------------------------------------ */

typedef struct outcome {
    int done;
    int status;
    int order;
    int64_t value;
    char errmsg[256];
} outcome_t;

static int completed;

static void on_done(int status, mx_sql_res_t *res, void *ud)
{
    outcome_t *o = ud;
    o->done = 1;
    o->status = status;
    o->order = completed++;
    if (status == 0 && res->nstmts > 0 && mx_sql_nrows(res, res->nstmts - 1) > 0)
        o->value = mx_sql_int(res, res->nstmts - 1, 0, 0);
    if (mx_sql_errmsg(res))
        snprintf(o->errmsg, sizeof(o->errmsg), "%s", mx_sql_errmsg(res));
}

static void test_atomicity(void **state)
{
    (void)state;
    mx_db_t *db = fresh_kv();
    enum { N = 60 };
    outcome_t o[N];
    memset(o, 0, sizeof(o));
    completed = 0;
    /* Every third batch inserts its own key, then collides with key 0. */
    sync_exec(db, "INSERT INTO t_kv (k) VALUES (0)");
    for (int i = 0; i < N; i++) {
        mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_WRITE);
        mx_sql_add(b, "INSERT INTO t_kv (k, s) VALUES (?, ?)", "is", (int64_t)(1000 + i), "first");
        if (i % 3 == 1)
            mx_sql_add(b, "INSERT INTO t_kv (k) VALUES (0)", "");
        else
            mx_sql_add(b, "SELECT COUNT(*) FROM t_kv WHERE k = ?", "i", (int64_t)(1000 + i));
        assert_int_equal(mx_sql_run(b, on_done, &o[i]), 0);
    }
    run_loop();
    for (int i = 0; i < N; i++) {
        assert_true(o[i].done);
        if (i % 3 == 1) {
            assert_int_equal(o[i].status, MX_ECONSTRAINT);
            assert_non_null(strstr(o[i].errmsg, "statement 2"));
        } else {
            assert_int_equal(o[i].status, 0);
            assert_int_equal(o[i].value, 1); /* its own first statement is visible to it */
        }
    }
    assert_int_equal(sync_count(db, "SELECT COUNT(*) FROM t_kv WHERE k >= 1000"), N - N / 3);
    assert_int_equal(sync_count(db, "SELECT COUNT(*) FROM t_kv WHERE k >= 1000 AND "
                                    "(k - 1000) % 3 = 1"), 0);
    if (!mx_db_is_postgres(db)) {
        uint64_t commits, batches;
        mx__sqlite_group_stats(db, &commits, &batches);
        printf("  sqlite group commit: %llu batches in %llu commits\n",
               (unsigned long long)batches, (unsigned long long)commits);
        assert_true(commits <= batches);
    }
}

static outcome_t rw_read;

static void on_write_then_read(int status, mx_sql_res_t *res, void *ud)
{
    on_done(status, res, ud);
    /* Read after write: what the write committed is visible now. */
    mx_sql_batch_t *b = mx_sql_batch_new(mx_db_get(NULL), MX_SQL_READ);
    mx_sql_add(b, "SELECT s FROM t_kv WHERE k = ?", "i", (int64_t)424242);
    mx_sql_add(b, "SELECT COUNT(*) FROM t_kv WHERE k = ?", "i", (int64_t)424242);
    assert_int_equal(mx_sql_run(b, on_done, &rw_read), 0);
}

static void test_async_order(void **state)
{
    (void)state;
    mx_db_t *db = fresh_kv();
    enum { N = 300 };
    static outcome_t o[N];
    memset(o, 0, sizeof(o));
    completed = 0;
    for (int i = 0; i < N; i++) {
        mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_WRITE);
        mx_sql_add(b, "INSERT INTO t_kv (k, n) VALUES (?, ?) RETURNING n", "ii", (int64_t)i,
                   (int64_t)i * 10);
        assert_int_equal(mx_sql_run(b, on_done, &o[i]), 0);
        if (i % 50 == 0) {
            /* Reads mixed in: they may finish in any order. */
            mx_sql_batch_t *r = mx_sql_batch_new(db, MX_SQL_READ);
            mx_sql_add(r, "SELECT COUNT(*) FROM t_kv", "");
            assert_int_equal(mx_sql_run(r, NULL, NULL), 0);
        }
    }
    int mx_queued = -1, inflight = -1, size = -1, idle = -1;
    mx__store_stats(&mx_queued, &inflight, &size, &idle);
    assert_true(mx_queued >= 0 && size > 0);
    run_loop();
    int last = -1;
    for (int i = 0; i < N; i++) {
        assert_true(o[i].done);
        assert_int_equal(o[i].status, 0);
        assert_int_equal(o[i].value, (int64_t)i * 10);
        assert_true(o[i].order > last); /* writes complete in submission order */
        last = o[i].order;
    }
    assert_int_equal(sync_count(db, "SELECT COUNT(*) FROM t_kv"), N);

    outcome_t w;
    memset(&w, 0, sizeof(w));
    memset(&rw_read, 0, sizeof(rw_read));
    mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_WRITE);
    mx_sql_add(b, "INSERT INTO t_kv (k, s) VALUES (?, ?)", "is", (int64_t)424242, "seen");
    assert_int_equal(mx_sql_run(b, on_write_then_read, &w), 0);
    run_loop();
    assert_int_equal(w.status, 0);
    assert_true(rw_read.done);
    assert_int_equal(rw_read.status, 0);
    assert_int_equal(rw_read.value, 1);

    /* An empty batch completes too. */
    memset(&w, 0, sizeof(w));
    assert_int_equal(mx_sql_run(mx_sql_batch_new(db, MX_SQL_WRITE), on_done, &w), 0);
    run_loop();
    assert_true(w.done);
    assert_int_equal(w.status, 0);
}

/* The flush at close: queued writes are committed and reported. */
static void test_close_flushes(void **state)
{
    mx_db_t *db = fresh_kv();
    enum { N = 40 };
    outcome_t o[N];
    memset(o, 0, sizeof(o));
    for (int i = 0; i < N; i++) {
        mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_WRITE);
        mx_sql_add(b, "INSERT INTO t_kv (k) VALUES (?)", "i", (int64_t)i);
        assert_int_equal(mx_sql_run(b, on_done, &o[i]), 0);
    }
    /* Close without running the loop. */
    bool pg = mx_db_is_postgres(db);
    mx__store_close();
    for (int i = 0; i < N; i++) {
        assert_true(o[i].done);
        assert_int_equal(o[i].status, 0);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    char err[256];
    mx_db_conf_t conf = { .engine = pg ? "psycopg2" : "sqlite3", .sqlite_path = dbpath,
                          .pg_conninfo = getenv("MXSTACK_TEST_PG"),
                          .sqlite_sync_full = sync_full };
    assert_int_equal(mx__store_init(&conf, err, sizeof(err)), 0);
    assert_int_equal(sync_count(mx_db_get(NULL), "SELECT COUNT(*) FROM t_kv"), N);
    (void)state;
}

static void test_named(void **state)
{
    (void)state;
    char err[256];
    char other[160];
    mx_db_conf_t conf = { .engine = "sqlite3", .sqlite_path = other };
    snprintf(other, sizeof(other), "%s/other.db", tmpdir[0] ? tmpdir : "/tmp");
    assert_int_equal(mx__store_open_named("auth", &conf, err, sizeof(err)), 0);
    assert_int_equal(mx__store_open_named("auth", &conf, err, sizeof(err)), -EEXIST);
    mx_db_t *a = mx_db_get("auth");
    assert_non_null(a);
    assert_ptr_not_equal(a, mx_db_get(NULL));
    assert_ptr_equal(mx_db_get("homeserver"), mx_db_get(NULL));
    assert_false(mx_db_is_postgres(a));
    sync_exec(a, "CREATE TABLE IF NOT EXISTS only_here (x INTEGER)");
    assert_int_equal(sync_count(a, "SELECT COUNT(*) FROM only_here"), 0);
    /* Bad engines are reported. */
    mx_db_conf_t bad = { .engine = "mysql", .sqlite_path = other };
    assert_int_equal(mx__store_open_named("x", &bad, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "mysql"));
    if (!tmpdir[0])
        unlink(other);
    else {
        char p[200];
        const char *sfx[] = { "", "-wal", "-shm" };
        mx__store_close();
        uv_run(&loop, UV_RUN_DEFAULT);
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof(p), "%s%s", other, sfx[i]);
            unlink(p);
        }
        mx_db_conf_t c2 = { .engine = "sqlite3", .sqlite_path = dbpath };
        assert_int_equal(mx__store_init(&c2, err, sizeof(err)), 0);
    }
}

static void test_pg_reconnect(void **state)
{
    (void)state;
    mx_db_t *db = fresh_kv();
    if (!mx_db_is_postgres(db))
        skip();
    /* Warm the pool. */
    outcome_t o[4];
    memset(o, 0, sizeof(o));
    for (int i = 0; i < 4; i++) {
        mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_READ);
        mx_sql_add(b, "SELECT pg_backend_pid() FROM pg_sleep(0.05)", "");
        assert_int_equal(mx_sql_run(b, on_done, &o[i]), 0);
    }
    run_loop();
    for (int i = 0; i < 4; i++)
        assert_int_equal(o[i].status, 0);
    int q, f, size, idle;
    mx__store_stats(&q, &f, &size, &idle);
    assert_true(size >= 2);

    /* Kill every other backend, the pool's included. */
    int64_t killed = sync_count(db, "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                                    "AND backend_type = 'client backend'");
    printf("  terminated %lld backends\n", (long long)killed);
    assert_true(killed >= 2);

    /* The next batch may fail (its connection just died) but never hangs;
     * after the backoff the pool serves again. */
    outcome_t w;
    memset(&w, 0, sizeof(w));
    mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_WRITE);
    mx_sql_add(b, "INSERT INTO t_kv (k) VALUES (1)", "");
    assert_int_equal(mx_sql_run(b, on_done, &w), 0);
    run_loop();
    assert_true(w.done);
    assert_true(w.status == 0 || w.status == MX_EDB);
    printf("  batch right after the kill: %s\n", w.status ? w.errmsg : "ok");

    sleep_on_loop(400);
    memset(&w, 0, sizeof(w));
    b = mx_sql_batch_new(db, MX_SQL_WRITE);
    mx_sql_add(b, "INSERT INTO t_kv (k) VALUES (2) RETURNING k", "");
    assert_int_equal(mx_sql_run(b, on_done, &w), 0);
    run_loop();
    assert_int_equal(w.status, 0);
    assert_int_equal(w.value, 2);
    /* run_sync's own connection was killed too; it reconnects. */
    assert_int_equal(sync_count(db, "SELECT COUNT(*) FROM t_kv WHERE k = 2"), 1);
}

/* Benchmark ---------------------------------------------------------------- */

typedef struct bench {
    mx_db_t *db;
    uint64_t deadline;
    int64_t next_key;
    long done, failed;
} bench_t;

static bench_t bench;

static void bench_submit(void);

static void bench_done(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    (void)ud;
    bench.done++;
    if (status)
        bench.failed++;
    if (uv_hrtime() < bench.deadline)
        bench_submit();
}

static void bench_submit(void)
{
    mx_sql_batch_t *b = mx_sql_batch_new(bench.db, MX_SQL_WRITE);
    int64_t k = bench.next_key++;
    mx_sql_add(b, "INSERT INTO t_kv (k, s, n) VALUES (?, ?, ?)", "isi", k, "benchmark row", k);
    mx_sql_add(b, "UPDATE t_kv SET n = n + 1 WHERE k = ?", "i", k);
    mx_sql_run(b, bench_done, NULL);
}

static void test_bench(void **state)
{
    (void)state;
    if (!getenv("MXSTACK_STORE_BENCH"))
        skip();
    mx_db_t *db = fresh_kv();
    memset(&bench, 0, sizeof(bench));
    bench.db = db;
    uint64_t c0 = 0, b0 = 0, c1 = 0, b1 = 0;
    mx__sqlite_group_stats(db, &c0, &b0);
    uint64_t start = uv_hrtime();
    bench.deadline = start + 3000000000ull;
    for (int i = 0; i < 32; i++)
        bench_submit();
    run_loop();
    double secs = (double)(uv_hrtime() - start) / 1e9;
    mx__sqlite_group_stats(db, &c1, &b1);
    printf("  %s: %ld write batches in %.2f s with 32 writers = %.0f batches/s",
           mx_db_is_postgres(db) ? "postgres" : "sqlite", bench.done, secs, bench.done / secs);
    if (c1 > c0)
        printf(", %.1f batches per commit", (double)(b1 - b0) / (double)(c1 - c0));
    printf("\n");
    assert_int_equal(bench.failed, 0);
}

/* SQLite: the configured synchronous mode is what every connection runs
 * with, and with NORMAL the checkpointer moves a big WAL into the database
 * file without any commit doing it. */
static void test_sqlite_sync_mode(void **state)
{
    (void)state;
    mx_db_t *db = fresh_kv();
    assert_int_equal(sync_count(db, "PRAGMA synchronous"), sync_full ? 2 : 1);
    struct stat st;
    assert_int_equal(stat(dbpath, &st), 0);
    off_t before = st.st_size;
    /* ~12 MiB of pages: past the checkpointer's 8 MiB threshold. */
    static char blob[8192];
    memset(blob, 'x', sizeof(blob));
    for (int i = 0; i < 30; i++) {
        mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_WRITE);
        for (int j = 0; j < 50; j++)
            mx_sql_add(b, "INSERT INTO t_kv (k, b) VALUES (?, ?)", "ib", (int64_t)(i * 50 + j),
                       blob, sizeof(blob));
        mx_sql_res_t *res = NULL;
        assert_int_equal(mx_sql_run_sync(b, &res), 0);
        mx_sql_res_free(res);
    }
    /* FULL checkpoints at 16 MiB inside a commit: nothing moved yet.
     * NORMAL: the checkpointer has copied the pages within a few seconds. */
    off_t after = before;
    for (int i = 0; i < 100 && after < before + 4 * 1024 * 1024; i++) {
        sleep_on_loop(50);
        assert_int_equal(stat(dbpath, &st), 0);
        after = st.st_size;
        if (sync_full)
            break;
    }
    if (sync_full)
        assert_true(after < before + 4 * 1024 * 1024);
    else
        assert_true(after >= before + 4 * 1024 * 1024);
    assert_int_equal(sync_count(db, "SELECT COUNT(*) FROM t_kv"), 1500);
}

#define STORE_TESTS \
    cmocka_unit_test(test_migrations), \
    cmocka_unit_test(test_types), \
    cmocka_unit_test(test_errors), \
    cmocka_unit_test(test_atomicity), \
    cmocka_unit_test(test_async_order), \
    cmocka_unit_test(test_close_flushes), \
    cmocka_unit_test(test_pg_reconnect), \
    cmocka_unit_test(test_bench)

int main(void)
{
    alarm(300);
    const struct CMUnitTest sqlite_tests[] = {
        cmocka_unit_test(test_placeholders),
        STORE_TESTS,
        cmocka_unit_test(test_named),
        cmocka_unit_test(test_sqlite_sync_mode),
    };
    const struct CMUnitTest sqlite_full_tests[] = {
        STORE_TESTS,
        cmocka_unit_test(test_sqlite_sync_mode),
    };
    const struct CMUnitTest pg_tests[] = { STORE_TESTS };
    int fails = cmocka_run_group_tests_name("store/sqlite", sqlite_tests, setup_sqlite,
                                            teardown_any);
    sync_full = true;
    fails += cmocka_run_group_tests_name("store/sqlite-synchronous-full", sqlite_full_tests,
                                         setup_sqlite, teardown_any);
    if (getenv("MXSTACK_TEST_PG") && *getenv("MXSTACK_TEST_PG"))
        fails += cmocka_run_group_tests_name("store/postgres", pg_tests, setup_pg, teardown_any);
    else
        printf("store/postgres: skipped (set MXSTACK_TEST_PG to a libpq conninfo to run it)\n");
    return fails ? 1 : 0;
}

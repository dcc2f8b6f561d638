/*
 * store_sqlite.c: the SQLite engine behind the storage API.
 *
 * The file runs in WAL mode.  With database.args.synchronous: normal (the
 * default) a commit is in the OS page cache before anyone hears of it: it
 * survives kill -9 of the process, only power loss can roll back the last
 * commits, and the file never corrupts.  The commit path then does no
 * fsync at all: automatic checkpoints are off on the writer and a
 * checkpointer thread with its own connection runs PASSIVE checkpoints
 * (they never block the writer) when the WAL grows past SQ_CKPT_FRAMES.
 * Under a steady write load a PASSIVE checkpoint never catches up with the
 * writer, so SQLite never starts the WAL over and it grows without bound
 * (hundreds of MiB in a benchmark; truncating that afterwards stalled one
 * commit for 350 ms).  Once the WAL passes SQ_RESTART_FRAMES the
 * checkpointer therefore repeats PASSIVE passes until only a short tail
 * (the pages committed during the last pass) is left, and the writer
 * copies that tail itself between two groups (sq_restart_locked): with
 * nothing left in the WAL, its next commit writes the WAL from its start,
 * so the WAL file stays near SQ_RESTART_FRAMES pages.  (A RESTART
 * checkpoint from the checkpointer did that too, but it holds the write
 * lock for a whole pass while commits sleep in the busy handler: send
 * p99 went from 2.5 to 5.5 ms, 32 senders' p99 from 12 to 75 ms.)
 * With synchronous: full every commit fsyncs the WAL and checkpoints run
 * inside commits (SQLite's automatic checkpoint).  One writer thread owns the
 * only writing connection and commits in groups: it takes every write
 * batch queued so far, opens one BEGIN IMMEDIATE transaction, runs the
 * batches (a failing one makes the group run again with a SAVEPOINT per
 * batch, so it rolls back only itself), COMMITs once and then reports
 * every batch of the group.
 * One fsync thus acknowledges many batches, which is where the write
 * throughput comes from without weakening durability.  Two reader threads
 * with query_only connections run read batches, each inside BEGIN/COMMIT
 * for a consistent snapshot.  Completions reach the loop through store.c's
 * single uv_async_t; run_sync callers wait on a condition variable.
 * Each connection caches its prepared statements by SQL text.
 */
#include "store.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SQ_READERS 2
#define SQ_CACHE_SLOTS 512      /* power of two */
#define SQ_CACHE_MAX 256        /* entries before the cache is emptied */
#define SQ_BUSY_TIMEOUT_MS 10000
#define SQ_CKPT_FRAMES 2000     /* WAL pages (8 MiB) that start a checkpoint */
#define SQ_CKPT_GAP_MS 200      /* at most one checkpoint per this interval */
#define SQ_RESTART_FRAMES 4096  /* WAL pages (16 MiB) after which the WAL starts over */
#define SQ_WAL_MAX_FRAMES 8192 /* WAL pages (32 MiB) past which any tail restarts it */
#define SQ_TAIL_FRAMES 512      /* pages the writer may have to copy itself at a restart */
#define SQ_CKPT_PASSES 8        /* PASSIVE passes that try to shrink the tail */
#define SQ_WAL_LIMIT 67108864   /* bytes: the WAL file is truncated to this when reset */
#define MX__SQ_STR2(x) #x
#define MX__SQ_STR(x) MX__SQ_STR2(x)

typedef struct sq_cached {
    char *sql;                  /* owned; NULL = free slot */
    sqlite3_stmt *st;
} sq_cached_t;

typedef struct sq_conn {
    sqlite3 *db;
    sq_cached_t slots[SQ_CACHE_SLOTS];
    int ncached;
} sq_conn_t;

typedef struct sq_db sq_db_t;

typedef struct sq_reader {
    sq_db_t *d;
    sq_conn_t conn;
    uv_thread_t thread;
    bool started;
} sq_reader_t;

struct sq_db {
    mx_db_t *db;
    uv_mutex_t mu;              /* guards everything below but the connections */
    uv_cond_t wcond, rcond, sync_cond;
    mx_sql_batch_t *wq_head, *wq_tail, *rq_head, *rq_tail;
    int nwq, nrq;
    int w_inflight, r_inflight, idle;
    bool closing;
    sq_conn_t writer;
    uv_thread_t wthread;
    bool wstarted;
    sq_reader_t readers[SQ_READERS];
    uint64_t commits, batches;
    bool sync_full;             /* synchronous=FULL: no checkpointer */
    sq_conn_t ckpt;             /* the checkpointer's connection (NORMAL only) */
    uv_cond_t ccond;
    uv_thread_t cthread;
    bool cstarted, ckpt_wanted;
    bool restart_ready;         /* the WAL is backfilled but for a short tail */
    int wal_frames;             /* pages in the WAL after the writer's last commit */
    uint64_t checkpoints;
};

/* ------------------------------------------------------- connections --- */

static int sq_code(int rc)
{
    return (rc & 0xff) == SQLITE_CONSTRAINT ? MX_ECONSTRAINT : MX_EDB;
}

static uint32_t sq_hash(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static void sq_cache_clear(sq_conn_t *c)
{
    for (int i = 0; i < SQ_CACHE_SLOTS; i++) {
        if (c->slots[i].sql) {
            sqlite3_finalize(c->slots[i].st);
            free(c->slots[i].sql);
            c->slots[i].sql = NULL;
            c->slots[i].st = NULL;
        }
    }
    c->ncached = 0;
}

/* The prepared statement for `sql`, from the cache or compiled now.
 * Returns an SQLite code. */
static int sq_prepare(sq_conn_t *c, const char *sql, sqlite3_stmt **out)
{
    uint32_t h = sq_hash(sql) & (SQ_CACHE_SLOTS - 1);
    for (;;) {
        sq_cached_t *e = &c->slots[h];
        if (!e->sql)
            break;
        if (strcmp(e->sql, sql) == 0) {
            *out = e->st;
            return SQLITE_OK;
        }
        h = (h + 1) & (SQ_CACHE_SLOTS - 1);
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    if (!st)
        return SQLITE_MISUSE; /* empty text */
    if (c->ncached >= SQ_CACHE_MAX) {
        /* Emptying beats eviction bookkeeping: modules use a bounded set
         * of statements, so this only happens with generated SQL. */
        sq_cache_clear(c);
        h = sq_hash(sql) & (SQ_CACHE_SLOTS - 1);
    }
    char *key = strdup(sql);
    if (!key) {
        sqlite3_finalize(st);
        return SQLITE_NOMEM;
    }
    while (c->slots[h].sql)
        h = (h + 1) & (SQ_CACHE_SLOTS - 1);
    c->slots[h].sql = key;
    c->slots[h].st = st;
    c->ncached++;
    *out = st;
    return SQLITE_OK;
}

/* Runs a statement without parameters or rows (BEGIN, SAVEPOINT...). */
static int sq_simple(sq_conn_t *c, const char *sql)
{
    sqlite3_stmt *st;
    int rc = sq_prepare(c, sql, &st);
    if (rc != SQLITE_OK)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Busy handler: SQLite's own (sqlite3_busy_timeout) sleeps 1, 2, 5, 10...
 * ms, so a lock held for 0.2 ms costs a waiter at least 1 ms and a few
 * short waits add up to tens of ms.  Poll every 100 us for the first
 * 20 ms, then every ms, for SQ_BUSY_TIMEOUT_MS in all. */
static int sq_busy(void *arg, int count)
{
    (void)arg;
    if (count < 200) {
        struct timespec ts = { 0, 100000 };
        nanosleep(&ts, NULL);
        return 1;
    }
    if (count >= 200 + SQ_BUSY_TIMEOUT_MS)
        return 0;
    uv_sleep(1);
    return 1;
}

static int sq_conn_open(sq_conn_t *c, const char *path, bool is_reader, bool sync_full,
                        char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    int rc = sqlite3_open_v2(path, &c->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot open SQLite database: %s", path,
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sqlite3_close(c->db);
        c->db = NULL;
        return MX_EDB;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_handler(c->db, sq_busy, NULL);
    /* temp_store=MEMORY: statement journals (a statement inside a batch's
     * savepoint) and sorter spills stay off the disk (no temp file per
     * commit). */
    static const char *const common[] = {
        "PRAGMA foreign_keys=ON", "PRAGMA temp_store=MEMORY", NULL,
    };
    rc = sqlite3_exec(c->db, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    for (int i = 0; common[i]; i++) {
        rc = sqlite3_exec(c->db, common[i], NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            goto fail;
    }
    if (is_reader) {
        rc = sqlite3_exec(c->db, "PRAGMA query_only=ON", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            goto fail;
    } else {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
            const char *mode = (const char *)sqlite3_column_text(st, 0);
            if (!mode || strcmp(mode, "wal") != 0) {
                snprintf(err, errlen, "%s: SQLite refused WAL mode (journal_mode=%s)", path,
                         mode ? mode : "?");
                sqlite3_finalize(st);
                sqlite3_close(c->db);
                c->db = NULL;
                return MX_EDB;
            }
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_OK)
            goto fail;
        /* FULL: checkpoints run in the writer's commits, every 4000 pages
         * (16 MiB of WAL) rather than SQLite's 1000, fewer DB-file writes
         * and fsyncs under sustained writes.  NORMAL: never in a commit
         * (the checkpointer thread does them). */
        rc = sqlite3_exec(c->db, sync_full ? "PRAGMA wal_autocheckpoint=4000"
                                           : "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(c->db, "PRAGMA journal_size_limit=" MX__SQ_STR(SQ_WAL_LIMIT),
                              NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            goto fail;
    }
    return 0;
fail:
    snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(c->db));
    sqlite3_close(c->db);
    c->db = NULL;
    return MX_EDB;
}

static void sq_conn_close(sq_conn_t *c)
{
    if (!c->db)
        return;
    sq_cache_clear(c);
    sqlite3_close(c->db);
    c->db = NULL;
}

/* ------------------------------------------------------------ batches --- */

static void sq_fail(mx_sql_batch_t *b, int idx, int rc, const char *what, const char *why)
{
    char msg[400];
    if (what)
        snprintf(msg, sizeof(msg), "%s: %s", what, why);
    else
        snprintf(msg, sizeof(msg), "%s", why);
    b->status = sq_code(rc);
    mx__res_error(b->res, idx, idx >= 0 ? b->stmts[idx].sql : NULL, msg);
}

/* A migration script: several statements, no parameters, no rows kept. */
static int sq_script(sq_conn_t *c, mx_sql_batch_t *b, int idx)
{
    const char *p = b->stmts[idx].sql;
    while (p && *p) {
        sqlite3_stmt *st = NULL;
        const char *tail = NULL;
        int rc = sqlite3_prepare_v2(c->db, p, -1, &st, &tail);
        if (rc == SQLITE_OK && st) {
            while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                ;
            if (rc == SQLITE_DONE)
                rc = SQLITE_OK;
        }
        if (rc != SQLITE_OK) {
            sq_fail(b, idx, rc, NULL, sqlite3_errmsg(c->db));
            sqlite3_finalize(st);
            return rc;
        }
        sqlite3_finalize(st);
        if (!st)
            break; /* only comments or blanks remained */
        p = tail;
    }
    return SQLITE_OK;
}

static int sq_bind(sqlite3_stmt *st, const mx__sql_stmt_t *s)
{
    for (int i = 0; i < s->nparams; i++) {
        const mx__sql_param_t *p = &s->params[i];
        int rc;
        switch (p->type) {
        case 'i':
            rc = sqlite3_bind_int64(st, i + 1, p->i);
            break;
        case 'd':
            rc = sqlite3_bind_double(st, i + 1, p->d);
            break;
        case 's':
            rc = p->s ? sqlite3_bind_text(st, i + 1, p->s, (int)p->len, SQLITE_STATIC)
                      : sqlite3_bind_null(st, i + 1);
            break;
        case 'b':
            /* p->s is never NULL for a blob, so an empty one stays a blob. */
            rc = sqlite3_bind_blob(st, i + 1, p->s, (int)p->len, SQLITE_STATIC);
            break;
        default:
            rc = sqlite3_bind_null(st, i + 1);
        }
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

/* Runs statement `idx` of `b`, storing its rows.  On failure marks the
 * batch failed and returns the SQLite code. */
static int sq_stmt(sq_conn_t *c, mx_sql_batch_t *b, int idx)
{
    mx__sql_stmt_t *s = &b->stmts[idx];
    if (s->is_script)
        return sq_script(c, b, idx);
    sqlite3_stmt *st;
    int rc = sq_prepare(c, s->sql, &st);
    if (rc != SQLITE_OK) {
        sq_fail(b, idx, rc, NULL, sqlite3_errmsg(c->db));
        return rc;
    }
    if (sqlite3_bind_parameter_count(st) != s->nparams) {
        char why[96];
        snprintf(why, sizeof(why), "expects %d parameters, got %d",
                 sqlite3_bind_parameter_count(st), s->nparams);
        sq_fail(b, idx, SQLITE_MISUSE, NULL, why);
        return SQLITE_MISUSE;
    }
    rc = sq_bind(st, s);
    if (rc != SQLITE_OK) {
        sq_fail(b, idx, rc, NULL, sqlite3_errmsg(c->db));
        goto out;
    }
    int ncols = sqlite3_column_count(st);
    mx__res_cols(b->res, idx, ncols);
    int before = sqlite3_total_changes(c->db);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int col = 0; col < ncols; col++) {
            int t = sqlite3_column_type(st, col);
            const void *v = NULL;
            if (t == SQLITE_BLOB)
                v = sqlite3_column_blob(st, col);
            else if (t != SQLITE_NULL)
                v = sqlite3_column_text(st, col);
            size_t n = t == SQLITE_NULL ? 0 : (size_t)sqlite3_column_bytes(st, col);
            if (t != SQLITE_NULL && !v)
                v = ""; /* an empty blob */
            if (mx__res_cell(b->res, idx, v, n) < 0) {
                sq_fail(b, idx, SQLITE_NOMEM, NULL, "out of memory");
                rc = SQLITE_NOMEM;
                goto out;
            }
        }
    }
    if (rc != SQLITE_DONE) {
        sq_fail(b, idx, rc, NULL, sqlite3_errmsg(c->db));
        goto out;
    }
    rc = SQLITE_OK;
    /* sqlite3_changes() keeps the last DML count; only report it when this
     * statement changed something. */
    b->res->stmts[idx].changes = sqlite3_total_changes(c->db) != before ? sqlite3_changes(c->db) : 0;
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Hands a finished batch on: to the loop, or to its run_sync caller.
 * Called with d->mu held. */
static void sq_finish_locked(sq_db_t *d, mx_sql_batch_t *b)
{
    if (b->is_sync) {
        b->sync_done = true;
        uv_cond_broadcast(&d->sync_cond);
    } else {
        mx__store_complete(b);
    }
}

/* ------------------------------------------------------------- writer --- */

/* Runs the statements of `b` in the writer's open transaction, inside a
 * savepoint of its own when `savepoint` (a failure then undoes this batch
 * only).  Without one, a failed batch leaves its earlier statements
 * applied: the caller must roll the whole transaction back. */
static void sq_write_batch(sq_conn_t *c, mx_sql_batch_t *b, bool savepoint)
{
    int rc = savepoint ? sq_simple(c, "SAVEPOINT mx_batch") : SQLITE_OK;
    if (rc != SQLITE_OK) {
        sq_fail(b, -1, rc, "SAVEPOINT", sqlite3_errmsg(c->db));
        return;
    }
    for (int i = 0; i < b->nstmts; i++)
        if (sq_stmt(c, b, i) != SQLITE_OK)
            break;
    if (!savepoint)
        return;
    if (!b->status) {
        rc = sq_simple(c, "RELEASE mx_batch");
        if (rc != SQLITE_OK)
            sq_fail(b, -1, rc, "RELEASE", sqlite3_errmsg(c->db));
    }
    if (b->status && !sqlite3_get_autocommit(c->db)) {
        /* Undo this batch only.  If even that fails, the whole
         * transaction must go. */
        if (sq_simple(c, "ROLLBACK TO mx_batch") != SQLITE_OK ||
            sq_simple(c, "RELEASE mx_batch") != SQLITE_OK)
            sq_simple(c, "ROLLBACK");
    }
}

/* Group commit of `list` (linked by ->next).  The batches first run
 * without savepoints: a savepoint per batch is not free (FTS5 flushes its
 * pending terms into a new index segment at every savepoint, so a group
 * of 30 sends wrote 30 segments to merge later).  Batches rarely fail; when
 * one does, the transaction is rolled back, that batch keeps its error and
 * the group runs again with a savepoint per batch, as the failed batch
 * saw the same database either way. */
static void sq_write_group(sq_db_t *d, mx_sql_batch_t *list)
{
    sq_conn_t *c = &d->writer;
    bool savepoints = false;
    for (;;) {
        bool retry = false;
        int rc = sq_simple(c, "BEGIN IMMEDIATE");
        if (rc != SQLITE_OK) {
            for (mx_sql_batch_t *b = list; b; b = b->next)
                if (!b->status)
                    sq_fail(b, -1, rc, "BEGIN", sqlite3_errmsg(c->db));
            return;
        }
        for (mx_sql_batch_t *b = list; b; b = b->next) {
            if (b->status)
                continue;
            sq_write_batch(c, b, savepoints);
            if (b->status && !savepoints) {
                if (!sqlite3_get_autocommit(c->db))
                    sq_simple(c, "ROLLBACK");
                savepoints = retry = true;
                break;
            }
            if (sqlite3_get_autocommit(c->db)) {
                /* SQLite rolled back the whole transaction (I/O error,
                 * full disk...): this batch is failed; rerun the others. */
                if (!b->status)
                    sq_fail(b, -1, SQLITE_ABORT, NULL, "transaction aborted");
                retry = true;
                break;
            }
        }
        if (retry) {
            for (mx_sql_batch_t *b = list; b; b = b->next)
                if (!b->status)
                    mx__res_reset(b->res);
            continue;
        }
        rc = sq_simple(c, "COMMIT");
        if (rc != SQLITE_OK) {
            char why[300];
            snprintf(why, sizeof(why), "%s", sqlite3_errmsg(c->db));
            if (!sqlite3_get_autocommit(c->db))
                sq_simple(c, "ROLLBACK");
            for (mx_sql_batch_t *b = list; b; b = b->next) {
                if (!b->status) {
                    mx__res_reset(b->res);
                    sq_fail(b, -1, rc, "COMMIT", why);
                }
            }
        }
        return;
    }
}

/* Called by the writer between groups (d->mu held) once the checkpointer
 * has backfilled all but a short tail of a big WAL: copy that tail from
 * the writer's own connection.  No commit can run meanwhile, so the
 * checkpoint is complete and the next commit writes the WAL from its
 * start (SQLite restarts it when no reader still needs the old frames).
 * Holding the writer for the tail (a few hundred pages and the fsyncs)
 * beats a RESTART checkpoint from another connection, which takes the
 * write lock for a whole pass and leaves commits in the busy handler. */
static void sq_restart_locked(sq_db_t *d)
{
    d->restart_ready = false;
    uv_mutex_unlock(&d->mu);
    int rc = sqlite3_wal_checkpoint_v2(d->writer.db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
                                       NULL);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        mx_log("store", MX_LOG_WARN, "SQLite checkpoint: %s", sqlite3_errmsg(d->writer.db));
    uv_mutex_lock(&d->mu);
}

static void sq_writer_main(void *arg)
{
    sq_db_t *d = arg;
    uv_mutex_lock(&d->mu);
    for (;;) {
        while (!d->wq_head && !d->closing) {
            d->idle++;
            uv_cond_wait(&d->wcond, &d->mu);
            d->idle--;
        }
        if (!d->wq_head)
            break; /* closing, and everything is written */
        mx_sql_batch_t *list = d->wq_head;
        int n = d->nwq;
        d->wq_head = d->wq_tail = NULL;
        d->nwq = 0;
        d->w_inflight = n;
        uv_mutex_unlock(&d->mu);

        sq_write_group(d, list);

        uv_mutex_lock(&d->mu);
        d->w_inflight = 0;
        d->commits++;
        d->batches += (uint64_t)n;
        /* In order, so callbacks of one database run in submission order. */
        while (list) {
            mx_sql_batch_t *b = list;
            list = b->next;
            sq_finish_locked(d, b);
        }
        if (d->restart_ready)
            sq_restart_locked(d);
    }
    uv_mutex_unlock(&d->mu);
}

/* ------------------------------------------------------- checkpointer --- */

/* The writer's WAL hook (NORMAL only): after a commit that left `nframes`
 * pages in the WAL, wake the checkpointer once the WAL is big enough. */
static int sq_wal_hook(void *arg, sqlite3 *db, const char *name, int nframes)
{
    (void)db;
    (void)name;
    sq_db_t *d = arg;
    uv_mutex_lock(&d->mu);
    d->wal_frames = nframes;
    if (nframes >= SQ_CKPT_FRAMES && !d->ckpt_wanted) {
        d->ckpt_wanted = true;
        uv_cond_signal(&d->ccond);
    }
    uv_mutex_unlock(&d->mu);
    return SQLITE_OK;
}

/* PASSIVE checkpoints from a connection of its own: they copy committed
 * pages into the database file and fsync it while the writer goes on
 * committing, so no request waits for a checkpoint's fsyncs.  After a
 * complete one, the writer's next transaction starts the WAL over. */
static void sq_ckpt_main(void *arg)
{
    sq_db_t *d = arg;
    uv_mutex_lock(&d->mu);
    for (;;) {
        while (!d->ckpt_wanted && !d->closing)
            uv_cond_wait(&d->ccond, &d->mu);
        if (d->closing)
            break;
        uv_mutex_unlock(&d->mu);
        /* Once the WAL is big, PASSIVE passes follow one another while
         * each leaves a long tail (the pages committed during it); a short
         * tail goes to the writer, which copies it between two groups. */
        bool big = false;
        for (int pass = 0; pass < SQ_CKPT_PASSES; pass++) {
            int nlog = 0, nckpt = 0;
            int rc = sqlite3_wal_checkpoint_v2(d->ckpt.db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                               &nlog, &nckpt);
            if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
                mx_log("store", MX_LOG_WARN, "SQLite checkpoint: %s",
                       sqlite3_errmsg(d->ckpt.db));
                break;
            }
            uv_mutex_lock(&d->mu);
            int frames = d->wal_frames;
            /* Past SQ_WAL_MAX_FRAMES the writer takes a longer tail
             * rather than let the WAL grow. */
            bool ready = rc == SQLITE_OK && nckpt == nlog &&
                         (frames - nckpt <= SQ_TAIL_FRAMES || frames >= SQ_WAL_MAX_FRAMES);
            if (ready && frames >= SQ_RESTART_FRAMES)
                d->restart_ready = true;
            uv_mutex_unlock(&d->mu);
            if (ready || frames < SQ_RESTART_FRAMES)
                break;
            big = frames >= SQ_RESTART_FRAMES;
        }
        if (!big)
            uv_sleep(SQ_CKPT_GAP_MS); /* a big WAL gets the next pass at once */
        uv_mutex_lock(&d->mu);
        d->checkpoints++;
        d->ckpt_wanted = false; /* the writer's next commit asks again if needed */
    }
    uv_mutex_unlock(&d->mu);
}

/* ------------------------------------------------------------ readers --- */

static void sq_read_batch(sq_conn_t *c, mx_sql_batch_t *b)
{
    int rc = sq_simple(c, "BEGIN");
    if (rc != SQLITE_OK) {
        sq_fail(b, -1, rc, "BEGIN", sqlite3_errmsg(c->db));
        return;
    }
    for (int i = 0; i < b->nstmts; i++)
        if (sq_stmt(c, b, i) != SQLITE_OK)
            break;
    if (!sqlite3_get_autocommit(c->db))
        sq_simple(c, b->status ? "ROLLBACK" : "COMMIT");
}

static void sq_reader_main(void *arg)
{
    sq_reader_t *r = arg;
    sq_db_t *d = r->d;
    uv_mutex_lock(&d->mu);
    for (;;) {
        while (!d->rq_head && !d->closing) {
            d->idle++;
            uv_cond_wait(&d->rcond, &d->mu);
            d->idle--;
        }
        mx_sql_batch_t *b = d->rq_head;
        if (!b)
            break;
        d->rq_head = b->next;
        if (!d->rq_head)
            d->rq_tail = NULL;
        d->nrq--;
        d->r_inflight++;
        uv_mutex_unlock(&d->mu);

        b->next = NULL;
        sq_read_batch(&r->conn, b);

        uv_mutex_lock(&d->mu);
        d->r_inflight--;
        sq_finish_locked(d, b);
    }
    uv_mutex_unlock(&d->mu);
}

/* ------------------------------------------------------------- engine --- */

static void sq_free(sq_db_t *d)
{
    sq_conn_close(&d->ckpt);
    for (int i = 0; i < SQ_READERS; i++)
        sq_conn_close(&d->readers[i].conn);
    sq_conn_close(&d->writer); /* last: closing it checkpoints the WAL away */
    uv_cond_destroy(&d->ccond);
    uv_cond_destroy(&d->wcond);
    uv_cond_destroy(&d->rcond);
    uv_cond_destroy(&d->sync_cond);
    uv_mutex_destroy(&d->mu);
    free(d);
}

static void sq_stop_threads(sq_db_t *d)
{
    uv_mutex_lock(&d->mu);
    d->closing = true;
    uv_cond_broadcast(&d->wcond);
    uv_cond_broadcast(&d->rcond);
    uv_cond_broadcast(&d->ccond);
    uv_mutex_unlock(&d->mu);
    if (d->cstarted)
        uv_thread_join(&d->cthread);
    if (d->wstarted)
        uv_thread_join(&d->wthread);
    for (int i = 0; i < SQ_READERS; i++)
        if (d->readers[i].started)
            uv_thread_join(&d->readers[i].thread);
}

static int sq_open(mx_db_t *db, const mx_db_conf_t *conf, char *err, size_t errlen)
{
    if (!sqlite3_threadsafe()) {
        snprintf(err, errlen, "this SQLite library was built without thread support");
        return MX_EDB;
    }
    sq_db_t *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->db = db;
    if (uv_mutex_init(&d->mu) < 0 || uv_cond_init(&d->wcond) < 0 ||
        uv_cond_init(&d->rcond) < 0 || uv_cond_init(&d->sync_cond) < 0 ||
        uv_cond_init(&d->ccond) < 0) {
        free(d); /* init failures here only happen when out of memory */
        return -ENOMEM;
    }
    /* The writer first: it creates the file and switches it to WAL. */
    d->sync_full = conf->sqlite_sync_full;
    int rc = sq_conn_open(&d->writer, conf->sqlite_path, false, d->sync_full, err, errlen);
    for (int i = 0; rc == 0 && i < SQ_READERS; i++) {
        d->readers[i].d = d;
        rc = sq_conn_open(&d->readers[i].conn, conf->sqlite_path, true, d->sync_full, err,
                          errlen);
    }
    if (rc == 0 && !d->sync_full) {
        rc = sq_conn_open(&d->ckpt, conf->sqlite_path, true, false, err, errlen);
        if (rc == 0)
            sqlite3_wal_hook(d->writer.db, sq_wal_hook, d);
    }
    if (rc == 0) {
        rc = uv_thread_create(&d->wthread, sq_writer_main, d);
        d->wstarted = rc == 0;
    }
    if (rc == 0 && !d->sync_full) {
        rc = uv_thread_create(&d->cthread, sq_ckpt_main, d);
        d->cstarted = rc == 0;
    }
    for (int i = 0; rc == 0 && i < SQ_READERS; i++) {
        rc = uv_thread_create(&d->readers[i].thread, sq_reader_main, &d->readers[i]);
        d->readers[i].started = rc == 0;
    }
    if (rc != 0) {
        if (rc != MX_EDB)
            snprintf(err, errlen, "cannot start storage threads: %s", uv_strerror(rc));
        sq_stop_threads(d);
        sq_free(d);
        return rc == MX_EDB ? rc : MX_EDB;
    }
    db->impl = d;
    mx_log("store", MX_LOG_INFO, "SQLite %s: %s (WAL, synchronous=%s, %s, %d readers)",
           sqlite3_libversion(), conf->sqlite_path, d->sync_full ? "FULL" : "NORMAL",
           d->sync_full ? "checkpoints in commits" : "checkpoints off the commit path",
           SQ_READERS);
    return 0;
}

/* Queues `b`; d->mu held. */
static void sq_enqueue_locked(sq_db_t *d, mx_sql_batch_t *b)
{
    b->next = NULL;
    if (b->mode == MX_SQL_WRITE) {
        if (d->wq_tail)
            d->wq_tail->next = b;
        else
            d->wq_head = b;
        d->wq_tail = b;
        d->nwq++;
        uv_cond_signal(&d->wcond);
    } else {
        if (d->rq_tail)
            d->rq_tail->next = b;
        else
            d->rq_head = b;
        d->rq_tail = b;
        d->nrq++;
        uv_cond_signal(&d->rcond);
    }
}

static int sq_submit(mx_db_t *db, mx_sql_batch_t *b)
{
    sq_db_t *d = db->impl;
    uv_mutex_lock(&d->mu);
    if (d->closing) {
        uv_mutex_unlock(&d->mu);
        return MX_EDB;
    }
    sq_enqueue_locked(d, b);
    uv_mutex_unlock(&d->mu);
    return 0;
}

static void sq_run_sync(mx_db_t *db, mx_sql_batch_t *b)
{
    sq_db_t *d = db->impl;
    uv_mutex_lock(&d->mu);
    if (d->closing) {
        uv_mutex_unlock(&d->mu);
        b->status = MX_EDB;
        mx__res_error(b->res, -1, NULL, "the database is closing");
        return;
    }
    sq_enqueue_locked(d, b);
    while (!b->sync_done)
        uv_cond_wait(&d->sync_cond, &d->mu);
    uv_mutex_unlock(&d->mu);
}

static void sq_close(mx_db_t *db)
{
    sq_db_t *d = db->impl;
    if (!d)
        return;
    /* The threads drain their queues before they exit. */
    sq_stop_threads(d);
    sq_free(d);
    db->impl = NULL;
}

static void sq_stats(mx_db_t *db, int *queued, int *in_flight, int *size, int *idle)
{
    sq_db_t *d = db->impl;
    uv_mutex_lock(&d->mu);
    *queued += d->nwq + d->nrq;
    *in_flight += d->w_inflight + d->r_inflight;
    *size += 1 + SQ_READERS;
    *idle += d->idle;
    uv_mutex_unlock(&d->mu);
}

void mx__sqlite_group_stats(mx_db_t *db, uint64_t *commits, uint64_t *batches)
{
    *commits = *batches = 0;
    if (!db || db->is_pg || !db->impl)
        return;
    sq_db_t *d = db->impl;
    uv_mutex_lock(&d->mu);
    *commits = d->commits;
    *batches = d->batches;
    uv_mutex_unlock(&d->mu);
}

const mx__store_engine_t mx__store_sqlite = {
    .name = "sqlite3",
    .open = sq_open,
    .submit = sq_submit,
    .run_sync = sq_run_sync,
    .close = sq_close,
    .stats = sq_stats,
};

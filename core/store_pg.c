/*
 * store_pg.c: the PostgreSQL engine behind the storage API.
 *
 * A pool of libpq connections (cp_min..cp_max) driven by the loop: each
 * connection is set up with PQconnectStart/PQconnectPoll and talks with
 * PQsendQueryParams/PQconsumeInput/PQgetResult, woken by a uv_poll_t on
 * its socket; the loop never waits for the server.  A batch goes to an
 * idle connection, or waits in a FIFO queue while all are busy (the pool
 * grows up to cp_max).  A read batch goes out in libpq pipeline mode as
 * one round trip: BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; its
 * statements; COMMIT; Sync (a failing statement makes the server skip the
 * rest, and a ROLLBACK follows).  Sent one command at a time, a read of k
 * statements took k + 2 round trips: 100 syncs woken by one message
 * queued behind each other's.
 *
 * Writes commit in groups, like the SQLite writer: one write group is in
 * flight at a time, and it takes every write batch queued meanwhile.  The
 * group goes out in libpq pipeline mode as one round trip:
 *   BEGIN; SAVEPOINT s; <batch 1>; RELEASE s; SAVEPOINT s; Sync;
 *   ROLLBACK TO s; <batch 2>; RELEASE s; SAVEPOINT s; Sync; ...
 *   ROLLBACK TO s; COMMIT; Sync
 * A failing statement makes the server skip the rest of its batch up to
 * the Sync; the next ROLLBACK TO s (harmless after a batch that worked)
 * then undoes that batch only.  One COMMIT (one WAL fsync) acknowledges the
 * whole group; callbacks run after it, in submission order.  A batch
 * holding a migration script (several statements, simple protocol) runs
 * alone, as BEGIN; script; COMMIT, one command at a time.
 *
 * A dropped connection fails the batches it was running with MX_EDB (a
 * write may or may not have committed, so it is never retried) and
 * reconnects after an exponential backoff (100 ms doubling to 10 s).  When
 * no connection can be made at all, queued batches fail instead of waiting.
 *
 * mx_sql_run_sync uses one more, blocking connection (PQexecParams),
 * opened at start so that a bad conninfo is reported at once.
 *
 * Parameters: 'i' is sent as int8, 'd' as float8, 'b' as bytea in binary
 * format, 's' as text of unknown type (the server infers it).  Results
 * come back as text; bytea columns are decoded to raw bytes.
 */
#include "store.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 10000
#define PG_CLOSE_DEADLINE_MS 30000
#define PG_OID_BYTEA 17
#define PG_OID_INT8 20
#define PG_OID_FLOAT8 701
#define PG_MAX_PREPARED 256    /* per connection; beyond, statements run unnamed */
#define PG_GROUP_MAX 512       /* write batches in one group commit */

/* A statement prepared on one connection, keyed by parameter types + SQL. */
typedef struct pg_prep {
    uint32_t hash;
    char *key;                 /* owned */
    unsigned id;               /* server-side name "mx<id>" */
} pg_prep_t;

typedef enum { PGC_DOWN, PGC_CONNECTING, PGC_IDLE, PGC_BUSY } pgc_state_t;

/* What one command of a pipelined write group answers for. */
typedef enum { PGO_CTL, PGO_STMT, PGO_SYNC, PGO_COMMIT, PGO_PREPARE } pg_op_kind_t;

typedef struct pg_op {
    pg_op_kind_t kind;
    mx_sql_batch_t *b;         /* the batch a failure belongs to (NULL: the group) */
    int idx;                   /* statement index (PGO_STMT) or prepare slot */
    const char *what;          /* command name for errors (PGO_CTL) */
} pg_op_t;

/* A write group in flight on one connection (pipeline mode). */
typedef struct pg_group {
    mx_sql_batch_t *list;      /* batches, linked by ->next, in submission order */
    int n;
    pg_op_t *ops;              /* owned: every result we expect, in order */
    int nops, cur;
    bool got;                  /* the current command has produced its result */
    bool committed;            /* COMMIT succeeded */
    bool read;                 /* one read batch (no savepoints), not a write group */
    char commit_err[400];      /* why the group did not commit */
    pg_prep_t *prep;           /* owned: statements to prepare after COMMIT */
    const mx__sql_stmt_t **prep_stmt; /* owned array: what each one prepares */
    int nprep;
} pg_group_t;

typedef struct pg_db pg_db_t;

typedef struct pg_conn {
    pg_db_t *p;
    PGconn *conn;
    pgc_state_t state;
    uv_poll_t *poll;           /* owned; freed in its close callback */
    int poll_fd;
    int events;                /* what we wait for (UV_READABLE/UV_WRITABLE) */
    uv_timer_t *timer;         /* reconnect backoff; owned likewise */
    uint64_t backoff_ms;
    mx_sql_batch_t *b;         /* the batch in flight */
    int step;                  /* 0 BEGIN, 1..n statements, n+1 COMMIT */
    int last_step;
    int cmd_err;               /* error of the current command */
    bool rolling_back;
    bool want_write;           /* PQflush has more to send */
    bool preparing;            /* the current command is a PQsendPrepare */
    pg_prep_t *preps;          /* prepared on this session */
    int nprep;
    pg_prep_t pending;         /* being prepared */
    unsigned next_id;
    pg_group_t *g;             /* owned: the write group in flight, if any */
    bool writer;               /* runs the write (group or script) in flight */
    struct pg_conn *next;
} pg_conn_t;

struct pg_db {
    mx_db_t *db;
    char *conninfo;
    int cp_min, cp_max;
    pg_conn_t *conns;
    mx_sql_batch_t *q_head, *q_tail;  /* reads */
    mx_sql_batch_t *w_head, *w_tail;  /* writes not yet sent */
    int nq, nw;
    mx_sql_batch_t *o_head, *o_tail;  /* unfinished writes, in submission order */
    bool started, closing;
    bool writing;                     /* a write group or script is in flight */
    uv_mutex_t sync_mu;
    PGconn *sync;
};

static void pgc_on_poll(uv_poll_t *h, int status, int events);
static void pg_dispatch(pg_db_t *p);
static void pgg_collect(pg_conn_t *c);

/* ------------------------------------------------------------ helpers --- */

/* libpq's messages span lines ("FATAL: ...\nserver closed..."); log lines
 * and errmsg are one line each. */
static void pg_oneline(char *dst, size_t n, const char *prefix, const char *src)
{
    size_t w = (size_t)snprintf(dst, n, "%s", prefix ? prefix : "");
    if (w >= n)
        return;
    bool space = w > 0 && dst[w - 1] == ' ';
    for (const char *p = src ? src : "?"; *p && w + 1 < n; p++) {
        char c = *p;
        if (c == '\n' || c == '\t' || c == '\r' || c == ' ') {
            if (space)
                continue;
            c = ' ';
        }
        space = c == ' ';
        dst[w++] = c;
    }
    while (w > 0 && dst[w - 1] == ' ')
        w--;
    dst[w] = '\0';
}

static int pg_code(const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return state && strncmp(state, "23", 2) == 0 ? MX_ECONSTRAINT : MX_EDB;
}

/* Parameter arrays for PQexecParams / PQsendQueryParams. */
typedef struct pg_params {
    const char **values;
    int *lengths, *formats;
    Oid *types;
    char (*num)[32];
} pg_params_t;

static void pg_params_free(pg_params_t *pp)
{
    free(pp->values);
    free(pp->lengths);
    free(pp->formats);
    free(pp->types);
    free(pp->num);
}

static int pg_params_build(const mx__sql_stmt_t *s, pg_params_t *pp)
{
    memset(pp, 0, sizeof(*pp));
    if (s->nparams == 0)
        return 0;
    size_t n = (size_t)s->nparams;
    pp->values = calloc(n, sizeof(*pp->values));
    pp->lengths = calloc(n, sizeof(*pp->lengths));
    pp->formats = calloc(n, sizeof(*pp->formats));
    pp->types = calloc(n, sizeof(*pp->types));
    pp->num = calloc(n, sizeof(*pp->num));
    if (!pp->values || !pp->lengths || !pp->formats || !pp->types || !pp->num) {
        pg_params_free(pp);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const mx__sql_param_t *v = &s->params[i];
        switch (v->type) {
        case 'i':
            snprintf(pp->num[i], sizeof(pp->num[i]), "%lld", (long long)v->i);
            pp->values[i] = pp->num[i];
            pp->types[i] = PG_OID_INT8;
            break;
        case 'd':
            snprintf(pp->num[i], sizeof(pp->num[i]), "%.17g", v->d);
            pp->values[i] = pp->num[i];
            pp->types[i] = PG_OID_FLOAT8;
            break;
        case 's':
            pp->values[i] = v->s; /* NULL stays NULL */
            break;
        case 'b':
            pp->values[i] = v->s;
            pp->lengths[i] = (int)v->len;
            pp->formats[i] = 1;
            pp->types[i] = PG_OID_BYTEA;
            break;
        default:
            pp->values[i] = NULL;
        }
    }
    return 0;
}

/* Copies the rows of `r` into statement `idx` of the batch's result. */
static int pg_store_rows(mx_sql_batch_t *b, int idx, const PGresult *r)
{
    int ncols = PQnfields(r), nrows = PQntuples(r);
    mx__sql_rows_t *rw = &b->res->stmts[idx];
    /* A script may yield several results: keep the last one only. */
    if (rw->ncells || rw->ncols) {
        free(rw->off);
        free(rw->len);
        free(rw->buf);
        memset(rw, 0, sizeof(*rw));
    }
    mx__res_cols(b->res, idx, ncols);
    const char *ct = PQcmdTuples((PGresult *)r);
    rw->changes = ct && *ct ? strtoll(ct, NULL, 10) : 0;
    for (int row = 0; row < nrows; row++) {
        for (int col = 0; col < ncols; col++) {
            int rc;
            if (PQgetisnull(r, row, col)) {
                rc = mx__res_cell(b->res, idx, NULL, 0);
            } else if (PQftype(r, col) == PG_OID_BYTEA && PQfformat(r, col) == 0) {
                size_t len = 0;
                unsigned char *raw =
                    PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &len);
                if (!raw)
                    return -ENOMEM;
                rc = mx__res_cell(b->res, idx, raw, len);
                PQfreemem(raw);
            } else {
                rc = mx__res_cell(b->res, idx, PQgetvalue(r, row, col),
                                  (size_t)PQgetlength(r, row, col));
            }
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* One line: the primary message, its SQLSTATE and the detail (which
 * names the key of a unique violation); `msg` when `r` says nothing. */
static void pg_describe(char *why, size_t n, const PGresult *r, const char *msg)
{
    const char *prim = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (prim) {
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *det = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
        snprintf(why, n, "%s (SQLSTATE %s)%s%s", prim, st ? st : "?",
                 det ? " " : "", det ? det : "");
    } else {
        pg_oneline(why, n, NULL, r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r)
                                           : msg && *msg ? msg : "failed");
    }
}

/* Records the error of `r` (or libpq's `msg`) for statement idx (-1: the
 * transaction commands). Returns the code. */
static int pg_record_error(mx_sql_batch_t *b, int idx, const char *what, const PGresult *r,
                           const char *msg)
{
    int code = pg_code(r);
    char why[300];
    pg_describe(why, sizeof(why), r, msg);
    char buf[400];
    if (what)
        snprintf(buf, sizeof(buf), "%s: %s", what, why);
    else
        snprintf(buf, sizeof(buf), "%s", why);
    if (!b->res->errmsg)
        mx__res_error(b->res, idx, idx >= 0 ? b->stmts[idx].sql : NULL, buf);
    if (!b->status)
        b->status = code;
    return code;
}

static const char *pg_begin_sql(const mx_sql_batch_t *b)
{
    return b->mode == MX_SQL_WRITE ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
}

/* A batch of one plain statement is atomic and consistent by itself. */
static bool pg_needs_tx(const mx_sql_batch_t *b)
{
    return !(b->nstmts == 1 && !b->stmts[0].is_script);
}

/* Server notices ("table does not exist, skipping") go to the debug log,
 * not to stderr. */
static void pg_on_notice(void *arg, const char *msg)
{
    (void)arg;
    size_t l = strlen(msg);
    while (l && msg[l - 1] == '\n')
        l--;
    mx_log("store", MX_LOG_DEBUG, "PostgreSQL: %.*s", (int)l, msg);
}

/* ----------------------------------------------------------- delivery --- */

static void pg_batch_done(pg_db_t *p, mx_sql_batch_t *b)
{
    b->finished = true;
    if (b->mode != MX_SQL_WRITE) {
        mx__store_complete(b);
        return;
    }
    while (p->o_head && p->o_head->finished) {
        mx_sql_batch_t *w = p->o_head;
        p->o_head = w->onext;
        if (!p->o_head)
            p->o_tail = NULL;
        mx__store_complete(w);
    }
}

/* The queue a batch waits in: reads or writes. */
static mx_sql_batch_t **pg_queue(pg_db_t *p, bool write, mx_sql_batch_t ***tail, int **n)
{
    *tail = write ? &p->w_tail : &p->q_tail;
    *n = write ? &p->nw : &p->nq;
    return write ? &p->w_head : &p->q_head;
}

static void pg_queue_add(pg_db_t *p, mx_sql_batch_t *b, bool front)
{
    mx_sql_batch_t **tail;
    int *n;
    mx_sql_batch_t **head = pg_queue(p, b->mode == MX_SQL_WRITE, &tail, &n);
    if (front) {
        b->next = *head;
        *head = b;
        if (!*tail)
            *tail = b;
    } else {
        b->next = NULL;
        if (*tail)
            (*tail)->next = b;
        else
            *head = b;
        *tail = b;
    }
    (*n)++;
}

static mx_sql_batch_t *pg_queue_pop(pg_db_t *p, bool write)
{
    mx_sql_batch_t **tail;
    int *n;
    mx_sql_batch_t **head = pg_queue(p, write, &tail, &n);
    mx_sql_batch_t *b = *head;
    if (!b)
        return NULL;
    *head = b->next;
    if (!*head)
        *tail = NULL;
    (*n)--;
    b->next = NULL;
    return b;
}

static void pg_fail_queue(pg_db_t *p, const char *why)
{
    for (int w = 1; w >= 0; w--) {
        mx_sql_batch_t *b;
        while ((b = pg_queue_pop(p, w))) {
            b->status = MX_EDB;
            mx__res_error(b->res, -1, NULL, why);
            pg_batch_done(p, b);
        }
    }
}

/* -------------------------------------------------------- connections --- */

static void pg_free_handle(uv_handle_t *h)
{
    free(h);
}

static void pgc_unwatch(pg_conn_t *c)
{
    if (c->poll) {
        uv_close((uv_handle_t *)c->poll, pg_free_handle);
        c->poll = NULL;
    }
}

/* Waits for `events` on the connection's socket.  `fresh` recreates the
 * watcher: during connection setup libpq may replace the socket, even
 * with one of the same number. */
static int pgc_watch(pg_conn_t *c, int events, bool fresh)
{
    int fd = PQsocket(c->conn);
    if (fd < 0)
        return -EBADF;
    if (c->poll && (fresh || fd != c->poll_fd))
        pgc_unwatch(c);
    if (!c->poll) {
        uv_poll_t *h = malloc(sizeof(*h));
        if (!h)
            return -ENOMEM;
        int rc = uv_poll_init(mx__ctx->loop, h, fd);
        if (rc < 0) {
            free(h);
            return rc;
        }
        h->data = c;
        uv_unref((uv_handle_t *)h); /* the store's async handle keeps the loop alive */
        c->poll = h;
        c->poll_fd = fd;
    }
    c->events = events;
    return uv_poll_start(c->poll, events, pgc_on_poll);
}

/* The cache key: one letter per parameter type, NUL, the SQL. */
static char *pg_prep_key(const mx__sql_stmt_t *s, uint32_t *hash)
{
    size_t l = strlen(s->pg_sql);
    char *k = malloc((size_t)s->nparams + 1 + l + 1);
    if (!k)
        return NULL;
    for (int i = 0; i < s->nparams; i++) {
        char t = s->params[i].type;
        k[i] = t == 'n' ? 's' : t; /* both are sent untyped */
    }
    k[s->nparams] = '\0';
    memcpy(k + s->nparams + 1, s->pg_sql, l + 1);
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < (size_t)s->nparams + 1 + l; i++)
        h = (h ^ (unsigned char)k[i]) * 16777619u;
    *hash = h;
    return k;
}

static const pg_prep_t *pg_prep_find(const pg_prep_t *preps, int n, const char *key,
                                     uint32_t hash, int nparams)
{
    size_t kl = (size_t)nparams + 1 + strlen(key + nparams + 1) + 1;
    for (int i = 0; i < n; i++)
        if (preps[i].hash == hash && memcmp(preps[i].key, key, kl) == 0)
            return &preps[i];
    return NULL;
}

static void pg_prep_clear(pg_conn_t *c)
{
    for (int i = 0; i < c->nprep; i++)
        free(c->preps[i].key);
    free(c->preps);
    c->preps = NULL;
    c->nprep = 0;
    free(c->pending.key);
    c->pending.key = NULL;
    c->preparing = false;
}

static void pgc_teardown(pg_conn_t *c)
{
    pg_prep_clear(c); /* a new session knows none of them */
    pgc_unwatch(c);
    if (c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    c->state = PGC_DOWN;
    c->want_write = false;
    c->rolling_back = false;
    c->cmd_err = 0;
}

static void pgc_on_timer(uv_timer_t *t);

static void pgc_schedule_reconnect(pg_conn_t *c)
{
    if (c->p->closing)
        return;
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : PG_BACKOFF_MIN_MS;
    if (c->backoff_ms > PG_BACKOFF_MAX_MS)
        c->backoff_ms = PG_BACKOFF_MAX_MS;
    uv_timer_start(c->timer, pgc_on_timer, c->backoff_ms, 0);
}

static bool pg_any_alive(const pg_db_t *p)
{
    for (const pg_conn_t *c = p->conns; c; c = c->next)
        if (c->state != PGC_DOWN)
            return true;
    return false;
}

static void pgc_connect_failed(pg_conn_t *c, const char *why)
{
    char msg[300];
    pg_oneline(msg, sizeof(msg), "cannot connect to PostgreSQL: ", why);
    pgc_teardown(c);
    pgc_schedule_reconnect(c);
    mx_log("store", MX_LOG_WARN, "%s (retrying in %llu ms)", msg,
           (unsigned long long)c->backoff_ms);
    /* Nobody can serve the queue now: fail it rather than hang. */
    if (!pg_any_alive(c->p))
        pg_fail_queue(c->p, msg);
}

static void pgc_connect(pg_conn_t *c)
{
    c->conn = PQconnectStart(c->p->conninfo);
    if (!c->conn) {
        pgc_connect_failed(c, "out of memory");
        return;
    }
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        pgc_connect_failed(c, PQerrorMessage(c->conn));
        return;
    }
    c->state = PGC_CONNECTING;
    PQsetNoticeProcessor(c->conn, pg_on_notice, NULL);
    /* libpq's protocol: start by waiting until the socket is writable. */
    if (pgc_watch(c, UV_WRITABLE, true) < 0)
        pgc_connect_failed(c, "cannot watch the socket");
}

static void pgc_on_timer(uv_timer_t *t)
{
    pg_conn_t *c = t->data;
    if (c->state == PGC_DOWN && !c->p->closing)
        pgc_connect(c);
}

static void pgc_connect_step(pg_conn_t *c)
{
    switch (PQconnectPoll(c->conn)) {
    case PGRES_POLLING_READING:
        if (pgc_watch(c, UV_READABLE, true) < 0)
            pgc_connect_failed(c, "cannot watch the socket");
        return;
    case PGRES_POLLING_WRITING:
        if (pgc_watch(c, UV_WRITABLE, true) < 0)
            pgc_connect_failed(c, "cannot watch the socket");
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        pgc_connect_failed(c, PQerrorMessage(c->conn));
        return;
    }
    if (PQsetnonblocking(c->conn, 1) != 0 || pgc_watch(c, UV_READABLE, true) < 0) {
        pgc_connect_failed(c, PQerrorMessage(c->conn));
        return;
    }
    c->state = PGC_IDLE;
    c->backoff_ms = 0;
    mx_log("store", MX_LOG_DEBUG, "PostgreSQL connection to %s/%s ready", PQhost(c->conn),
           PQdb(c->conn));
    pg_dispatch(c->p);
}

/* The write in flight on `c` (if any) is over: the next may go. */
static void pgc_writer_done(pg_conn_t *c)
{
    if (c->writer) {
        c->writer = false;
        c->p->writing = false;
    }
}

static void pg_group_free(pg_group_t *g)
{
    for (int i = 0; i < g->nprep; i++)
        free(g->prep[i].key);
    free(g->prep);
    free(g->prep_stmt);
    free(g->ops);
    free(g);
}

/* Delivers the batches of a finished (or broken) write group, in order,
 * and frees it.  Unless it committed, every batch that had not failed by
 * itself fails with `why` (or the COMMIT's error). */
static void pg_group_end(pg_db_t *p, pg_group_t *g, const char *why)
{
    if (!g->committed && !why)
        why = g->commit_err[0] ? g->commit_err : "COMMIT failed";
    mx_sql_batch_t *b = g->list;
    while (b) {
        mx_sql_batch_t *next = b->next;
        b->next = NULL;
        if (!g->committed && !b->status) {
            mx__res_reset(b->res);
            b->status = MX_EDB;
        }
        /* Skipped batches (status set, no message) take the group's. */
        if (b->status && !b->res->errmsg)
            mx__res_error(b->res, -1, NULL, why ? why : "skipped: its transaction was aborted");
        pg_batch_done(p, b);
        b = next;
    }
    pg_group_free(g);
}

/* The connection broke while idle or running a batch. */
static void pgc_broken(pg_conn_t *c, const char *why)
{
    char msg[300];
    pg_oneline(msg, sizeof(msg), "PostgreSQL connection lost: ", why);
    mx_log("store", MX_LOG_WARN, "%s%s", msg,
           c->b || c->g ? " (failing the batches in flight)" : "");
    mx_sql_batch_t *b = c->b;
    pg_group_t *g = c->g;
    c->b = NULL;
    c->g = NULL;
    pgc_writer_done(c);
    pgc_teardown(c);
    c->backoff_ms = 0;
    pgc_schedule_reconnect(c);
    if (g && g->read && g->list->attempts < 1) {
        /* A read sent as one pipeline: safe to send again, once. */
        mx_sql_batch_t *rb = g->list;
        g->list = NULL;
        pg_group_free(g);
        rb->attempts++;
        rb->status = 0;
        mx__res_reset(rb->res);
        pg_queue_add(c->p, rb, true);
    } else if (g) {
        pg_group_end(c->p, g, msg); /* committed ones stay committed */
    }
    if (b && b->attempts < 1 && (b->mode == MX_SQL_READ || c->step == 0)) {
        /* Safe to resend: a read, or a write whose BEGIN had not even
         * been answered (statements go one at a time, so nothing else
         * was sent).  Back to the head of the queue. */
        b->attempts++;
        b->status = 0;
        mx__res_reset(b->res);
        pg_queue_add(c->p, b, true);
    } else if (b) {
        /* Never retried: a write may have committed before the drop. */
        b->status = MX_EDB;
        free(b->res->errmsg);
        b->res->errmsg = NULL;
        mx__res_error(b->res, -1, NULL, msg);
        pg_batch_done(c->p, b);
    }
    pg_dispatch(c->p);
}

/* ------------------------------------------------------------ batches --- */

static void pgc_flush(pg_conn_t *c)
{
    int r = PQflush(c->conn);
    if (r < 0) {
        pgc_broken(c, PQerrorMessage(c->conn));
        return;
    }
    c->want_write = r == 1;
    int ev = UV_READABLE | (c->want_write ? UV_WRITABLE : 0);
    if (ev != c->events && pgc_watch(c, ev, false) < 0)
        pgc_broken(c, "cannot watch the socket");
}

static void pgc_finish(pg_conn_t *c)
{
    mx_sql_batch_t *b = c->b;
    c->b = NULL;
    pgc_writer_done(c);
    c->state = PGC_IDLE;
    c->rolling_back = false;
    c->cmd_err = 0;
    pg_batch_done(c->p, b);
}

/* Sends the command of the current step. */
static void pgc_send_step(pg_conn_t *c)
{
    mx_sql_batch_t *b = c->b;
    int ok;
    c->cmd_err = 0;
    if (c->step > c->last_step) {
        pgc_finish(c);
        pg_dispatch(c->p);
        return;
    }
    if (c->step == 0) {
        ok = PQsendQuery(c->conn, pg_begin_sql(b));
    } else if (c->step == b->nstmts + 1) {
        ok = PQsendQuery(c->conn, "COMMIT");
    } else {
        const mx__sql_stmt_t *s = &b->stmts[c->step - 1];
        if (s->is_script) {
            ok = PQsendQuery(c->conn, s->sql);
        } else {
            pg_params_t pp;
            if (pg_params_build(s, &pp) < 0) {
                pg_record_error(b, c->step - 1, NULL, NULL, "out of memory");
                b->status = -ENOMEM;
                pgc_finish(c); /* nothing sent: a step never starts a transaction alone */
                pg_dispatch(c->p);
                return;
            }
            uint32_t h = 0;
            char *key = pg_prep_key(s, &h);
            const pg_prep_t *pr = key ? pg_prep_find(c->preps, c->nprep, key, h, s->nparams) : NULL;
            char name[24];
            if (pr) {
                snprintf(name, sizeof(name), "mx%u", pr->id);
                ok = PQsendQueryPrepared(c->conn, name, s->nparams, pp.values, pp.lengths,
                                         pp.formats, 0);
                free(key);
            } else if (key && c->nprep < PG_MAX_PREPARED) {
                /* Prepare first; pgc_command_done sends this step again. */
                c->pending.key = key;
                c->pending.hash = h;
                c->pending.id = c->next_id++;
                c->preparing = true;
                snprintf(name, sizeof(name), "mx%u", c->pending.id);
                ok = PQsendPrepare(c->conn, name, s->pg_sql, s->nparams, pp.types);
            } else {
                free(key);
                ok = PQsendQueryParams(c->conn, s->pg_sql, s->nparams, pp.types, pp.values,
                                       pp.lengths, pp.formats, 0);
            }
            pg_params_free(&pp);
        }
    }
    if (!ok) {
        pgc_broken(c, PQerrorMessage(c->conn));
        return;
    }
    pgc_flush(c);
}

static void pgc_start(pg_conn_t *c, mx_sql_batch_t *b)
{
    c->b = b;
    c->state = PGC_BUSY;
    c->rolling_back = false;
    if (pg_needs_tx(b)) {
        c->step = 0;
        c->last_step = b->nstmts + 1;
    } else {
        c->step = 1;
        c->last_step = 1;
    }
    pgc_send_step(c);
}

static void pgc_result(pg_conn_t *c, PGresult *r)
{
    mx_sql_batch_t *b = c->b;
    int idx = (c->step >= 1 && c->step <= b->nstmts) ? c->step - 1 : -1;
    switch (PQresultStatus(r)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
        if (idx >= 0 && !c->rolling_back && !c->cmd_err && !c->preparing &&
            pg_store_rows(b, idx, r) < 0)
            c->cmd_err = pg_record_error(b, idx, NULL, NULL, "out of memory");
        break;
    case PGRES_FATAL_ERROR:
    case PGRES_NONFATAL_ERROR:
        if (!c->rolling_back && !c->cmd_err)
            c->cmd_err = pg_record_error(b, idx, idx < 0 ? (c->step == 0 ? "BEGIN" : "COMMIT")
                                                         : NULL, r, NULL);
        break;
    default:
        if (!c->rolling_back && !c->cmd_err)
            c->cmd_err = pg_record_error(b, idx, NULL, NULL, "unsupported result (COPY?)");
    }
}

/* The current command has returned all its results. */
static void pgc_command_done(pg_conn_t *c)
{
    if (c->rolling_back) {
        pgc_finish(c);
        pg_dispatch(c->p);
        return;
    }
    if (c->preparing) {
        c->preparing = false;
        if (!c->cmd_err) {
            pg_prep_t *np = realloc(c->preps, (size_t)(c->nprep + 1) * sizeof(*np));
            if (np) {
                c->preps = np;
                c->preps[c->nprep++] = c->pending;
            } else {
                free(c->pending.key); /* runs unnamed next time */
            }
            c->pending.key = NULL;
            pgc_send_step(c); /* now the execution of the same step */
            return;
        }
        free(c->pending.key);
        c->pending.key = NULL;
    }
    if (c->cmd_err) {
        PGTransactionStatusType ts = PQtransactionStatus(c->conn);
        if (ts == PQTRANS_INERROR || ts == PQTRANS_INTRANS) {
            c->rolling_back = true;
            if (!PQsendQuery(c->conn, "ROLLBACK")) {
                pgc_broken(c, PQerrorMessage(c->conn));
                return;
            }
            pgc_flush(c);
            return;
        }
        pgc_finish(c);
        pg_dispatch(c->p);
        return;
    }
    c->step++;
    pgc_send_step(c);
}

/* ------------------------------------------------------ write groups --- */

#define PG_SP "mx_batch"

/* A write batch that can join a group: statements with the extended
 * protocol only (a migration script needs the simple one). */
static bool pg_has_script(const mx_sql_batch_t *b)
{
    for (int i = 0; i < b->nstmts; i++)
        if (b->stmts[i].is_script)
            return true;
    return false;
}

/* Whether a read batch can go out as one pipeline (no script: those use
 * the simple protocol). */
static bool pg_pipelinable(const mx_sql_batch_t *b)
{
    return b->mode != MX_SQL_WRITE && b->nstmts > 0 && !pg_has_script(b);
}

/* Whether a write batch can join a group commit. */
static bool pg_groupable(const mx_sql_batch_t *b)
{
    return b->mode == MX_SQL_WRITE && !pg_has_script(b);
}

static void pgg_op(pg_group_t *g, pg_op_kind_t kind, mx_sql_batch_t *b, int idx,
                   const char *what)
{
    g->ops[g->nops++] = (pg_op_t){ .kind = kind, .b = b, .idx = idx, .what = what };
}

/* Queues a command without parameters.  Returns libpq's 1 or 0. */
static int pgg_ctl(pg_conn_t *c, pg_op_kind_t kind, mx_sql_batch_t *b, const char *sql)
{
    pgg_op(c->g, kind, b, -1, sql);
    return PQsendQueryParams(c->conn, sql, 0, NULL, NULL, NULL, NULL, 0);
}

static int pgg_sync(pg_conn_t *c)
{
    pgg_op(c->g, PGO_SYNC, NULL, -1, NULL);
    return PQpipelineSync(c->conn);
}

/* Queues statement `idx` of `b`: prepared if this session knows it, else
 * unnamed (and remembered, to prepare after the COMMIT).  Returns 1, 0 on
 * a libpq failure, -ENOMEM. */
static int pgg_stmt(pg_conn_t *c, mx_sql_batch_t *b, int idx)
{
    pg_group_t *g = c->g;
    const mx__sql_stmt_t *s = &b->stmts[idx];
    pg_params_t pp;
    if (pg_params_build(s, &pp) < 0)
        return -ENOMEM;
    uint32_t h = 0;
    char *key = pg_prep_key(s, &h);
    const pg_prep_t *pr = key ? pg_prep_find(c->preps, c->nprep, key, h, s->nparams) : NULL;
    int ok;
    if (pr) {
        char name[24];
        snprintf(name, sizeof(name), "mx%u", pr->id);
        ok = PQsendQueryPrepared(c->conn, name, s->nparams, pp.values, pp.lengths, pp.formats, 0);
        free(key);
    } else {
        ok = PQsendQueryParams(c->conn, s->pg_sql, s->nparams, pp.types, pp.values, pp.lengths,
                               pp.formats, 0);
        if (key && c->nprep + g->nprep < PG_MAX_PREPARED &&
            !pg_prep_find(g->prep, g->nprep, key, h, s->nparams)) {
            g->prep[g->nprep] = (pg_prep_t){ .hash = h, .key = key, .id = c->next_id++ };
            g->prep_stmt[g->nprep++] = s;
        } else {
            free(key);
        }
    }
    pg_params_free(&pp);
    pgg_op(g, PGO_STMT, b, idx, NULL);
    return ok;
}

/* Sends the whole group (see the top of the file) in one go. */
static void pgc_start_group(pg_conn_t *c, mx_sql_batch_t *list, int n)
{
    size_t nops = 9, nst = 0;
    for (mx_sql_batch_t *b = list; b; b = b->next) {
        nops += 4 + (size_t)b->nstmts;
        nst += (size_t)b->nstmts;
    }
    nops += 2 * nst;
    pg_group_t *g = calloc(1, sizeof(*g));
    if (g) {
        g->ops = malloc(nops * sizeof(*g->ops));
        g->prep = malloc((nst + 1) * sizeof(*g->prep));
        g->prep_stmt = malloc((nst + 1) * sizeof(*g->prep_stmt));
    }
    c->state = PGC_BUSY;
    c->g = g;
    if (!g || !g->ops || !g->prep || !g->prep_stmt) {
        if (g) {
            free(g->ops);
            free(g->prep);
            free(g->prep_stmt);
            free(g);
        }
        c->g = NULL;
        pgc_writer_done(c);
        c->state = PGC_IDLE;
        while (list) {
            mx_sql_batch_t *b = list;
            list = b->next;
            b->next = NULL;
            b->status = -ENOMEM;
            mx__res_error(b->res, -1, NULL, "out of memory");
            pg_batch_done(c->p, b);
        }
        pg_dispatch(c->p);
        return;
    }
    g->list = list;
    g->n = n;
    g->read = list->mode != MX_SQL_WRITE;
    if (!PQenterPipelineMode(c->conn)) {
        pgc_broken(c, PQerrorMessage(c->conn));
        return;
    }
    int ok;
    if (g->read) {
        /* One read batch: BEGIN (snapshot); statements; COMMIT; Sync. A
         * failing statement makes the server skip the rest and the
         * COMMIT, which pgg_result follows with a ROLLBACK. */
        ok = pgg_ctl(c, PGO_CTL, NULL, pg_begin_sql(list));
        for (int i = 0; ok > 0 && i < list->nstmts; i++)
            ok = pgg_stmt(c, list, i);
        if (ok > 0)
            ok = pgg_ctl(c, PGO_COMMIT, NULL, "COMMIT") && pgg_sync(c);
        goto prepare;
    }
    ok = pgg_ctl(c, PGO_CTL, NULL, "BEGIN") && pgg_ctl(c, PGO_CTL, NULL, "SAVEPOINT " PG_SP);
    for (mx_sql_batch_t *b = list; ok > 0 && b; b = b->next) {
        if (b != list)
            ok = pgg_ctl(c, PGO_CTL, NULL, "ROLLBACK TO SAVEPOINT " PG_SP);
        for (int i = 0; ok > 0 && i < b->nstmts; i++)
            ok = pgg_stmt(c, b, i);
        if (ok > 0)
            ok = pgg_ctl(c, PGO_CTL, b, "RELEASE SAVEPOINT " PG_SP) &&
                 pgg_ctl(c, PGO_CTL, NULL, "SAVEPOINT " PG_SP) && pgg_sync(c);
    }
    if (ok > 0)
        ok = pgg_ctl(c, PGO_CTL, NULL, "ROLLBACK TO SAVEPOINT " PG_SP) &&
             pgg_ctl(c, PGO_COMMIT, NULL, "COMMIT") && pgg_sync(c);
prepare:
    for (int i = 0; ok > 0 && i < g->nprep; i++) {
        const mx__sql_stmt_t *s = g->prep_stmt[i];
        pg_params_t pp;
        char name[24];
        if (pg_params_build(s, &pp) < 0) {
            ok = -ENOMEM;
            break;
        }
        snprintf(name, sizeof(name), "mx%u", g->prep[i].id);
        ok = PQsendPrepare(c->conn, name, s->pg_sql, s->nparams, pp.types);
        pg_params_free(&pp);
        pgg_op(g, PGO_PREPARE, NULL, i, NULL);
        if (ok)
            ok = pgg_sync(c);
    }
    if (ok <= 0) {
        /* Nothing is committed before the COMMIT goes out: dropping the
         * connection rolls everything back. */
        pgc_broken(c, ok < 0 ? "out of memory" : PQerrorMessage(c->conn));
        return;
    }
    pgc_flush(c);
}

/* Sends ROLLBACK after a COMMIT the server skipped (the transaction is
 * still open, aborted).  ops has room for it (see pgc_start_group). */
static int pgg_rollback(pg_conn_t *c)
{
    return pgg_ctl(c, PGO_CTL, NULL, "ROLLBACK") && pgg_sync(c);
}

static void pgg_result(pg_conn_t *c, pg_group_t *g, const pg_op_t *op, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    bool good = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    bool skipped = st == PGRES_PIPELINE_ABORTED;
    mx_sql_batch_t *b = op->b;
    switch (op->kind) {
    case PGO_STMT:
        if (good && !b->status && pg_store_rows(b, op->idx, r) < 0)
            pg_record_error(b, op->idx, NULL, NULL, "out of memory");
        else if (skipped && !b->status)
            b->status = MX_EDB; /* why: pg_group_end */
        else if (!good)
            pg_record_error(b, op->idx, NULL, r, NULL);
        break;
    case PGO_CTL:
        if (good || (skipped && !b))
            break;
        if (b && skipped) {
            if (!b->status)
                b->status = MX_EDB;
        } else if (b) {
            pg_record_error(b, -1, op->what, r, NULL);
        } else if (!g->commit_err[0]) {
            char why[300];
            pg_describe(why, sizeof(why), r, NULL);
            snprintf(g->commit_err, sizeof(g->commit_err), "%s: %s", op->what, why);
        }
        break;
    case PGO_COMMIT:
        if (good && strcmp(PQcmdStatus(r), "COMMIT") == 0) {
            g->committed = true;
            break;
        }
        if (!g->commit_err[0]) {
            char why[300];
            pg_describe(why, sizeof(why), r,
                        good ? "the transaction was rolled back" : "skipped after an error");
            snprintf(g->commit_err, sizeof(g->commit_err), "COMMIT: %s", why);
        }
        if (skipped && !pgg_rollback(c))
            pgc_broken(c, PQerrorMessage(c->conn));
        break;
    case PGO_PREPARE:
        if (good && c->nprep < PG_MAX_PREPARED) {
            pg_prep_t *np = realloc(c->preps, (size_t)(c->nprep + 1) * sizeof(*np));
            if (np) {
                c->preps = np;
                c->preps[c->nprep++] = g->prep[op->idx];
                g->prep[op->idx].key = NULL;
            }
        }
        break;
    case PGO_SYNC:
        break;
    }
}

/* Reads what the server has answered so far; ends the group after its
 * last answer. */
static void pgg_collect(pg_conn_t *c)
{
    pg_group_t *g = c->g;
    int nulls = 0;
    while (c->g == g && g->cur < g->nops && !PQisBusy(c->conn)) {
        PGresult *r = PQgetResult(c->conn);
        const pg_op_t *op = &g->ops[g->cur];
        if (!r) {
            if (g->got) {
                g->got = false;
                g->cur++;
                nulls = 0;
            } else if (++nulls > 1) {
                break; /* nothing more for now */
            }
            continue;
        }
        nulls = 0;
        if (op->kind == PGO_SYNC) {
            bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
            PQclear(r);
            if (!sync) {
                pgc_broken(c, "unexpected answer in a pipeline");
                return;
            }
            g->cur++;
            continue;
        }
        pgg_result(c, g, op, r);
        PQclear(r);
        if (c->g != g)
            return; /* the connection broke */
        g->got = true;
    }
    if (c->g != g || g->cur < g->nops)
        return;
    c->g = NULL;
    if (!PQexitPipelineMode(c->conn)) {
        c->g = g;
        pgc_broken(c, PQerrorMessage(c->conn));
        return;
    }
    c->state = PGC_IDLE;
    pgc_writer_done(c);
    pg_group_end(c->p, g, NULL);
    pg_dispatch(c->p);
}

static void pgc_collect(pg_conn_t *c)
{
    while (c->state == PGC_BUSY && c->conn && !PQisBusy(c->conn)) {
        PGresult *r = PQgetResult(c->conn);
        if (!r) {
            pgc_command_done(c);
            continue;
        }
        pgc_result(c, r);
        PQclear(r);
    }
}

static void pgc_io(pg_conn_t *c, int events)
{
    if ((events & UV_WRITABLE) && c->want_write) {
        pgc_flush(c);
        if (c->state == PGC_DOWN)
            return;
    }
    if (!(events & UV_READABLE))
        return;
    if (!PQconsumeInput(c->conn)) {
        pgc_broken(c, PQerrorMessage(c->conn));
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(c->conn)))
        PQfreemem(n);
    if (c->state == PGC_BUSY && c->g)
        pgg_collect(c);
    else if (c->state == PGC_BUSY)
        pgc_collect(c);
    else if (c->state == PGC_IDLE && PQstatus(c->conn) == CONNECTION_BAD)
        pgc_broken(c, PQerrorMessage(c->conn));
}

static void pgc_on_poll(uv_poll_t *h, int status, int events)
{
    pg_conn_t *c = h->data;
    if (status < 0)
        events = UV_READABLE | UV_WRITABLE; /* let libpq find out what is wrong */
    if (c->state == PGC_CONNECTING)
        pgc_connect_step(c);
    else if (c->state == PGC_IDLE || c->state == PGC_BUSY)
        pgc_io(c, events);
}

static pg_conn_t *pg_conn_new(pg_db_t *p)
{
    pg_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->p = p;
    c->timer = malloc(sizeof(*c->timer));
    if (!c->timer || uv_timer_init(mx__ctx->loop, c->timer) < 0) {
        free(c->timer);
        free(c);
        return NULL;
    }
    c->timer->data = c;
    uv_unref((uv_handle_t *)c->timer);
    c->next = p->conns;
    p->conns = c;
    pgc_connect(c);
    return c;
}

/* Whether a queued batch could start now. */
static bool pg_ready(const pg_db_t *p)
{
    return p->q_head || (p->w_head && !p->writing);
}

static void pg_dispatch(pg_db_t *p)
{
    while (pg_ready(p)) {
        pg_conn_t *idle = NULL;
        int n = 0, connecting = 0;
        for (pg_conn_t *c = p->conns; c; c = c->next) {
            n++;
            /* An idle connection the server has dropped may not have been
             * noticed yet: look (without blocking) before using it. */
            if (c->state == PGC_IDLE && !idle &&
                (!PQconsumeInput(c->conn) || PQstatus(c->conn) != CONNECTION_OK)) {
                pgc_broken(c, PQerrorMessage(c->conn));
                return; /* pgc_broken dispatched again */
            }
            if (c->state == PGC_IDLE && !idle)
                idle = c;
            if (c->state == PGC_CONNECTING)
                connecting++;
        }
        if (!idle) {
            /* Grow the pool while more batches wait than connections are
             * being opened. */
            int want = p->nq + (p->w_head && !p->writing ? 1 : 0);
            if (n < p->cp_max && connecting < want && !p->closing)
                pg_conn_new(p);
            return;
        }
        if (!p->w_head || p->writing) {
            /* A read goes out as one pipeline (one round trip); a read
             * holding a script, one command at a time. */
            mx_sql_batch_t *rb = pg_queue_pop(p, false);
            if (pg_pipelinable(rb))
                pgc_start_group(idle, rb, 1);
            else
                pgc_start(idle, rb);
            continue;
        }
        /* One write in flight at a time: a script alone, otherwise every
         * groupable write queued so far. */
        p->writing = true;
        idle->writer = true;
        if (!pg_groupable(p->w_head)) {
            pgc_start(idle, pg_queue_pop(p, true));
            continue;
        }
        mx_sql_batch_t *list = NULL, *last = NULL;
        int count = 0;
        while (p->w_head && pg_groupable(p->w_head) && count < PG_GROUP_MAX) {
            mx_sql_batch_t *b = pg_queue_pop(p, true);
            if (last)
                last->next = b;
            else
                list = b;
            last = b;
            count++;
        }
        pgc_start_group(idle, list, count);
    }
}

/* ------------------------------------------------------------- engine --- */

static int pg_open(mx_db_t *db, const mx_db_conf_t *conf, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conf->pg_conninfo, &perr);
    if (!opts) {
        snprintf(err, errlen, "database.args: bad PostgreSQL connection string: %s",
                 perr ? perr : "out of memory");
        PQfreemem(perr);
        return -EINVAL;
    }
    PQconninfoFree(opts);
    pg_db_t *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->db = db;
    p->conninfo = strdup(conf->pg_conninfo);
    p->cp_max = conf->cp_max > 0 ? conf->cp_max : 10;
    p->cp_min = conf->cp_min > 0 ? conf->cp_min : 2;
    if (p->cp_min > p->cp_max)
        p->cp_min = p->cp_max;
    if (!p->conninfo || uv_mutex_init(&p->sync_mu) < 0) {
        free(p->conninfo);
        free(p);
        return -ENOMEM;
    }
    p->sync = PQconnectdb(p->conninfo);
    if (!p->sync || PQstatus(p->sync) != CONNECTION_OK) {
        pg_oneline(err, errlen, "cannot connect to PostgreSQL: ",
                   p->sync ? PQerrorMessage(p->sync) : "out of memory");
        PQfinish(p->sync);
        uv_mutex_destroy(&p->sync_mu);
        free(p->conninfo);
        free(p);
        return MX_EDB;
    }
    PQsetNoticeProcessor(p->sync, pg_on_notice, NULL);
    mx_log("store", MX_LOG_INFO, "PostgreSQL %d on %s/%s (pool %d..%d, TLS %s)",
           PQserverVersion(p->sync), PQhost(p->sync), PQdb(p->sync), p->cp_min, p->cp_max,
           PQsslInUse(p->sync) ? "on" : "off");
    db->impl = p;
    return 0;
}

static int pg_submit(mx_db_t *db, mx_sql_batch_t *b)
{
    pg_db_t *p = db->impl;
    if (p->closing)
        return MX_EDB;
    if (!p->started) {
        p->started = true;
        for (int i = 0; i < p->cp_min; i++)
            if (!pg_conn_new(p))
                return -ENOMEM;
    }
    b->finished = false;
    b->onext = NULL;
    if (b->mode == MX_SQL_WRITE) {
        if (p->o_tail)
            p->o_tail->onext = b;
        else
            p->o_head = b;
        p->o_tail = b;
    }
    if (b->nstmts == 0) {
        pg_batch_done(p, b);
        return 0;
    }
    pg_queue_add(p, b, false);
    pg_dispatch(p);
    return 0;
}

/* --------------------------------------------------------------- sync --- */

/* Runs one command on the blocking connection; records errors. */
static int pg_sync_exec(pg_db_t *p, mx_sql_batch_t *b, int idx, const char *cmd)
{
    PGresult *r;
    if (cmd) {
        r = PQexec(p->sync, cmd);
    } else {
        const mx__sql_stmt_t *s = &b->stmts[idx];
        if (s->is_script) {
            r = PQexec(p->sync, s->sql);
        } else {
            pg_params_t pp;
            if (pg_params_build(s, &pp) < 0)
                return pg_record_error(b, idx, NULL, NULL, "out of memory");
            r = PQexecParams(p->sync, s->pg_sql, s->nparams, pp.types, pp.values, pp.lengths,
                             pp.formats, 0);
            pg_params_free(&pp);
        }
    }
    int rc = 0;
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (!cmd && pg_store_rows(b, idx, r) < 0)
            rc = pg_record_error(b, idx, NULL, NULL, "out of memory");
    } else {
        rc = pg_record_error(b, cmd ? -1 : idx, cmd, r, PQerrorMessage(p->sync));
    }
    PQclear(r);
    return rc;
}

static void pg_run_sync(mx_db_t *db, mx_sql_batch_t *b)
{
    pg_db_t *p = db->impl;
    uv_mutex_lock(&p->sync_mu);
    if (PQstatus(p->sync) != CONNECTION_OK) {
        PQreset(p->sync);
        if (PQstatus(p->sync) != CONNECTION_OK) {
            pg_record_error(b, -1, "cannot connect to PostgreSQL", NULL,
                            PQerrorMessage(p->sync));
            b->status = MX_EDB;
            uv_mutex_unlock(&p->sync_mu);
            return;
        }
    }
    bool tx = pg_needs_tx(b) && b->nstmts > 0;
    int rc = tx ? pg_sync_exec(p, b, -1, pg_begin_sql(b)) : 0;
    for (int i = 0; rc == 0 && i < b->nstmts; i++)
        rc = pg_sync_exec(p, b, i, NULL);
    if (tx && rc == 0)
        rc = pg_sync_exec(p, b, -1, "COMMIT");
    if (PQtransactionStatus(p->sync) == PQTRANS_INERROR ||
        PQtransactionStatus(p->sync) == PQTRANS_INTRANS)
        PQclear(PQexec(p->sync, "ROLLBACK"));
    if (rc && !b->status)
        b->status = rc;
    uv_mutex_unlock(&p->sync_mu);
}

/* -------------------------------------------------------------- close --- */

/* Drives the pool without the loop until queue and connections are idle:
 * close must not lose queued writes, and may be called from inside a
 * loop callback, where uv_run cannot be. */
static void pg_flush_all(pg_db_t *p)
{
    uint64_t deadline = uv_hrtime() / 1000000 + PG_CLOSE_DEADLINE_MS;
    bool kicked = false;
    for (;;) {
        /* Reconnect timers do not run here: try once more by hand. */
        bool queued = p->q_head || p->w_head;
        if (queued && !pg_any_alive(p) && p->conns && !kicked) {
            kicked = true;
            pgc_connect(p->conns);
        }
        pg_dispatch(p);
        int nfds = 0;
        for (pg_conn_t *c = p->conns; c; c = c->next)
            if (c->state == PGC_BUSY || (c->state == PGC_CONNECTING && queued))
                nfds++;
        if (nfds == 0) {
            if (queued)
                pg_fail_queue(p, "the database is closing and no connection is up");
            return;
        }
        if (uv_hrtime() / 1000000 > deadline) {
            for (pg_conn_t *c = p->conns; c; c = c->next)
                if (c->state == PGC_BUSY || c->state == PGC_CONNECTING)
                    pgc_broken(c, "gave up waiting at shutdown");
            pg_fail_queue(p, "the database is closing");
            return;
        }
        struct pollfd fds[nfds];
        pg_conn_t *who[nfds];
        int i = 0;
        for (pg_conn_t *c = p->conns; c; c = c->next) {
            if (!(c->state == PGC_BUSY || (c->state == PGC_CONNECTING && queued)))
                continue;
            fds[i].fd = PQsocket(c->conn);
            fds[i].events = (short)(((c->events & UV_READABLE) ? POLLIN : 0) |
                                    ((c->events & UV_WRITABLE) ? POLLOUT : 0));
            fds[i].revents = 0;
            who[i++] = c;
        }
        if (poll(fds, (nfds_t)nfds, 100) < 0 && errno != EINTR)
            return;
        for (i = 0; i < nfds; i++) {
            if (!fds[i].revents)
                continue;
            int ev = ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) ? UV_READABLE : 0) |
                     ((fds[i].revents & (POLLOUT | POLLERR)) ? UV_WRITABLE : 0);
            pg_conn_t *c = who[i];
            if (c->state == PGC_CONNECTING)
                pgc_connect_step(c);
            else if (c->state == PGC_BUSY)
                pgc_io(c, ev);
        }
    }
}

static void pg_close(mx_db_t *db)
{
    pg_db_t *p = db->impl;
    if (!p)
        return;
    pg_flush_all(p);
    p->closing = true;
    while (p->conns) {
        pg_conn_t *c = p->conns;
        p->conns = c->next;
        pgc_teardown(c);
        uv_close((uv_handle_t *)c->timer, pg_free_handle);
        free(c);
    }
    PQfinish(p->sync);
    uv_mutex_destroy(&p->sync_mu);
    free(p->conninfo);
    free(p);
    db->impl = NULL;
}

static void pg_stats(mx_db_t *db, int *queued, int *in_flight, int *size, int *idle)
{
    pg_db_t *p = db->impl;
    *queued += p->nq + p->nw;
    for (pg_conn_t *c = p->conns; c; c = c->next) {
        if (c->state != PGC_DOWN)
            (*size)++;
        if (c->state == PGC_BUSY)
            (*in_flight)++;
        if (c->state == PGC_IDLE)
            (*idle)++;
    }
}

const mx__store_engine_t mx__store_pg = {
    .name = "psycopg2",
    .open = pg_open,
    .submit = pg_submit,
    .run_sync = pg_run_sync,
    .close = pg_close,
    .stats = pg_stats,
};

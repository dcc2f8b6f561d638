/*
 * store.h: what the storage files share (store.c, store_sqlite.c,
 * store_pg.c) and tests may reach.  Modules never see this header.
 *
 * store.c owns the engine-independent parts: batches and their copied
 * parameters, results, the placeholder scanner, migrations, the one
 * uv_async_t through which every completion reaches the loop thread, and
 * the list of open databases.  Each engine implements mx__store_engine_t.
 *
 * Ownership: a batch belongs to its creator until mx_sql_run/run_sync
 * (a failed mx_sql_run parks it on a list freed on the next loop turn),
 * then to the engine, then (on completion) to store.c, which calls the
 * callback and frees batch and result.  Results are built by whichever
 * thread executes the batch and are only read once it has completed.
 */
#ifndef MX_STORE_H
#define MX_STORE_H

#include "core.h"

/* One parameter, copied at mx_sql_add time. */
typedef struct mx__sql_param {
    char type;              /* 'i', 's', 'b', 'n', 'd' ('s' with s == NULL is NULL) */
    int64_t i;
    double d;
    char *s;                /* 's' and 'b' data (owned; NUL-terminated) */
    size_t len;             /* 'b' length, 's' strlen */
} mx__sql_param_t;

/* One statement of a batch. */
typedef struct mx__sql_stmt {
    char *sql;              /* as given (owned) */
    char *pg_sql;           /* `?` rewritten to $n (owned), PostgreSQL only */
    mx__sql_param_t *params; /* owned */
    int nparams;
    bool is_script;         /* several statements, no parameters (migrations) */
} mx__sql_stmt_t;

#define MX__BATCH_MAGIC 0x5b47c4e1u
/* A batch whose mx_sql_run failed: the store frees it on the next loop
 * turn; mx_sql_batch_free on it meanwhile is a no-op (see mx_sql_run). */
#define MX__BATCH_FAILED_MAGIC 0x5b47c4e2u

struct mx_sql_batch {
    uint32_t magic;
    mx_db_t *db;
    int mode;               /* MX_SQL_READ or MX_SQL_WRITE */
    int err;                /* first mx_sql_add failure; run refuses the batch */
    mx__sql_stmt_t *stmts;
    int nstmts, cap;
    mx_sql_done_fn cb;
    void *ud;
    int status;             /* outcome, set by the engine */
    mx_sql_res_t *res;      /* built by the engine (owned by the batch until handed out) */
    struct mx_sql_batch *next; /* link in engine queues and the completion queue */
    /* run_sync waiting (engine-specific synchronisation protects these) */
    bool is_sync;
    bool sync_done;
    /* PostgreSQL: write completions are delivered in submission order */
    struct mx_sql_batch *onext;
    bool finished;
    int attempts;           /* PostgreSQL: resent after a connection drop */
};

/* A result set of one statement.  Cell data lives in `buf`, each value
 * followed by a NUL so that every value reads as text. */
typedef struct mx__sql_rows {
    int nrows, ncols;
    int64_t changes;
    size_t *off;            /* nrows * ncols; SIZE_MAX = NULL */
    size_t *len;
    char *buf;
    size_t buflen, bufcap;
    size_t ncells;          /* cells written */
    size_t cellcap;         /* capacity of off/len, in cells */
} mx__sql_rows_t;

struct mx_sql_res {
    int nstmts;
    mx__sql_rows_t *stmts;  /* nstmts entries */
    char *errmsg;           /* NULL on success (owned) */
};

/* What an engine implements.  All functions are called on the loop
 * thread except run_sync (any one thread at a time per caller; engines
 * make it safe to call concurrently with the loop). */
typedef struct mx__store_engine {
    const char *name;
    /* Opens the database described by `conf`; sets db->impl. */
    int (*open)(mx_db_t *db, const mx_db_conf_t *conf, char *err, size_t errlen);
    /* Takes the batch (b->res already allocated, b->status 0); later calls
     * mx__store_complete(b) from any thread.  Returns 0 or a negative code
     * (then the batch stays with the caller). */
    int (*submit)(mx_db_t *db, mx_sql_batch_t *b);
    /* Runs the batch now, blocking; sets b->status and fills b->res. */
    void (*run_sync)(mx_db_t *db, mx_sql_batch_t *b);
    /* Finishes queued and running work (completions queued through
     * mx__store_complete), closes connections, frees db->impl. */
    void (*close)(mx_db_t *db);
    /* Adds this database's figures. */
    void (*stats)(mx_db_t *db, int *queued, int *in_flight, int *size, int *idle);
} mx__store_engine_t;

#define MX__DB_MAGIC 0x0db5a7e1u

struct mx_db {
    uint32_t magic;
    const mx__store_engine_t *eng;
    void *impl;
    bool is_pg;
    struct mx_store_state *st;  /* the store this database belongs to */
    char *key;                  /* engine + path/conninfo, to share identical databases */
    struct mx_db *next;         /* list of distinct open databases */
};

extern const mx__store_engine_t mx__store_sqlite;
extern const mx__store_engine_t mx__store_pg;

/* Queues a finished batch for its callback on the loop thread.  Any
 * thread.  Batch and result are freed after the callback returns. */
void mx__store_complete(mx_sql_batch_t *b);

/* Result building, for engines.  All return 0 or -ENOMEM. */
mx_sql_res_t *mx__res_new(int nstmts);
/* Frees the rows of every statement and the error, keeping the shape
 * (used when a group commit retries a batch). */
void mx__res_reset(mx_sql_res_t *res);
int mx__res_cols(mx_sql_res_t *res, int stmt, int ncols);
/* Appends one cell to the current row (rows grow by ncols cells).  `data`
 * NULL means SQL NULL. */
int mx__res_cell(mx_sql_res_t *res, int stmt, const void *data, size_t len);
/* Records the error of a batch: "statement N (sql...): why". */
void mx__res_error(mx_sql_res_t *res, int stmt, const char *sql, const char *why);

/* Adds a multi-statement script without parameters (migrations). */
int mx__sql_add_script(mx_sql_batch_t *b, const char *sql);

/* Scans `sql` for `?` placeholders outside literals, identifiers, comments
 * and dollar quotes.  Returns how many; when `out` is not NULL, also
 * stores a malloc'd copy with each one rewritten to $1, $2... */
int mx__sql_placeholders(const char *sql, char **out);

/* Tests: SQLite group-commit figures (commits, batches written). */
void mx__sqlite_group_stats(mx_db_t *db, uint64_t *commits, uint64_t *batches);

#endif /* MX_STORE_H */

/*
 * store.c: the engine-independent half of the storage API.
 *
 * Batches (statements with copied parameters), results and their
 * accessors, the `?` placeholder scanner, schema migrations, the registry
 * of open databases (the shared one and modules' own), and completion
 * delivery: executors on any thread hand finished batches to
 * mx__store_complete, which queues them and wakes the loop through ONE
 * uv_async_t; the loop thread then runs the callbacks.  The async handle
 * is referenced only while batches are outstanding, so an idle store
 * never keeps the loop alive.
 */
#include "store.h"

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mx_named_db {
    char *module;
    mx_db_t *db;
    struct mx_named_db *next;
};

struct mx_store_state {
    mx_db_t *dbs;             /* every distinct open database */
    mx_db_t *shared;
    struct mx_named_db *named;
    uv_mutex_t mu;            /* guards the completion queue */
    mx_sql_batch_t *done_head, *done_tail;
    mx_sql_batch_t *failed;   /* runs that failed, freed on the next loop turn (loop thread) */
    uv_async_t async;
    bool async_init;
    int outstanding;          /* async batches submitted, not yet delivered (loop thread) */
};

/* ------------------------------------------------------------ results --- */

mx_sql_res_t *mx__res_new(int nstmts)
{
    mx_sql_res_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->nstmts = nstmts;
    if (nstmts > 0) {
        r->stmts = calloc((size_t)nstmts, sizeof(*r->stmts));
        if (!r->stmts) {
            free(r);
            return NULL;
        }
    }
    return r;
}

static void rows_free(mx__sql_rows_t *rw)
{
    free(rw->off);
    free(rw->len);
    free(rw->buf);
    memset(rw, 0, sizeof(*rw));
}

void mx__res_reset(mx_sql_res_t *res)
{
    if (!res)
        return;
    for (int i = 0; i < res->nstmts; i++)
        rows_free(&res->stmts[i]);
    free(res->errmsg);
    res->errmsg = NULL;
}

void mx_sql_res_free(mx_sql_res_t *res)
{
    if (!res)
        return;
    mx__res_reset(res);
    free(res->stmts);
    free(res);
}

int mx__res_cols(mx_sql_res_t *res, int stmt, int ncols)
{
    if (!res || stmt < 0 || stmt >= res->nstmts)
        return -EINVAL;
    res->stmts[stmt].ncols = ncols;
    return 0;
}

int mx__res_cell(mx_sql_res_t *res, int stmt, const void *data, size_t len)
{
    if (!res || stmt < 0 || stmt >= res->nstmts)
        return -EINVAL;
    mx__sql_rows_t *rw = &res->stmts[stmt];
    if (rw->ncols <= 0)
        return -EINVAL;
    size_t written = rw->ncells;
    if (written >= rw->cellcap) {
        size_t ncap = rw->cellcap ? rw->cellcap * 2 : 64;
        size_t *noff = realloc(rw->off, ncap * sizeof(*noff));
        if (!noff)
            return -ENOMEM;
        rw->off = noff;
        size_t *nlen = realloc(rw->len, ncap * sizeof(*nlen));
        if (!nlen)
            return -ENOMEM;
        rw->len = nlen;
        rw->cellcap = ncap;
    }
    if (!data) {
        rw->off[written] = SIZE_MAX;
        rw->len[written] = 0;
    } else {
        if (rw->buflen + len + 1 > rw->bufcap) {
            size_t ncap = rw->bufcap ? rw->bufcap : 256;
            while (ncap < rw->buflen + len + 1)
                ncap *= 2;
            char *nb = realloc(rw->buf, ncap);
            if (!nb)
                return -ENOMEM;
            rw->buf = nb;
            rw->bufcap = ncap;
        }
        if (len)
            memcpy(rw->buf + rw->buflen, data, len);
        rw->buf[rw->buflen + len] = '\0';
        rw->off[written] = rw->buflen;
        rw->len[written] = len;
        rw->buflen += len + 1;
    }
    rw->ncells++;
    /* nrows counts complete rows only. */
    if (rw->ncells % (size_t)rw->ncols == 0)
        rw->nrows++;
    return 0;
}

void mx__res_error(mx_sql_res_t *res, int stmt, const char *sql, const char *why)
{
    if (!res)
        return;
    char buf[512];
    if (stmt >= 0 && sql) {
        /* A short excerpt of the statement is enough to find it. */
        char ex[64];
        size_t n = 0;
        for (const char *p = sql; *p && n < sizeof(ex) - 4; p++) {
            char c = *p;
            if (c == '\n' || c == '\t' || c == '\r')
                c = ' ';
            if (c == ' ' && n > 0 && ex[n - 1] == ' ')
                continue;
            ex[n++] = c;
        }
        if (strlen(sql) > n) {
            memcpy(ex + n, "...", 3);
            n += 3;
        }
        ex[n] = '\0';
        snprintf(buf, sizeof(buf), "statement %d (%s): %s", stmt + 1, ex, why ? why : "failed");
    } else {
        snprintf(buf, sizeof(buf), "%s", why ? why : "failed");
    }
    /* Trim the newline libpq puts at the end of its messages. */
    size_t l = strlen(buf);
    while (l > 0 && (buf[l - 1] == '\n' || buf[l - 1] == ' '))
        buf[--l] = '\0';
    free(res->errmsg);
    res->errmsg = strdup(buf);
}

static const mx__sql_rows_t *rows_at(const mx_sql_res_t *res, int stmt)
{
    if (!res || stmt < 0 || stmt >= res->nstmts)
        return NULL;
    return &res->stmts[stmt];
}

static bool cell_at(const mx_sql_res_t *res, int stmt, int row, int col, size_t *idx)
{
    const mx__sql_rows_t *rw = rows_at(res, stmt);
    if (!rw || row < 0 || row >= rw->nrows || col < 0 || col >= rw->ncols)
        return false;
    *idx = (size_t)row * (size_t)rw->ncols + (size_t)col;
    return true;
}

int mx_sql_nrows(const mx_sql_res_t *res, int stmt)
{
    const mx__sql_rows_t *rw = rows_at(res, stmt);
    return rw ? rw->nrows : 0;
}

int64_t mx_sql_changes(const mx_sql_res_t *res, int stmt)
{
    const mx__sql_rows_t *rw = rows_at(res, stmt);
    return rw ? rw->changes : 0;
}

int mx_sql_is_null(const mx_sql_res_t *res, int stmt, int row, int col)
{
    size_t i;
    if (!cell_at(res, stmt, row, col, &i))
        return 1;
    return res->stmts[stmt].off[i] == SIZE_MAX;
}

const char *mx_sql_text(const mx_sql_res_t *res, int stmt, int row, int col)
{
    size_t i;
    if (!cell_at(res, stmt, row, col, &i))
        return NULL;
    const mx__sql_rows_t *rw = &res->stmts[stmt];
    if (rw->off[i] == SIZE_MAX)
        return NULL;
    return rw->buf + rw->off[i];
}

const void *mx_sql_blob(const mx_sql_res_t *res, int stmt, int row, int col, size_t *len)
{
    size_t i;
    if (len)
        *len = 0;
    if (!cell_at(res, stmt, row, col, &i))
        return NULL;
    const mx__sql_rows_t *rw = &res->stmts[stmt];
    if (rw->off[i] == SIZE_MAX)
        return NULL;
    if (len)
        *len = rw->len[i];
    return rw->buf + rw->off[i];
}

int64_t mx_sql_int(const mx_sql_res_t *res, int stmt, int row, int col)
{
    const char *s = mx_sql_text(res, stmt, row, col);
    if (!s || !*s)
        return 0;
    /* PostgreSQL renders booleans as t / f. */
    if (s[1] == '\0' && (s[0] == 't' || s[0] == 'f'))
        return s[0] == 't';
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end == '.' || *end == 'e' || *end == 'E')
        return (int64_t)strtod(s, NULL);
    return (int64_t)v;
}

const char *mx_sql_errmsg(const mx_sql_res_t *res)
{
    return res ? res->errmsg : NULL;
}

/* ------------------------------------------------------- placeholders --- */

int mx__sql_placeholders(const char *sql, char **out)
{
    size_t n = strlen(sql);
    /* Each `?` becomes at most "$" + 10 digits. */
    char *o = NULL;
    size_t w = 0;
    if (out) {
        size_t q = 0;
        for (size_t i = 0; i < n; i++)
            q += sql[i] == '?';
        o = malloc(n + q * 10 + 1);
        if (!o)
            return -ENOMEM;
    }
    int count = 0;
    size_t i = 0;
#define EMIT(c) do { if (o) o[w++] = (c); } while (0)
    while (i < n) {
        char c = sql[i];
        if (c == '\'') {
            /* E'...' strings take backslash escapes. */
            bool esc = i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e') &&
                       (i < 2 || !(sql[i - 2] == '_' || (sql[i - 2] >= 'a' && sql[i - 2] <= 'z') ||
                                   (sql[i - 2] >= 'A' && sql[i - 2] <= 'Z') ||
                                   (sql[i - 2] >= '0' && sql[i - 2] <= '9')));
            EMIT(c);
            i++;
            while (i < n) {
                if (esc && sql[i] == '\\' && i + 1 < n) {
                    EMIT(sql[i]);
                    EMIT(sql[i + 1]);
                    i += 2;
                    continue;
                }
                EMIT(sql[i]);
                if (sql[i] == '\'') {
                    if (i + 1 < n && sql[i + 1] == '\'') {
                        EMIT(sql[i + 1]);
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                i++;
            }
        } else if (c == '"') {
            EMIT(c);
            i++;
            while (i < n) {
                EMIT(sql[i]);
                if (sql[i++] == '"')
                    break;
            }
        } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
            while (i < n && sql[i] != '\n') {
                EMIT(sql[i]);
                i++;
            }
        } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
            EMIT('/');
            EMIT('*');
            i += 2;
            while (i < n && !(sql[i] == '*' && i + 1 < n && sql[i + 1] == '/')) {
                EMIT(sql[i]);
                i++;
            }
            if (i < n) {
                EMIT('*');
                EMIT('/');
                i += 2;
            }
        } else if (c == '$' && i + 1 < n && !(sql[i + 1] >= '0' && sql[i + 1] <= '9')) {
            /* A dollar quote: $$ or $tag$ ... the same tag. */
            size_t j = i + 1;
            while (j < n && (sql[j] == '_' || (sql[j] >= 'a' && sql[j] <= 'z') ||
                             (sql[j] >= 'A' && sql[j] <= 'Z') || (sql[j] >= '0' && sql[j] <= '9')))
                j++;
            if (j < n && sql[j] == '$') {
                size_t taglen = j - i + 1;
                const char *end = NULL;
                for (size_t k = j + 1; k + taglen <= n; k++) {
                    if (memcmp(sql + k, sql + i, taglen) == 0) {
                        end = sql + k;
                        break;
                    }
                }
                size_t stop = end ? (size_t)(end - sql) + taglen : n;
                while (i < stop) {
                    EMIT(sql[i]);
                    i++;
                }
            } else {
                EMIT(c);
                i++;
            }
        } else if (c == '?') {
            count++;
            if (o)
                w += (size_t)sprintf(o + w, "$%d", count);
            i++;
        } else {
            EMIT(c);
            i++;
        }
    }
#undef EMIT
    if (o) {
        o[w] = '\0';
        *out = o;
    }
    return count;
}

/* ------------------------------------------------------------ batches --- */

mx_sql_batch_t *mx_sql_batch_new(mx_db_t *db, int mode)
{
    if (!db || db->magic != MX__DB_MAGIC || (mode != MX_SQL_READ && mode != MX_SQL_WRITE))
        return NULL;
    mx_sql_batch_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->magic = MX__BATCH_MAGIC;
    b->db = db;
    b->mode = mode;
    return b;
}

static void stmt_free(mx__sql_stmt_t *s)
{
    free(s->sql);
    free(s->pg_sql);
    for (int i = 0; i < s->nparams; i++)
        free(s->params[i].s);
    free(s->params);
}

void mx_sql_batch_free(mx_sql_batch_t *b)
{
    if (!b || b->magic == MX__BATCH_FAILED_MAGIC)
        return;
    for (int i = 0; i < b->nstmts; i++)
        stmt_free(&b->stmts[i]);
    free(b->stmts);
    mx_sql_res_free(b->res);
    b->magic = 0;
    free(b);
}

static mx__sql_stmt_t *stmt_append(mx_sql_batch_t *b)
{
    if (b->nstmts == b->cap) {
        int ncap = b->cap ? b->cap * 2 : 4;
        mx__sql_stmt_t *ns = realloc(b->stmts, (size_t)ncap * sizeof(*ns));
        if (!ns)
            return NULL;
        b->stmts = ns;
        b->cap = ncap;
    }
    mx__sql_stmt_t *s = &b->stmts[b->nstmts];
    memset(s, 0, sizeof(*s));
    return s;
}

static int batch_fail(mx_sql_batch_t *b, int rc)
{
    if (!b->err)
        b->err = rc;
    return rc;
}

int mx_sql_add(mx_sql_batch_t *b, const char *sql, const char *types, ...)
{
    if (!b || b->magic != MX__BATCH_MAGIC)
        return -EINVAL;
    if (!sql)
        return batch_fail(b, -EINVAL);
    if (!types)
        types = "";
    mx__sql_stmt_t *s = stmt_append(b);
    if (!s)
        return batch_fail(b, -ENOMEM);
    int rc = 0;
    size_t np = strlen(types);
    s->sql = strdup(sql);
    if (!s->sql) {
        rc = -ENOMEM;
        goto fail;
    }
    if (np) {
        s->params = calloc(np, sizeof(*s->params));
        if (!s->params) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    va_list ap;
    va_start(ap, types);
    for (size_t i = 0; i < np && rc == 0; i++) {
        mx__sql_param_t *p = &s->params[i];
        p->type = types[i];
        s->nparams++;
        switch (types[i]) {
        case 'i':
            p->i = va_arg(ap, int64_t);
            break;
        case 'd':
            p->d = va_arg(ap, double);
            break;
        case 'n':
            break;
        case 's': {
            const char *v = va_arg(ap, const char *);
            if (v) {
                p->len = strlen(v);
                p->s = strdup(v);
                if (!p->s)
                    rc = -ENOMEM;
            }
            break;
        }
        case 'b': {
            const void *v = va_arg(ap, const void *);
            size_t len = va_arg(ap, size_t);
            p->s = malloc(len + 1);
            if (!p->s) {
                rc = -ENOMEM;
                break;
            }
            if (len)
                memcpy(p->s, v, len);
            p->s[len] = '\0';
            p->len = len;
            break;
        }
        default:
            mx_log("store", MX_LOG_ERROR, "mx_sql_add: unknown parameter type '%c' in \"%s\"",
                   types[i], types);
            rc = -EINVAL;
        }
    }
    va_end(ap);
    if (rc)
        goto fail;
    int count = mx__sql_placeholders(sql, b->db->is_pg ? &s->pg_sql : NULL);
    if (count < 0) {
        rc = count;
        goto fail;
    }
    if (count != s->nparams) {
        mx_log("store", MX_LOG_ERROR, "mx_sql_add: %d placeholders but %d parameters in: %s",
               count, s->nparams, sql);
        rc = -EINVAL;
        goto fail;
    }
    b->nstmts++;
    return 0;
fail:
    stmt_free(s);
    return batch_fail(b, rc);
}

int mx__sql_add_script(mx_sql_batch_t *b, const char *sql)
{
    if (!b || b->magic != MX__BATCH_MAGIC || !sql)
        return -EINVAL;
    mx__sql_stmt_t *s = stmt_append(b);
    if (!s)
        return batch_fail(b, -ENOMEM);
    s->sql = strdup(sql);
    if (!s->sql)
        return batch_fail(b, -ENOMEM);
    s->is_script = true;
    b->nstmts++;
    return 0;
}

/* --------------------------------------------------------- completion --- */

static void deliver_all(struct mx_store_state *st)
{
    for (;;) {
        uv_mutex_lock(&st->mu);
        mx_sql_batch_t *list = st->done_head;
        st->done_head = st->done_tail = NULL;
        uv_mutex_unlock(&st->mu);
        if (!list)
            break;
        while (list) {
            mx_sql_batch_t *b = list;
            list = b->next;
            b->next = NULL;
            if (b->cb)
                b->cb(b->status, b->res, b->ud);
            mx_sql_batch_free(b);
            if (st->outstanding > 0 && --st->outstanding == 0 && st->async_init)
                uv_unref((uv_handle_t *)&st->async);
        }
    }
}

static void free_failed(struct mx_store_state *st);

static void on_async(uv_async_t *h)
{
    free_failed(h->data);
    deliver_all(h->data);
}

void mx__store_complete(mx_sql_batch_t *b)
{
    struct mx_store_state *st = b->db->st;
    b->next = NULL;
    uv_mutex_lock(&st->mu);
    if (st->done_tail)
        st->done_tail->next = b;
    else
        st->done_head = b;
    st->done_tail = b;
    uv_mutex_unlock(&st->mu);
    if (st->async_init)
        uv_async_send(&st->async);
}

int mx_sql_run(mx_sql_batch_t *b, mx_sql_done_fn cb, void *ud)
{
    if (!b || b->magic != MX__BATCH_MAGIC)
        return -EINVAL;
    struct mx_store_state *st = b->db->st;
    int rc = b->err;
    if (rc)
        goto fail;
    if (!st->async_init) {
        uv_loop_t *loop = mx__ctx ? mx__ctx->loop : NULL;
        if (!loop) {
            rc = -EINVAL;
            goto fail;
        }
        rc = uv_async_init(loop, &st->async, on_async);
        if (rc < 0)
            goto fail;
        st->async.data = st;
        uv_unref((uv_handle_t *)&st->async);
        st->async_init = true;
    }
    b->res = mx__res_new(b->nstmts);
    if (!b->res) {
        rc = -ENOMEM;
        goto fail;
    }
    b->cb = cb;
    b->ud = ud;
    b->status = 0;
    rc = b->db->eng->submit(b->db, b);
    if (rc < 0)
        goto fail;
    if (st->outstanding++ == 0)
        uv_ref((uv_handle_t *)&st->async);
    return 0;
fail:
    /* Not submitted.  Callers either free the batch after a failed run or
     * leave it: both are safe, because the store frees it on the next loop
     * turn and mx_sql_batch_free ignores it until then. */
    mx_sql_res_free(b->res);
    b->res = NULL;
    if (st->async_init) {
        b->magic = MX__BATCH_FAILED_MAGIC;
        b->next = st->failed;
        st->failed = b;
        uv_async_send(&st->async);
    }
    return rc;
}

static void free_failed(struct mx_store_state *st)
{
    while (st->failed) {
        mx_sql_batch_t *b = st->failed;
        st->failed = b->next;
        b->magic = MX__BATCH_MAGIC;
        mx_sql_batch_free(b);
    }
}

int mx_sql_run_sync(mx_sql_batch_t *b, mx_sql_res_t **out)
{
    if (out)
        *out = NULL;
    if (!b || b->magic != MX__BATCH_MAGIC)
        return -EINVAL;
    int rc = b->err;
    if (!rc) {
        b->res = mx__res_new(b->nstmts);
        if (!b->res) {
            rc = -ENOMEM;
        } else {
            b->status = 0;
            b->is_sync = true;
            b->db->eng->run_sync(b->db, b);
            rc = b->status;
        }
    }
    if (out) {
        *out = b->res;
        b->res = NULL;
    }
    mx_sql_batch_free(b);
    return rc;
}

/* ---------------------------------------------------------- databases --- */

int mx_db_is_postgres(mx_db_t *db)
{
    return db && db->magic == MX__DB_MAGIC && db->is_pg;
}

mx_db_t *mx_db_get(const char *module)
{
    struct mx_store_state *st = mx__ctx ? mx__ctx->store : NULL;
    if (!st)
        return NULL;
    if (module) {
        for (struct mx_named_db *n = st->named; n; n = n->next)
            if (strcmp(n->module, module) == 0)
                return n->db;
    }
    return st->shared;
}

static const mx__store_engine_t *engine_for(const char *name)
{
    if (!name || strcmp(name, "sqlite3") == 0 || strcmp(name, "sqlite") == 0)
        return &mx__store_sqlite;
    if (strcmp(name, "psycopg2") == 0 || strcmp(name, "postgres") == 0 ||
        strcmp(name, "postgresql") == 0)
        return &mx__store_pg;
    return NULL;
}

/* Opens (or finds an identical, already open) database. */
static int db_open(struct mx_store_state *st, const mx_db_conf_t *conf, mx_db_t **out,
                   char *err, size_t errlen)
{
    const mx__store_engine_t *eng = engine_for(conf->engine);
    if (!eng) {
        snprintf(err, errlen, "database.name: unknown engine \"%s\" (sqlite3 or psycopg2)",
                 conf->engine);
        return -EINVAL;
    }
    bool is_pg = eng == &mx__store_pg;
    const char *where = is_pg ? conf->pg_conninfo : conf->sqlite_path;
    if (!where || !*where) {
        snprintf(err, errlen, "database.args: %s is not set",
                 is_pg ? "the PostgreSQL connection" : "database (the SQLite file)");
        return -EINVAL;
    }
    size_t kl = strlen(eng->name) + strlen(where) + 2;
    char *key = malloc(kl);
    if (!key)
        return -ENOMEM;
    snprintf(key, kl, "%s:%s", eng->name, where);
    for (mx_db_t *d = st->dbs; d; d = d->next) {
        if (strcmp(d->key, key) == 0) {
            free(key);
            *out = d;
            return 0;
        }
    }
    mx_db_t *db = calloc(1, sizeof(*db));
    if (!db) {
        free(key);
        return -ENOMEM;
    }
    db->magic = MX__DB_MAGIC;
    db->eng = eng;
    db->is_pg = is_pg;
    db->st = st;
    db->key = key;
    int rc = eng->open(db, conf, err, errlen);
    if (rc < 0) {
        free(key);
        free(db);
        return rc;
    }
    db->next = st->dbs;
    st->dbs = db;
    *out = db;
    return 0;
}

int mx__store_init(const mx_db_conf_t *conf, char *err, size_t errlen)
{
    if (!mx__ctx || !conf)
        return -EINVAL;
    if (mx__ctx->store) {
        snprintf(err, errlen, "storage is already open");
        return -EALREADY;
    }
    /* Before the storage threads start: glibc would give each of them its
     * own malloc arena, and every arena keeps what it freed (8 MB+ of
     * RSS after a burst of large reads).  Two arenas: the loop and the
     * workers. */
    mallopt(M_ARENA_MAX, 2);
    struct mx_store_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    if (uv_mutex_init(&st->mu) < 0) {
        free(st);
        return -ENOMEM;
    }
    int rc = db_open(st, conf, &st->shared, err, errlen);
    if (rc < 0) {
        uv_mutex_destroy(&st->mu);
        free(st);
        return rc;
    }
    mx__ctx->store = st;
    return 0;
}

int mx__store_open_named(const char *module, const mx_db_conf_t *conf, char *err, size_t errlen)
{
    struct mx_store_state *st = mx__ctx ? mx__ctx->store : NULL;
    if (!st || !module || !conf)
        return -EINVAL;
    for (struct mx_named_db *n = st->named; n; n = n->next) {
        if (strcmp(n->module, module) == 0) {
            snprintf(err, errlen, "%s: database already open", module);
            return -EEXIST;
        }
    }
    struct mx_named_db *n = calloc(1, sizeof(*n));
    if (!n || !(n->module = strdup(module))) {
        free(n);
        return -ENOMEM;
    }
    int rc = db_open(st, conf, &n->db, err, errlen);
    if (rc < 0) {
        free(n->module);
        free(n);
        return rc;
    }
    n->next = st->named;
    st->named = n;
    return 0;
}

static void on_async_closed(uv_handle_t *h)
{
    struct mx_store_state *st = h->data;
    uv_mutex_destroy(&st->mu);
    free(st);
}

void mx__store_close(void)
{
    struct mx_store_state *st = mx__ctx ? mx__ctx->store : NULL;
    if (!st)
        return;
    /* Engines finish their queues first; their completions are then
     * delivered here, on the loop thread, so no callback is lost. */
    for (mx_db_t *d = st->dbs; d; d = d->next)
        d->eng->close(d);
    deliver_all(st);
    free_failed(st);
    while (st->dbs) {
        mx_db_t *d = st->dbs;
        st->dbs = d->next;
        free(d->key);
        d->magic = 0;
        free(d);
    }
    while (st->named) {
        struct mx_named_db *n = st->named;
        st->named = n->next;
        free(n->module);
        free(n);
    }
    mx__ctx->store = NULL;
    if (st->async_init) {
        /* Freed in the close callback, on the loop's next turn. */
        uv_close((uv_handle_t *)&st->async, on_async_closed);
    } else {
        uv_mutex_destroy(&st->mu);
        free(st);
    }
}

void mx__store_stats(int *queued, int *in_flight, int *pool_size, int *pool_idle)
{
    int q = 0, f = 0, s = 0, i = 0;
    struct mx_store_state *st = mx__ctx ? mx__ctx->store : NULL;
    for (mx_db_t *d = st ? st->dbs : NULL; d; d = d->next)
        d->eng->stats(d, &q, &f, &s, &i);
    if (queued)
        *queued = q;
    if (in_flight)
        *in_flight = f;
    if (pool_size)
        *pool_size = s;
    if (pool_idle)
        *pool_idle = i;
}

/* --------------------------------------------------------- migrations --- */

/* The advisory lock that serialises migrations between processes sharing
 * one PostgreSQL database ("mxst"). */
#define MIGRATE_LOCK_KEY 0x6d787374

static int migrate_lock(mx_db_t *db, bool lock)
{
    if (!db->is_pg)
        return 0;
    mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_WRITE);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, lock ? "SELECT pg_advisory_lock(?)" : "SELECT pg_advisory_unlock(?)", "i",
               (int64_t)MIGRATE_LOCK_KEY);
    mx_sql_res_t *res;
    int rc = mx_sql_run_sync(b, &res);
    if (rc < 0)
        mx_log("store", MX_LOG_ERROR, "migrations: %s", mx_sql_errmsg(res));
    mx_sql_res_free(res);
    return rc;
}

/* The module's schema version by a read (no commit, no fsync): the common
 * start of an up-to-date database.  -1 when it cannot be read (new db). */
static int64_t schema_version_read(mx_db_t *db, const char *module)
{
    mx_sql_res_t *res = NULL;
    mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_READ);
    if (!b)
        return -1;
    mx_sql_add(b, "SELECT version FROM mx_schema WHERE module = ?", "s", module);
    int64_t v = -1;
    if (mx_sql_run_sync(b, &res) == 0)
        v = mx_sql_nrows(res, 0) ? mx_sql_int(res, 0, 0, 0) : 0;
    mx_sql_res_free(res);
    return v;
}

static int migrate_locked(mx_db_t *db, const char *module, const mx_migration_t *m, size_t n)
{
    if (n > 0 && schema_version_read(db, module) == m[n - 1].version)
        return 0;   /* up to date (ascending order and newer versions are checked below) */
    mx_sql_res_t *res = NULL;
    mx_sql_batch_t *b = mx_sql_batch_new(db, MX_SQL_WRITE);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "CREATE TABLE IF NOT EXISTS mx_schema (module TEXT PRIMARY KEY, "
                  "version INTEGER NOT NULL)", "");
    mx_sql_add(b, "SELECT version FROM mx_schema WHERE module = ?", "s", module);
    int rc = mx_sql_run_sync(b, &res);
    if (rc < 0) {
        mx_log("store", MX_LOG_ERROR, "%s: cannot read the schema version: %s", module,
               mx_sql_errmsg(res));
        mx_sql_res_free(res);
        return rc;
    }
    int64_t cur = mx_sql_nrows(res, 1) ? mx_sql_int(res, 1, 0, 0) : 0;
    mx_sql_res_free(res);

    int newest = 0;
    for (size_t i = 0; i < n; i++) {
        if (m[i].version <= newest) {
            mx_log("store", MX_LOG_ERROR, "%s: migration versions must ascend (%d after %d)",
                   module, m[i].version, newest);
            return -EINVAL;
        }
        newest = m[i].version;
    }
    if (cur > newest) {
        mx_log("store", MX_LOG_ERROR,
               "%s: database was written by a newer mxstack (schema version %lld, this build "
               "knows up to %d); refusing to use it",
               module, (long long)cur, newest);
        return MX_EDB;
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i].version <= cur)
            continue;
        const char *sql = db->is_pg ? m[i].postgres : m[i].sqlite;
        if (!sql)
            sql = m[i].sql;
        b = mx_sql_batch_new(db, MX_SQL_WRITE);
        if (!b)
            return -ENOMEM;
        if (sql)
            mx__sql_add_script(b, sql);
        mx_sql_add(b, "INSERT INTO mx_schema (module, version) VALUES (?, ?) "
                      "ON CONFLICT (module) DO UPDATE SET version = excluded.version",
                   "si", module, (int64_t)m[i].version);
        rc = mx_sql_run_sync(b, &res);
        if (rc < 0) {
            mx_log("store", MX_LOG_ERROR, "%s: migration %d failed: %s", module, m[i].version,
                   mx_sql_errmsg(res));
            mx_sql_res_free(res);
            return rc;
        }
        mx_sql_res_free(res);
        mx_log("store", MX_LOG_INFO, "%s: schema migrated to version %d", module, m[i].version);
    }
    return 0;
}

int mx_db_migrate(mx_db_t *db, const char *module, const mx_migration_t *m, size_t n)
{
    if (!db || db->magic != MX__DB_MAGIC || !module || (n && !m))
        return -EINVAL;
    int rc = migrate_lock(db, true);
    if (rc < 0)
        return rc;
    rc = migrate_locked(db, module, m, n);
    migrate_lock(db, false);
    return rc;
}

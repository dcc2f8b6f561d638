/*
 * window.c: the events of a sync window (since, upto] summarised once and
 * shared by every /sync computing the same window.
 *
 * Each /sync's first batch needs, for the window, the rooms with new
 * events (and whether a state or membership event is among them) and the
 * user's own membership events.  When one send wakes 100 long-polling
 * clients, they all compute the same window: instead of two statements per
 * client (on PostgreSQL five round trips with BEGIN/COMMIT), the window is
 * read once, the clients woken meanwhile wait for that read, and each
 * filters the rows by its own rooms in memory.  Events at or below a
 * persisted stream position never change in these columns, so an entry
 * stays right for as long as it is kept (the last SY_WIN_KEEP windows).
 * A window of more than SY_WIN_MAX_ROWS events is not kept: callers get
 * NULL and read it with their own SQL.
 */
#include "sync.h"

#include <errno.h>
#include <stdlib.h>

#define SY_WIN_KEEP 8
#define SY_WIN_MAX_ROWS 1000

typedef struct sy_wcb {
    hs_sync_window_fn fn;
    void *ud;
} sy_wcb_t;

typedef struct sy_win {
    int64_t since, upto;
    json_t *rows;             /* owned; NULL while the read is in flight */
    bool big;                 /* too many rows: not kept */
    bool orphan;              /* dropped by hs_sync_window_stop mid-read */
    sy_wcb_t *wait;           /* callers waiting for the read (malloc'd) */
    size_t nwait, capwait;
    struct sy_win *next;
} sy_win_t;

/* Newest first; the module's only state of this file. */
static sy_win_t *sy_wins;

static void sy_win_free(sy_win_t *w)
{
    json_decref(w->rows);
    free(w->wait);
    free(w);
}

/* Drops the ready entries beyond the newest SY_WIN_KEEP. */
static void sy_win_trim(void)
{
    size_t n = 0;
    for (sy_win_t **p = &sy_wins; *p;) {
        sy_win_t *w = *p;
        if (w->rows && (++n > SY_WIN_KEEP || w->big)) {
            *p = w->next;
            sy_win_free(w);
            continue;
        }
        p = &w->next;
    }
}

static void sy_win_unlink(sy_win_t *w)
{
    for (sy_win_t **p = &sy_wins; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            return;
        }
}

static void sy_win_read(int status, mx_sql_res_t *res, void *ud)
{
    sy_win_t *w = ud;
    json_t *rows = json_array();
    int n = status < 0 ? 0 : mx_sql_nrows(res, 0);
    w->big = status < 0 || n > SY_WIN_MAX_ROWS || !rows;
    if (status < 0)
        mx_log("homeserver", MX_LOG_WARN, "sync: window read failed (%d)", status);
    for (int i = 0; !w->big && i < n; i++) {
        json_t *row = json_pack("[s, b, s?, s?, s?]", mx_sql_text(res, 0, i, 0),
                                mx_sql_int(res, 0, i, 1) != 0,
                                mx_sql_is_null(res, 0, i, 2) ? NULL : mx_sql_text(res, 0, i, 2),
                                mx_sql_is_null(res, 0, i, 3) ? NULL : mx_sql_text(res, 0, i, 3),
                                mx_sql_is_null(res, 0, i, 4) ? NULL : mx_sql_text(res, 0, i, 4));
        if (!row || json_array_append_new(rows, row) < 0)
            w->big = true;
    }
    w->rows = rows ? rows : json_array();
    /* callers may start new windows from their callbacks: detach first */
    sy_wcb_t *wait = w->wait;
    size_t nwait = w->nwait;
    w->wait = NULL;
    w->nwait = w->capwait = 0;
    json_t *give = w->big ? NULL : json_incref(w->rows);
    if (w->big) {
        sy_win_unlink(w);
        sy_win_free(w);
    }
    for (size_t i = 0; i < nwait; i++)
        wait[i].fn(give, wait[i].ud);
    json_decref(give);
    free(wait);
    if (w->orphan && !w->big)
        sy_win_free(w);
    else
        sy_win_trim();
}

static int sy_win_wait(sy_win_t *w, hs_sync_window_fn fn, void *ud)
{
    if (w->nwait == w->capwait) {
        size_t cap = w->capwait ? w->capwait * 2 : 16;
        sy_wcb_t *m = realloc(w->wait, cap * sizeof(*m));
        if (!m)
            return -ENOMEM;
        w->wait = m;
        w->capwait = cap;
    }
    w->wait[w->nwait].fn = fn;
    w->wait[w->nwait].ud = ud;
    w->nwait++;
    return 0;
}

void hs_sync_window(int64_t since, int64_t upto, hs_sync_window_fn fn, void *ud)
{
    if (upto <= since) {
        json_t *none = json_array();
        fn(none, ud);
        json_decref(none);
        return;
    }
    for (sy_win_t *w = sy_wins; w; w = w->next) {
        if (w->since != since || w->upto != upto)
            continue;
        if (w->rows) {
            fn(w->rows, ud);
            return;
        }
        if (sy_win_wait(w, fn, ud) < 0)
            fn(NULL, ud);
        return;
    }
    sy_win_t *w = calloc(1, sizeof(*w));
    mx_sql_batch_t *b = w ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b || sy_win_wait(w, fn, ud) < 0) {
        mx_sql_batch_free(b);
        if (w)
            sy_win_free(w);
        fn(NULL, ud);
        return;
    }
    w->since = since;
    w->upto = upto;
    mx_sql_add(b, "SELECT e.room_id, CASE WHEN e.state_key IS NULL THEN 0 ELSE 1 END,"
                  " CASE WHEN e.type = 'm.room.member' THEN e.state_key END,"
                  " CASE WHEN e.type = 'm.room.member' THEN e.unsigned_json END,"
                  " CASE WHEN e.type = 'm.room.member' THEN e.membership END"
                  " FROM events e WHERE e.stream_ordering > ? AND e.stream_ordering <= ?"
                  " ORDER BY e.stream_ordering LIMIT ?",
               "iii", since, upto, (int64_t)SY_WIN_MAX_ROWS + 1);
    w->next = sy_wins;
    sy_wins = w;
    if (mx_sql_run(b, sy_win_read, w) < 0) {
        mx_sql_batch_free(b);
        sy_win_unlink(w);
        sy_win_free(w);
        fn(NULL, ud);
    }
}

void hs_sync_window_stop(void)
{
    while (sy_wins) {
        sy_win_t *w = sy_wins;
        sy_wins = w->next;
        if (w->rows) {
            sy_win_free(w);
        } else { /* freed when its read returns */
            w->orphan = true;
            w->next = NULL;
        }
    }
}

/*
 * svc_uindex.c: the user list's in-memory text index — every row of
 * `user_dn` (user ID, display name, list flags; kept by triggers, see
 * svc_main.c) with the user ID and the display name lowercased, so that
 * the `name` and `user_id` filters (substring matches, which no b-tree
 * index serves) are a scan of memory (~10 ms over 100,000 users) on both
 * engines instead of a LIKE over every row.
 *
 * Kept in step with the database, whoever writes it: triggers stamp each
 * changed `user_dn` row with a version (SQLite: a counter in
 * `user_dn_clock`, bumped under the single writer; PostgreSQL: the
 * writing transaction's ID), and a refresh reads the rows stamped at or
 * after a watermark (SQLite: the counter + 1; PostgreSQL: the xmin of the
 * refresh's snapshot, below which every transaction had ended) together
 * with the number of users (`user_counts`).  Deleted users show as a count
 * that differs: the index is then read again whole.  One refresh runs at a
 * time, and a caller waits for one that starts after it asked, so it sees
 * every write acknowledged before.  A refresh that finds a real change
 * forgets the user list's cached totals, keyset positions and anchors
 * (svc_users_changed), whichever path changed the row (admin API, client
 * profile API, registration, direct SQL).
 *
 * Entries are one malloc'd block each (user ID, lowercased user ID,
 * display name, lowercased display name), owned by the index; the array is
 * sorted by user ID (strcmp).
 */
#include "svc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct ux_ent {
    char *name;           /* user ID; start of the entry's block */
    const char *lname;    /* lowercased user ID */
    const char *dn;       /* display name as stored ('' for none) */
    const char *ldn;      /* lowercased display name */
    uint32_t llen, region, dlen; /* lname length; end of Synapse's `name` region; ldn length */
    uint8_t flags;        /* UX_GUEST | UX_DEACT | UX_LOCKED | UX_ADMIN */
} ux_ent_t;

enum { UX_GUEST = 1, UX_DEACT = 2, UX_LOCKED = 4, UX_ADMIN = 8 };

typedef struct ux_wait {
    svc_ux_ready_fn cb;
    void *ud;
    struct ux_wait *next;
} ux_wait_t;

struct svc_ux {
    ux_ent_t *ents;
    size_t n, cap;
    int64_t mark;         /* rows stamped >= mark are read by the next refresh; -1: all */
    int64_t skew;         /* users counted minus entries after the last full read */
    bool loaded, bytewise, busy, dead, reloaded;
    ux_wait_t *cur;       /* served by the refresh in flight */
    ux_wait_t *next;      /* asked while it ran: served by the one after */
};

/* ------------------------------------------------------------ text --- */

/* Lowercases UTF-8 `s` into `out` (same length): ASCII, and the two-byte
 * letters of Latin-1, Latin Extended-A, Greek and Cyrillic (as
 * PostgreSQL's lower() in a UTF-8 locale). Returns the length. */
uint32_t svc_text_lower(const char *s, char *out)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char *o = (unsigned char *)out;
    while (*p) {
        if (*p < 0x80) {
            *o++ = (*p >= 'A' && *p <= 'Z') ? (unsigned char)(*p + 32) : *p;
            p++;
            continue;
        }
        if ((*p & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
            unsigned cp = ((unsigned)(*p & 0x1F) << 6) | (p[1] & 0x3F), lc = cp;
            if ((cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) || (cp >= 0x391 && cp <= 0x3AB &&
                                                             cp != 0x3A2) ||
                (cp >= 0x410 && cp <= 0x42F))
                lc = cp + 0x20;
            else if (cp >= 0x400 && cp <= 0x40F)
                lc = cp + 0x50;
            else if (cp == 0x178)
                lc = 0xFF;
            else if ((cp >= 0x100 && cp <= 0x12F) || (cp >= 0x132 && cp <= 0x137) ||
                     (cp >= 0x14A && cp <= 0x177))
                lc = cp | 1;
            else if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E))
                lc = (cp & 1) ? cp + 1 : cp;
            *o++ = (unsigned char)(0xC0 | (lc >> 6));
            *o++ = (unsigned char)(0x80 | (lc & 0x3F));
            p += 2;
            continue;
        }
        *o++ = *p++;
    }
    *o = 0;
    return (uint32_t)(o - (unsigned char *)out);
}

/* ----------------------------------------------------------- entries --- */

static int ux_cmp(const void *a, const void *b)
{
    return strcmp(((const ux_ent_t *)a)->name, ((const ux_ent_t *)b)->name);
}

/* Fills `e` from row `i` of statement `st` (name, dn, is_guest,
 * deactivated, locked, admin). */
static int ux_make(ux_ent_t *e, const mx_sql_res_t *res, int st, int i)
{
    const char *name = mx_sql_text(res, st, i, 0);
    const char *dn = mx_sql_is_null(res, st, i, 1) ? "" : mx_sql_text(res, st, i, 1);
    size_t nl = strlen(name), dl = strlen(dn);
    char *blk = malloc(2 * (nl + 1) + 2 * (dl + 1));
    if (!blk)
        return -ENOMEM;
    memcpy(blk, name, nl + 1);
    char *lname = blk + nl + 1, *d = lname + nl + 1, *ldn = d + dl + 1;
    memcpy(d, dn, dl + 1);
    e->name = blk;
    e->lname = lname;
    e->dn = d;
    e->ldn = ldn;
    e->llen = svc_text_lower(name, lname);
    e->dlen = svc_text_lower(dn, ldn);
    /* Synapse matches `name` as LIKE '@%term%:%': after the '@', before
     * the last ':'. */
    const char *colon = strrchr(lname, ':');
    e->region = colon ? (uint32_t)(colon - lname) : 0;
    e->flags = (uint8_t)((mx_sql_int(res, st, i, 2) ? UX_GUEST : 0) |
                         (mx_sql_int(res, st, i, 3) ? UX_DEACT : 0) |
                         (mx_sql_int(res, st, i, 4) ? UX_LOCKED : 0) |
                         (mx_sql_int(res, st, i, 5) ? UX_ADMIN : 0));
    return 0;
}

static void ux_clear(svc_ux_t *x)
{
    for (size_t i = 0; i < x->n; i++)
        free(x->ents[i].name);
    free(x->ents);
    x->ents = NULL;
    x->n = x->cap = 0;
}

static ux_ent_t *ux_find(svc_ux_t *x, const char *name)
{
    ux_ent_t key = { .name = (char *)name };
    return bsearch(&key, x->ents, x->n, sizeof(ux_ent_t), ux_cmp);
}

/* Applies the changed rows of statement `st`: replaces entries whose
 * content differs, merges new ones in order.  *changed is set when
 * anything differed. */
static int ux_apply(svc_ux_t *x, const mx_sql_res_t *res, int st, bool *changed)
{
    int rows = mx_sql_nrows(res, st);
    ux_ent_t *add = rows > 0 ? malloc(sizeof(ux_ent_t) * (size_t)rows) : NULL;
    size_t nadd = 0;
    if (rows > 0 && !add)
        return -ENOMEM;
    for (int i = 0; i < rows; i++) {
        ux_ent_t e;
        if (ux_make(&e, res, st, i) < 0) {
            for (size_t k = 0; k < nadd; k++)
                free(add[k].name);
            free(add);
            return -ENOMEM;
        }
        ux_ent_t *old = ux_find(x, e.name);
        if (!old) {
            add[nadd++] = e;
            continue;
        }
        if (old->flags == e.flags && strcmp(old->dn, e.dn) == 0) {
            free(e.name);
            continue;
        }
        free(old->name);
        *old = e;
        *changed = true;
    }
    if (nadd == 0) {
        free(add);
        return 0;
    }
    *changed = true;
    qsort(add, nadd, sizeof(ux_ent_t), ux_cmp);
    size_t total = x->n + nadd;
    ux_ent_t *m = malloc(sizeof(ux_ent_t) * total);
    if (!m) {
        for (size_t k = 0; k < nadd; k++)
            free(add[k].name);
        free(add);
        return -ENOMEM;
    }
    size_t a = 0, b = 0, o = 0;
    while (a < x->n || b < nadd) {
        if (b == nadd || (a < x->n && strcmp(x->ents[a].name, add[b].name) < 0))
            m[o++] = x->ents[a++];
        else
            m[o++] = add[b++];
    }
    free(x->ents);
    free(add);
    x->ents = m;
    x->n = x->cap = total;
    return 0;
}

/* Reads statement `st` as the whole index. */
static int ux_replace(svc_ux_t *x, const mx_sql_res_t *res, int st)
{
    int rows = mx_sql_nrows(res, st);
    ux_clear(x);
    x->ents = malloc(sizeof(ux_ent_t) * (size_t)(rows > 0 ? rows : 1));
    if (!x->ents)
        return -ENOMEM;
    x->cap = (size_t)(rows > 0 ? rows : 1);
    for (int i = 0; i < rows; i++) {
        if (ux_make(&x->ents[x->n], res, st, i) < 0) {
            ux_clear(x);
            return -ENOMEM;
        }
        x->n++;
    }
    qsort(x->ents, x->n, sizeof(ux_ent_t), ux_cmp);
    return 0;
}

/* ----------------------------------------------------------- refresh --- */

static void ux_start_refresh(svc_ux_t *x);

static void ux_serve(ux_wait_t *w, int status)
{
    while (w) {
        ux_wait_t *nx = w->next;
        if (w->cb)
            w->cb(status, w->ud);
        free(w);
        w = nx;
    }
}

static void ux_refreshed(int status, mx_sql_res_t *res, void *ud)
{
    svc_ux_t *x = ud;
    x->busy = false;
    if (x->dead) {
        ux_clear(x);
        free(x);
        return;
    }
    bool pg = mx_db_is_postgres(hs.db), changed = false, full = x->mark < 0;
    int rc = status;
    if (rc >= 0) {
        /* Statement 0: the next watermark and the number of users; 1:
         * the rows; 2 (first PostgreSQL load): the collation probe. */
        int64_t mark = mx_sql_int(res, 0, 0, 0) + (pg ? 0 : 1);
        rc = full ? ux_replace(x, res, 1) : ux_apply(x, res, 1, &changed);
        if (rc >= 0) {
            if (full && !x->loaded)
                x->bytewise = !pg || mx_sql_int(res, 2, 0, 0) == 1;
            changed = changed || (full && x->loaded);
            x->mark = mark;
            int64_t users = mx_sql_int(res, 0, 0, 1);
            if (full)
                x->skew = users - (int64_t)x->n;
            if ((int64_t)x->n + x->skew != users && !x->reloaded) {
                /* Users were deleted (or the counters disagree): read
                 * everything again before answering. */
                x->mark = -1;
                x->reloaded = true;
                if (changed)
                    svc_users_changed();
                ux_start_refresh(x);
                return;
            }
            x->reloaded = false;
            x->loaded = true;
        }
    }
    if (rc < 0) {
        mx_log("homeserver", MX_LOG_ERROR, "admin: user index refresh failed: %s",
               res ? mx_sql_errmsg(res) : "?");
        x->reloaded = false;
    }
    if (changed)
        svc_users_changed();
    ux_wait_t *w = x->cur;
    x->cur = x->next;
    x->next = NULL;
    if (x->cur)
        ux_start_refresh(x);
    ux_serve(w, rc < 0 ? rc : 0);
}

static void ux_start_refresh(svc_ux_t *x)
{
    bool pg = mx_db_is_postgres(hs.db);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        mx_sql_add(b, pg ? "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,"
                           " (SELECT COALESCE(SUM(n), 0) FROM user_counts)"
                         : "SELECT n, (SELECT COALESCE(SUM(n), 0) FROM user_counts)"
                           " FROM user_dn_clock", "");
        mx_sql_add(b, "SELECT name, dn, is_guest, deactivated, locked, admin FROM user_dn"
                      " WHERE ver >= ?", "i", x->mark < 0 ? INT64_MIN : x->mark);
        /* Byte order of user IDs in SQL (the C collation), so that the
         * index's order is the list's. */
        if (pg && !x->loaded)
            mx_sql_add(b, "SELECT CASE WHEN 'B' < 'a' AND 'a-b' < 'a.b' AND 'a.b' < 'a0'"
                          " AND 'a9' < 'a:' AND 'a:' < 'a=' AND 'aZ' < 'a_' AND 'a_' < 'aa'"
                          " AND 'ab' < 'abc' THEN 1 ELSE 0 END", "");
    }
    x->busy = true;
    if (!b || mx_sql_run(b, ux_refreshed, x) < 0) {
        x->busy = false;
        ux_wait_t *w = x->cur, *w2 = x->next;
        x->cur = x->next = NULL;
        ux_serve(w, MX_EDB);
        ux_serve(w2, MX_EDB);
    }
}

int svc_ux_refresh(svc_ux_ready_fn cb, void *ud)
{
    svc_ux_t *x = svc->ux;
    ux_wait_t *w = malloc(sizeof(*w));
    if (!x || !w) {
        free(w);
        return -ENOMEM;
    }
    w->cb = cb;
    w->ud = ud;
    if (x->busy) {
        w->next = x->next;
        x->next = w;
        return 0;
    }
    w->next = x->cur;
    x->cur = w;
    ux_start_refresh(x);
    return 0;
}

int svc_ux_start(void)
{
    svc_ux_t *x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->mark = -1;
    svc->ux = x;
    /* Read the index now, so that the first filtered list need not. */
    ux_start_refresh(x);
    return 0;
}

void svc_ux_free(svc_ux_t *x)
{
    if (!x)
        return;
    ux_serve(x->cur, -ECANCELED);
    ux_serve(x->next, -ECANCELED);
    x->cur = x->next = NULL;
    if (x->busy) {
        x->dead = true; /* freed by the refresh's callback */
        return;
    }
    ux_clear(x);
    free(x);
}

bool svc_ux_ready(bool by_name)
{
    svc_ux_t *x = svc->ux;
    return x && x->loaded && (!by_name || x->bytewise);
}

/* -------------------------------------------------------------- scan --- */

/* Whether `t` (tl > 0 bytes) occurs in `h` (hl bytes): memchr for its
 * first byte then memcmp, several times faster than memmem's set-up on
 * strings this short. */
bool svc_text_has(const char *h, size_t hl, const char *t, size_t tl)
{
    if (tl > hl)
        return false;
    const char *end = h + hl - tl + 1;
    while (h < end) {
        const char *p = memchr(h, t[0], (size_t)(end - h));
        if (!p)
            return false;
        if (memcmp(p + 1, t + 1, tl - 1) == 0)
            return true;
        h = p + 1;
    }
    return false;
}

int64_t svc_ux_match(const svc_ux_filter_t *f, const char ***names)
{
    svc_ux_t *x = svc->ux;
    *names = NULL;
    if (!x)
        return -ENOMEM;
    /* The flags a user must not have / must have. */
    uint8_t off = (uint8_t)((f->guests == 0 ? UX_GUEST : 0) | (f->deactivated != 1 ? UX_DEACT : 0) |
                            (f->locked != 1 ? UX_LOCKED : 0) | (f->admins == 0 ? UX_ADMIN : 0));
    uint8_t on = f->admins == 1 ? UX_ADMIN : 0;
    const char *raw = f->user_id && *f->user_id ? f->user_id : f->name;
    bool by_id = raw == f->user_id;
    char *term = malloc(strlen(raw) + 1);
    const char **out = malloc(sizeof(char *) * (x->n ? x->n : 1));
    if (!term || !out) {
        free(term);
        free(out);
        return -ENOMEM;
    }
    size_t tl = svc_text_lower(raw, term);
    int64_t k = 0;
    for (size_t i = 0; i < x->n; i++) {
        const ux_ent_t *e = &x->ents[i];
        if ((e->flags & off) || (e->flags & on) != on)
            continue;
        bool hit;
        if (by_id)
            hit = svc_text_has(e->lname, e->llen, term, tl);
        else
            hit = (e->region > 1 && svc_text_has(e->lname + 1, e->region - 1, term, tl)) ||
                  svc_text_has(e->ldn, e->dlen, term, tl);
        if (hit)
            out[k++] = e->name;
    }
    free(term);
    *names = out;
    return k;
}

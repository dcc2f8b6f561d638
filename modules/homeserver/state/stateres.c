/*
 * stateres.c: state resolution v2 and v2.1 over an in-memory auth DAG.
 *
 * The events named by the input state maps and their auth chains are loaded
 * through the caller's fetcher into an array of nodes (index = node number,
 * edges = auth events).  Then, as rooms/v12.md "State resolution" says:
 * split the maps into unconflicted state and conflicted set; add the auth
 * difference (and, v2.1, the conflicted state subgraph) to get the full
 * conflicted set; order its power events (and their auth chains inside the
 * set) by reverse topological power ordering (Kahn's algorithm with the
 * spec's tie-breaks); run the iterative auth checks from the unconflicted
 * state (v2) or from the empty state (v2.1); order the remaining events by
 * their mainline position under the resolved power levels; run the checks
 * again; finally overlay the unconflicted state.
 *
 * Determinism matters more than speed here: every order is total (ties end
 * in a byte-wise event-ID comparison), and no hash-map iteration order leaks
 * into a result.
 */
#include "stateres.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sr_node {
    const char *id;     /* borrowed: from a state map or an auth_events array */
    const json_t *ev;   /* borrowed from the fetcher */
    int rejected;
    size_t *auth;       /* node numbers of the auth events */
    size_t nauth;
    int64_t ts;
    int64_t power;      /* sender's power per its own auth events (X only) */
    /* scratch flags */
    int in_full, in_x, in_d, in_b, conflicted, chain_count;
    size_t mainline_pos; /* SIZE_MAX: never reaches the mainline */
    size_t stamp;
} sr_node_t;

typedef struct sr {
    const hs_room_version_t *rv;
    hs_event_fetch_fn fetch;
    void *ud;
    sr_node_t *n;
    size_t count, cap;
    json_t *index;      /* event ID -> node number */
    char *create_id;    /* v12: "$" + room ID body, implied auth event */
    char *why;
    size_t whylen;
} sr_t;

__attribute__((format(printf, 3, 4)))
static int fail(sr_t *s, int rc, const char *fmt, ...)
{
    if (s->why && s->whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->why, s->whylen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int find(sr_t *s, const char *id, size_t *out)
{
    json_t *v = json_object_get(s->index, id);
    if (!v)
        return 0;
    *out = (size_t)json_integer_value(v);
    return 1;
}

/* Add `id` (fetching it) if unknown; *out gets its node number. */
static int add_node(sr_t *s, const char *id, size_t *out)
{
    if (find(s, id, out))
        return 0;
    int rejected = 0;
    const json_t *ev = s->fetch(s->ud, id, &rejected);
    if (!ev)
        return fail(s, -ENOENT, "event %s is unknown", id);
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        sr_node_t *n = realloc(s->n, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        s->n = n;
        s->cap = cap;
    }
    sr_node_t *nd = &s->n[s->count];
    memset(nd, 0, sizeof(*nd));
    nd->id = id;
    nd->ev = ev;
    nd->rejected = rejected;
    nd->ts = json_integer_value(json_object_get(ev, "origin_server_ts"));
    nd->stamp = (size_t)-1;
    nd->nauth = (size_t)-1; /* auth edges not loaded yet */
    if (json_object_set_new(s->index, id, json_integer((json_int_t)s->count)) != 0)
        return -ENOMEM;
    *out = s->count++;
    return 0;
}

/* Load `id` and, iteratively, its whole auth chain. */
static int load(sr_t *s, const char *id, size_t *out)
{
    size_t first, *stack = NULL, sp = 0, scap = 0;
    int rc = add_node(s, id, &first);
    if (rc)
        return rc;
    if (out)
        *out = first;
    if (s->n[first].nauth != (size_t)-1)
        return 0;
    stack = malloc(sizeof(size_t) * (scap = 64));
    if (!stack)
        return -ENOMEM;
    stack[sp++] = first;
    while (sp) {
        size_t i = stack[--sp];
        if (s->n[i].nauth != (size_t)-1)
            continue;
        const json_t *ae = json_object_get(s->n[i].ev, "auth_events");
        const char *type = hs_ev_type(s->n[i].ev);
        int implied = s->create_id && !(type && strcmp(type, "m.room.create") == 0);
        size_t cnt = json_array_size(ae) + (implied ? 1 : 0);
        size_t *auth = calloc(cnt ? cnt : 1, sizeof(size_t));
        size_t na = 0;
        if (!auth) {
            rc = -ENOMEM;
            break;
        }
        for (size_t k = 0; k < cnt && rc == 0; k++) {
            const char *aid = k < json_array_size(ae) ? hs_ev_ref_id(json_array_get(ae, k))
                                                       : s->create_id;
            size_t j, dup = 0;
            if (!aid)
                continue;
            if ((rc = add_node(s, aid, &j)) != 0)
                break;
            for (size_t m = 0; m < na; m++)
                dup |= auth[m] == j;
            if (dup)
                continue;
            auth[na++] = j;
            if (s->n[j].nauth == (size_t)-1) {
                if (sp == scap) {
                    size_t *ns = realloc(stack, sizeof(size_t) * (scap *= 2));
                    if (!ns) {
                        rc = -ENOMEM;
                        break;
                    }
                    stack = ns;
                }
                stack[sp++] = j;
            }
        }
        /* node array may have moved during add_node */
        s->n[i].auth = auth;
        s->n[i].nauth = na;
        if (rc)
            break;
    }
    free(stack);
    return rc;
}

static const char *node_key_type(const sr_node_t *nd)
{
    return hs_ev_type(nd->ev);
}

static int is_type_sk(const sr_node_t *nd, const char *type, const char *sk)
{
    const char *t = hs_ev_type(nd->ev), *k = hs_ev_state_key(nd->ev);
    return t && k && strcmp(t, type) == 0 && strcmp(k, sk) == 0;
}

/* Power events (spec "Definitions"), plus the create event as Synapse
 * treats it, so a conflicted create is ordered before everything. */
static int is_power_event(const sr_node_t *nd)
{
    const char *t = hs_ev_type(nd->ev), *k = hs_ev_state_key(nd->ev);
    if (!t || !k)
        return 0;
    if (k[0] == '\0' && (strcmp(t, "m.room.power_levels") == 0 ||
                         strcmp(t, "m.room.join_rules") == 0 || strcmp(t, "m.room.create") == 0))
        return 1;
    if (strcmp(t, "m.room.member") == 0) {
        const char *m = hs_ev_membership(nd->ev), *snd = hs_ev_sender(nd->ev);
        return m && (strcmp(m, "leave") == 0 || strcmp(m, "ban") == 0) && snd &&
               strcmp(snd, k) != 0;
    }
    return 0;
}

/* The auth event of node `i` with the given (type, ""), or -1. */
static long auth_of_type(sr_t *s, size_t i, const char *type)
{
    for (size_t k = 0; k < s->n[i].nauth; k++)
        if (is_type_sk(&s->n[s->n[i].auth[k]], type, ""))
            return (long)s->n[i].auth[k];
    return -1;
}

static int64_t sender_power(sr_t *s, size_t i)
{
    long pl = auth_of_type(s, i, "m.room.power_levels");
    long cr = auth_of_type(s, i, "m.room.create");
    return hs_user_power(s->rv, cr >= 0 ? s->n[cr].ev : NULL, pl >= 0 ? s->n[pl].ev : NULL,
                         hs_ev_sender(s->n[i].ev));
}

/* -------------------------------------------------- iterative auth checks */

typedef struct iac_lookup {
    sr_t *s;
    json_t *map;   /* "type\x1fsk" -> node number */
} iac_lookup_t;

static const json_t *iac_lookup(void *ud, const char *type, const char *state_key,
                                const char **event_id)
{
    iac_lookup_t *l = ud;
    char *k = hs_state_key_join(type, state_key);
    json_t *v = k ? json_object_get(l->map, k) : NULL;
    free(k);
    if (event_id)
        *event_id = NULL;
    if (!v)
        return NULL;
    sr_node_t *nd = &l->s->n[json_integer_value(v)];
    if (event_id)
        *event_id = nd->id;
    return nd->ev;
}

static int iterative_auth_checks(sr_t *s, const size_t *order, size_t n, json_t *state)
{
    for (size_t o = 0; o < n; o++) {
        size_t i = order[o];
        sr_node_t *nd = &s->n[i];
        const char *sk = hs_ev_state_key(nd->ev), *type = node_key_type(nd);
        iac_lookup_t l = { .s = s, .map = json_object() };
        if (!l.map)
            return -ENOMEM;
        if (!sk || !type) {
            json_decref(l.map);
            continue;
        }
        /* 1. the event's own auth events, unless rejected */
        for (size_t k = 0; k < nd->nauth; k++) {
            sr_node_t *a = &s->n[nd->auth[k]];
            const char *at = hs_ev_type(a->ev), *ask = hs_ev_state_key(a->ev);
            if (a->rejected || !at || !ask)
                continue;
            char *key = hs_state_key_join(at, ask);
            if (!key || json_object_set_new(l.map, key, json_integer((json_int_t)nd->auth[k]))) {
                free(key);
                json_decref(l.map);
                return -ENOMEM;
            }
            free(key);
        }
        /* 2. overridden by the working state for every key the rules read */
        hs_auth_key_t keys[HS_AUTH_KEYS_MAX];
        size_t nk = hs_auth_types(s->rv, type, hs_ev_sender(nd->ev), sk,
                                  json_object_get(nd->ev, "content"), keys);
        for (size_t k = 0; k < nk; k++) {
            char *key = hs_state_key_join(keys[k].type, keys[k].state_key);
            const char *sid = key ? json_string_value(json_object_get(state, key)) : NULL;
            size_t j = 0;
            if (sid && find(s, sid, &j) && !s->n[j].rejected)
                json_object_set_new(l.map, key, json_integer((json_int_t)j));
            free(key);
        }
        int rc = hs_auth_check(s->rv, nd->ev, iac_lookup, &l, NULL, 0);
        json_decref(l.map);
        if (rc == 0) {
            char *key = hs_state_key_join(type, sk);
            if (!key || json_object_set_new(state, key, json_string(s->n[i].id)) != 0) {
                free(key);
                return -ENOMEM;
            }
            free(key);
        } else if (rc != HS_EAUTH) {
            return rc;
        }
    }
    return 0;
}

/* --------------------------------------------------------------- orderings */

/* x < y in the reverse topological power ordering's tie-break. */
static int power_less(const sr_node_t *x, const sr_node_t *y)
{
    if (x->power != y->power)
        return x->power > y->power;
    if (x->ts != y->ts)
        return x->ts < y->ts;
    return strcmp(x->id, y->id) < 0;
}

/* Kahn's algorithm over X (nodes with in_x), edges = "cites, possibly via
 * events outside X".  `xs` lists X; on return it holds the order. */
static int power_sort(sr_t *s, size_t *xs, size_t nx)
{
    size_t *outdeg = calloc(s->count, sizeof(size_t));
    size_t **rev = calloc(s->count, sizeof(size_t *));
    size_t *nrev = calloc(s->count, sizeof(size_t));
    size_t *stack = malloc(sizeof(size_t) * (s->count + 1));
    size_t *avail = malloc(sizeof(size_t) * (nx + 1));
    size_t *out = malloc(sizeof(size_t) * (nx + 1));
    int rc = -ENOMEM;

    if (!outdeg || !rev || !nrev || !stack || !avail || !out)
        goto done;
    for (size_t q = 0; q < s->count; q++)
        s->n[q].stamp = (size_t)-1;
    /* edges x -> y for y in X reachable from x through non-X nodes; a node
     * is stamped when pushed, so the stack never exceeds s->count. */
    for (size_t a = 0; a < nx; a++) {
        size_t x = xs[a], sp = 0;
        for (size_t k = 0; k < s->n[x].nauth; k++) {
            size_t y = s->n[x].auth[k];
            if (s->n[y].stamp != x) {
                s->n[y].stamp = x;
                stack[sp++] = y;
            }
        }
        while (sp) {
            size_t y = stack[--sp];
            if (s->n[y].in_x) {
                size_t *r = realloc(rev[y], sizeof(size_t) * (nrev[y] + 1));
                if (!r)
                    goto done;
                rev[y] = r;
                rev[y][nrev[y]++] = x;
                outdeg[x]++;
                continue;
            }
            for (size_t k = 0; k < s->n[y].nauth; k++) {
                size_t z = s->n[y].auth[k];
                if (s->n[z].stamp != x) {
                    s->n[z].stamp = x;
                    stack[sp++] = z;
                }
            }
        }
    }
    size_t na = 0, no = 0;
    for (size_t a = 0; a < nx; a++)
        if (outdeg[xs[a]] == 0)
            avail[na++] = xs[a];
    while (na) {
        size_t best = 0;
        for (size_t a = 1; a < na; a++)
            if (power_less(&s->n[avail[a]], &s->n[avail[best]]))
                best = a;
        size_t e = avail[best];
        avail[best] = avail[--na];
        out[no++] = e;
        for (size_t k = 0; k < nrev[e]; k++)
            if (--outdeg[rev[e][k]] == 0)
                avail[na++] = rev[e][k];
    }
    if (no != nx) {
        rc = fail(s, -EINVAL, "auth events form a cycle");
        goto done;
    }
    memcpy(xs, out, sizeof(size_t) * nx);
    rc = 0;
done:
    if (rev)
        for (size_t q = 0; q < s->count; q++)
            free(rev[q]);
    free(rev);
    free(nrev);
    free(outdeg);
    free(stack);
    free(avail);
    free(out);
    return rc;
}

typedef int (*sr_cmp_fn)(const sr_t *s, size_t a, size_t b);

/* Stable merge sort of node numbers with a context (qsort has none, and a
 * file-static context would not be thread-safe). */
static int sr_sort(const sr_t *s, size_t *v, size_t n, sr_cmp_fn cmp)
{
    size_t *tmp;
    if (n < 2)
        return 0;
    if (!(tmp = malloc(sizeof(size_t) * n)))
        return -ENOMEM;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = cmp(s, v[j], v[i]) < 0 ? v[j++] : v[i++];
            while (i < mid)
                tmp[k++] = v[i++];
            while (j < hi)
                tmp[k++] = v[j++];
        }
        memcpy(v, tmp, sizeof(size_t) * n);
    }
    free(tmp);
    return 0;
}

static int mainline_cmp(const sr_t *s, size_t a, size_t b)
{
    const sr_node_t *x = &s->n[a], *y = &s->n[b];
    /* a greater mainline position (older power levels; "never" greatest)
     * sorts first */
    if (x->mainline_pos != y->mainline_pos)
        return x->mainline_pos > y->mainline_pos ? -1 : 1;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return strcmp(x->id, y->id);
}

static int id_cmp(const sr_t *s, size_t a, size_t b)
{
    return strcmp(s->n[a].id, s->n[b].id);
}

static int mainline_sort(sr_t *s, const char *pl_id, size_t *ys, size_t ny)
{
    /* mainline positions: P0 = 0, P1 = 1 ...; reuse `stamp` as position */
    for (size_t q = 0; q < s->count; q++)
        s->n[q].stamp = (size_t)-1;
    size_t p;
    if (pl_id && find(s, pl_id, &p)) {
        size_t pos = 0;
        for (long cur = (long)p; cur >= 0 && s->n[cur].stamp == (size_t)-1;
             cur = auth_of_type(s, (size_t)cur, "m.room.power_levels"))
            s->n[cur].stamp = pos++;
    }
    for (size_t a = 0; a < ny; a++) {
        size_t pos = SIZE_MAX;
        long cur = auth_of_type(s, ys[a], "m.room.power_levels");
        for (size_t guard = 0; cur >= 0 && guard <= s->count; guard++) {
            if (s->n[cur].stamp != (size_t)-1) {
                pos = s->n[cur].stamp;
                break;
            }
            cur = auth_of_type(s, (size_t)cur, "m.room.power_levels");
        }
        s->n[ys[a]].mainline_pos = pos;
    }
    return sr_sort(s, ys, ny, mainline_cmp);
}

/* ------------------------------------------------------------- the algorithm */

static int split(const json_t *const *sets, size_t nsets, json_t *unconflicted,
                 json_t *conflicted_ids)
{
    for (size_t i = 0; i < nsets; i++) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)sets[i], k, v) {
            if (json_object_get(unconflicted, k))
                continue;
            int same = 1;
            for (size_t j = 0; j < nsets && same; j++) {
                json_t *w = json_object_get(sets[j], k);
                same = w && json_equal(w, v);
            }
            if (same) {
                if (json_object_set(unconflicted, k, v) != 0)
                    return -ENOMEM;
                continue;
            }
            for (size_t j = 0; j < nsets; j++) {
                const char *id = json_string_value(json_object_get(sets[j], k));
                if (id && json_object_set_new(conflicted_ids, id, json_true()) != 0)
                    return -ENOMEM;
            }
        }
    }
    return 0;
}

static int resolve(sr_t *s, const json_t *const *sets, size_t nsets, json_t **out)
{
    json_t *unconflicted = json_object(), *conflicted_ids = json_object(), *state = NULL;
    size_t *list = NULL, *stack = NULL;
    int rc;

    if (!unconflicted || !conflicted_ids) {
        rc = -ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < nsets; i++)
        if (!json_is_object(sets[i])) {
            rc = fail(s, -EINVAL, "state set %zu is not an object", i);
            goto done;
        }
    if ((rc = split(sets, nsets, unconflicted, conflicted_ids)) != 0)
        goto done;
    if (json_object_size(conflicted_ids) == 0) {
        *out = json_incref(unconflicted);
        goto done;
    }

    /* Load every event of every set with its auth chain. */
    for (size_t i = 0; i < nsets; i++) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)sets[i], k, v) {
            const char *id = json_string_value(v);
            if (!id) {
                rc = fail(s, -EINVAL, "state set %zu: %s is not an event ID", i, k);
                goto done;
            }
            if ((rc = load(s, id, NULL)) != 0)
                goto done;
        }
    }
    const char *cid;
    json_t *tv;
    json_object_foreach(conflicted_ids, cid, tv) {
        size_t j = 0;
        if (!find(s, cid, &j))
            continue; /* cannot happen: every set member was loaded */
        s->n[j].conflicted = 1;
        s->n[j].in_full = 1;
    }

    stack = malloc(sizeof(size_t) * (s->count + 1));
    list = malloc(sizeof(size_t) * (s->count + 1));
    if (!stack || !list) {
        rc = -ENOMEM;
        goto done;
    }

    /* Auth difference: in some but not all of the sets' auth chains. */
    for (size_t q = 0; q < s->count; q++)
        s->n[q].stamp = (size_t)-1;
    for (size_t i = 0; i < nsets; i++) {
        const char *k;
        json_t *v;
        size_t sp = 0;
        json_object_foreach((json_t *)sets[i], k, v) {
            size_t j = 0;
            if (!find(s, json_string_value(v), &j))
                continue;
            for (size_t a = 0; a < s->n[j].nauth; a++)
                if (s->n[s->n[j].auth[a]].stamp != i) {
                    s->n[s->n[j].auth[a]].stamp = i;
                    stack[sp++] = s->n[j].auth[a];
                }
            while (sp) {
                size_t y = stack[--sp];
                s->n[y].chain_count++;
                for (size_t a = 0; a < s->n[y].nauth; a++)
                    if (s->n[s->n[y].auth[a]].stamp != i) {
                        s->n[s->n[y].auth[a]].stamp = i;
                        stack[sp++] = s->n[y].auth[a];
                    }
            }
        }
    }
    for (size_t q = 0; q < s->count; q++)
        if (s->n[q].chain_count > 0 && (size_t)s->n[q].chain_count < nsets)
            s->n[q].in_full = 1;

    /* v2.1: the conflicted state subgraph — events on auth paths between
     * conflicted events: reachable from one (D) and reaching one (B). */
    if (s->rv->stateres == HS_STATERES_V21) {
        size_t sp = 0;
        for (size_t q = 0; q < s->count; q++)
            if (s->n[q].conflicted) {
                s->n[q].in_d = 1;
                stack[sp++] = q;
            }
        while (sp) {
            size_t y = stack[--sp];
            for (size_t a = 0; a < s->n[y].nauth; a++)
                if (!s->n[s->n[y].auth[a]].in_d) {
                    s->n[s->n[y].auth[a]].in_d = 1;
                    stack[sp++] = s->n[y].auth[a];
                }
        }
        /* B within D: fixed point of "cites a node already in B". */
        for (size_t q = 0; q < s->count; q++)
            s->n[q].in_b = s->n[q].conflicted;
        for (int changed = 1; changed;) {
            changed = 0;
            for (size_t q = 0; q < s->count; q++) {
                if (s->n[q].in_b || !s->n[q].in_d)
                    continue;
                for (size_t a = 0; a < s->n[q].nauth; a++)
                    if (s->n[s->n[q].auth[a]].in_b) {
                        s->n[q].in_b = changed = 1;
                        break;
                    }
            }
        }
        for (size_t q = 0; q < s->count; q++)
            if (s->n[q].in_d && s->n[q].in_b)
                s->n[q].in_full = 1;
    }

    /* X: power events of the full set plus their auth chains inside it. */
    for (size_t q = 0; q < s->count; q++)
        s->n[q].stamp = (size_t)-1;
    for (size_t q = 0; q < s->count; q++) {
        if (!s->n[q].in_full || !is_power_event(&s->n[q]))
            continue;
        size_t sp = 0;
        s->n[q].in_x = 1;
        stack[sp++] = q;
        s->n[q].stamp = q;
        while (sp) {
            size_t y = stack[--sp];
            for (size_t a = 0; a < s->n[y].nauth; a++) {
                size_t z = s->n[y].auth[a];
                if (s->n[z].stamp == q)
                    continue;
                s->n[z].stamp = q;
                if (s->n[z].in_full)
                    s->n[z].in_x = 1;
                stack[sp++] = z;
            }
        }
    }
    size_t nx = 0, ny = 0;
    for (size_t q = 0; q < s->count; q++)
        if (s->n[q].in_x) {
            s->n[q].power = sender_power(s, q);
            list[nx++] = q;
        }
    if ((rc = power_sort(s, list, nx)) != 0)
        goto done;

    state = s->rv->stateres == HS_STATERES_V21 ? json_object() : json_copy(unconflicted);
    if (!state) {
        rc = -ENOMEM;
        goto done;
    }
    if ((rc = iterative_auth_checks(s, list, nx, state)) != 0)
        goto done;

    /* Y: the rest of the full conflicted set, in mainline order.  Start
     * from event-ID order so nothing depends on node numbering. */
    for (size_t q = 0; q < s->count; q++)
        if (s->n[q].in_full && !s->n[q].in_x)
            list[ny++] = q;
    if ((rc = sr_sort(s, list, ny, id_cmp)) != 0 ||
        (rc = mainline_sort(s, json_string_value(json_object_get(state, "m.room.power_levels\x1f")),
                            list, ny)) != 0 ||
        (rc = iterative_auth_checks(s, list, ny, state)) != 0)
        goto done;

    if (json_object_update(state, unconflicted) != 0) {
        rc = -ENOMEM;
        goto done;
    }
    *out = json_incref(state);
done:
    json_decref(state);
    json_decref(unconflicted);
    json_decref(conflicted_ids);
    free(list);
    free(stack);
    return rc;
}

int hs_stateres(const hs_room_version_t *rv, const json_t *const *sets, size_t nsets,
                hs_event_fetch_fn fetch, void *ud, json_t **out, char *why, size_t whylen)
{
    sr_t s = { .rv = rv, .fetch = fetch, .ud = ud, .why = why, .whylen = whylen };
    int rc;

    if (why && whylen)
        why[0] = '\0';
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!rv || !fetch || (!sets && nsets))
        return -EINVAL;
    if (!rv->supported)
        return -ENOTSUP;
    if (rv->stateres == HS_STATERES_V1)
        return hs_stateres_v1(rv, sets, nsets, fetch, ud, out, why, whylen);
    if (nsets == 0) {
        *out = json_object();
        return *out ? 0 : -ENOMEM;
    }
    if (!(s.index = json_object()))
        return -ENOMEM;
    if (rv->room_id_is_create_hash) {
        /* The room ID is the create event's ID with another sigil; find it
         * from any event of the first set. */
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)sets[0], k, v) {
            int rej;
            const json_t *ev = json_string_value(v) ? fetch(ud, json_string_value(v), &rej) : NULL;
            const char *rid = hs_ev_str(ev, "room_id");
            if (rid && rid[0] == '!') {
                s.create_id = strdup(rid);
                if (s.create_id)
                    s.create_id[0] = '$';
                break;
            }
        }
    }
    rc = resolve(&s, sets, nsets, out);
    for (size_t i = 0; i < s.count; i++)
        if (s.n[i].nauth != (size_t)-1)
            free(s.n[i].auth);
    free(s.n);
    free(s.create_id);
    json_decref(s.index);
    return rc;
}

/*
 * notifier.c: wakes long-polling /sync requests.  hs_notify_users and
 * hs_notify_room look the key ("u"+user or "r"+room) up in one map whose
 * values are lists of subscriptions; each subscription points at its
 * waiter.  A woken waiter is unsubscribed at once and its callback runs on
 * the next loop turn (its timer restarted with 0 ms), so one request that
 * writes many events wakes each waiter once, and the callback never runs
 * inside the writer's code.
 */
#include "sync.h"

#include <stdlib.h>
#include <string.h>

typedef struct nt_sub {
    struct nt_sub *prev, *next;
    struct hs_waiter *w;
    char *key;           /* owned */
} nt_sub_t;

struct hs_waiter {
    uv_timer_t timer;
    hs_wake_fn fn;
    void *ud;
    int woken;
    int fired;
    nt_sub_t *subs;      /* array */
    size_t nsubs;
};

typedef struct nt_state {
    rm_map_t *subs;      /* key -> nt_sub_t * (list head) */
    size_t nwaiters;
} nt_state_t;

static nt_state_t *nt;

int hs_notifier_start(void)
{
    if (nt)
        return 0;
    nt = calloc(1, sizeof(*nt));
    if (!nt || !(nt->subs = rm_map_new())) {
        free(nt);
        nt = NULL;
        return -ENOMEM;
    }
    return 0;
}

void hs_notifier_stop(void)
{
    if (!nt)
        return;
    rm_map_free(nt->subs);
    free(nt);
    nt = NULL;
}

static void nt_unsubscribe(hs_waiter_t *w)
{
    for (size_t i = 0; i < w->nsubs; i++) {
        nt_sub_t *s = &w->subs[i];
        if (!s->key)
            continue;
        if (s->prev)
            s->prev->next = s->next;
        else if (nt) {
            if (s->next)
                rm_map_put(nt->subs, s->key, s->next);
            else
                rm_map_del(nt->subs, s->key);
        }
        if (s->next)
            s->next->prev = s->prev;
        free(s->key);
        s->key = NULL;
    }
}

static void nt_fire(uv_timer_t *t)
{
    hs_waiter_t *w = t->data;
    if (w->fired)
        return;
    w->fired = 1;
    nt_unsubscribe(w);
    w->fn(w, w->woken, w->ud);
}

static int nt_subscribe(hs_waiter_t *w, size_t i, char kind, const char *id)
{
    size_t l = strlen(id);
    nt_sub_t *s = &w->subs[i];
    s->w = w;
    s->key = malloc(l + 2);
    if (!s->key)
        return -ENOMEM;
    s->key[0] = kind;
    memcpy(s->key + 1, id, l + 1);
    nt_sub_t *head = rm_map_get(nt->subs, s->key);
    s->prev = NULL;
    s->next = head;
    if (head)
        head->prev = s;
    if (rm_map_put(nt->subs, s->key, s) < 0) {
        if (head)
            head->prev = NULL;
        free(s->key);
        s->key = NULL;
        return -ENOMEM;
    }
    return 0;
}

hs_waiter_t *hs_waiter_add(const char *user_id, const json_t *room_ids, uint64_t timeout_ms,
                           hs_wake_fn fn, void *ud)
{
    if (!nt && hs_notifier_start() < 0)
        return NULL;
    size_t nr = json_array_size(room_ids);
    hs_waiter_t *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->subs = calloc(nr + 1, sizeof(nt_sub_t));
    if (!w->subs) {
        free(w);
        return NULL;
    }
    w->nsubs = nr + 1;
    w->fn = fn;
    w->ud = ud;
    uv_timer_init(mx_loop(), &w->timer);
    w->timer.data = w;
    nt_subscribe(w, 0, 'u', user_id);
    for (size_t i = 0; i < nr; i++) {
        const char *r = json_string_value(json_array_get(room_ids, i));
        if (r)
            nt_subscribe(w, i + 1, 'r', r);
    }
    uv_timer_start(&w->timer, nt_fire, timeout_ms, 0);
    nt->nwaiters++;
    return w;
}

static void nt_closed(uv_handle_t *h)
{
    hs_waiter_t *w = h->data;
    free(w->subs);
    free(w);
}

void hs_waiter_free(hs_waiter_t *w)
{
    if (!w)
        return;
    nt_unsubscribe(w);
    w->fired = 1;
    uv_timer_stop(&w->timer);
    if (nt && nt->nwaiters)
        nt->nwaiters--;
    uv_close((uv_handle_t *)&w->timer, nt_closed);
}

size_t hs_waiter_count(void)
{
    return nt ? nt->nwaiters : 0;
}

/* Wakes every waiter subscribed to `key`. */
static void nt_wake_key(const char *key)
{
    nt_sub_t *s;
    /* Each wake unsubscribes the waiter, which removes `s` from this list,
     * so always take the current head. */
    while (nt && (s = rm_map_get(nt->subs, key)) != NULL) {
        hs_waiter_t *w = s->w;
        nt_unsubscribe(w);
        if (!w->fired && !w->woken) {
            w->woken = 1;
            uv_timer_stop(&w->timer);
            uv_timer_start(&w->timer, nt_fire, 0, 0);
        }
    }
}

static void nt_wake(char kind, const char *id)
{
    char buf[512];
    size_t l = strlen(id);
    if (!nt || l + 2 > sizeof(buf))
        return;
    buf[0] = kind;
    memcpy(buf + 1, id, l + 1);
    nt_wake_key(buf);
}

void hs_notify_users(const char *const *user_ids, size_t n, hs_stream_t s)
{
    (void)s;
    for (size_t i = 0; i < n; i++)
        if (user_ids[i])
            nt_wake('u', user_ids[i]);
}

void hs_notify_room(const char *room_id, hs_stream_t s)
{
    (void)s;
    if (room_id)
        nt_wake('r', room_id);
}

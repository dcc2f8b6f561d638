/*
 * bus.c: publish/subscribe by topic inside the process.
 *
 * The bus carries "something changed" notices (stream positions, cache
 * invalidations, typing) and never the only copy of data.  Delivery to local
 * subscribers is synchronous, in subscription order; a subscriber must not
 * publish re-entrantly on the same topic.  A transport (the pubsub module,
 * later) can forward to other processes; the hook is `mx__bus_set_transport`
 * when that module is built.
 *
 * A topic ending in ".*" subscribes to every topic with that prefix.
 */
#include "core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct sub {
    struct sub *next;
    char *topic;
    size_t prefix_len;      /* > 0 for "prefix.*" subscriptions */
    mx_bus_fn fn;
    void *ud;
} sub_t;

struct mx_bus_state {
    sub_t *subs;
    sub_t **tail;
};

int mx__bus_init(void)
{
    if (!mx__ctx || mx__ctx->bus)
        return -EINVAL;
    struct mx_bus_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->tail = &st->subs;
    mx__ctx->bus = st;
    return 0;
}

void mx__bus_fini(void)
{
    if (!mx__ctx || !mx__ctx->bus)
        return;
    sub_t *s = mx__ctx->bus->subs;
    while (s) {
        sub_t *next = s->next;
        free(s->topic);
        free(s);
        s = next;
    }
    free(mx__ctx->bus);
    mx__ctx->bus = NULL;
}

int mx_bus_subscribe(const char *topic, mx_bus_fn fn, void *ud)
{
    if (!mx__ctx || !mx__ctx->bus || !topic || !fn)
        return -EINVAL;
    sub_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->topic = strdup(topic))) {
        free(s);
        return -ENOMEM;
    }
    size_t n = strlen(topic);
    if (n >= 2 && strcmp(topic + n - 2, ".*") == 0)
        s->prefix_len = n - 1;   /* keep the dot */
    s->fn = fn;
    s->ud = ud;
    *mx__ctx->bus->tail = s;
    mx__ctx->bus->tail = &s->next;
    return 0;
}

int mx_bus_publish(const char *topic, const json_t *msg)
{
    if (!mx__ctx || !mx__ctx->bus || !topic)
        return -EINVAL;
    for (sub_t *s = mx__ctx->bus->subs; s; s = s->next) {
        bool match = s->prefix_len ? strncmp(topic, s->topic, s->prefix_len) == 0
                                   : strcmp(topic, s->topic) == 0;
        if (match)
            s->fn(topic, msg, s->ud);
    }
    return 0;
}

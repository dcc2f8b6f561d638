/*
 * streams.c: the stream positions every synced thing is written with
 * (hs.h "streams"), and the sync token that is their vector.
 *
 * Per stream the loop keeps the highest allocated position and the sorted
 * list of positions handed out but not yet persisted.  The current
 * position is the highest one below which everything is persisted, so a
 * /sync reading up to it never skips a write that commits late.  The state
 * is static storage because parts call hs_stream_init before the sync part
 * starts (it is loop-only like everything else).
 */
#include "sync.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_stream {
    int64_t max_alloc;
    int64_t *pending;   /* sorted ascending, malloc'd */
    size_t npending, cap;
} st_stream_t;

static st_stream_t st_streams[HS_STREAM_COUNT];

void hs_stream_init(hs_stream_t s, int64_t max_persisted)
{
    if ((unsigned)s >= HS_STREAM_COUNT)
        return;
    st_stream_t *st = &st_streams[s];
    if (max_persisted > st->max_alloc)
        st->max_alloc = max_persisted;
}

int64_t hs_stream_next(hs_stream_t s)
{
    if ((unsigned)s >= HS_STREAM_COUNT)
        return -EINVAL;
    st_stream_t *st = &st_streams[s];
    if (st->npending == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 16;
        int64_t *p = realloc(st->pending, cap * sizeof(*p));
        if (!p)
            return ++st->max_alloc; /* untracked: readers may see it early */
        st->pending = p;
        st->cap = cap;
    }
    int64_t pos = ++st->max_alloc;
    st->pending[st->npending++] = pos; /* allocation order keeps it sorted */
    return pos;
}

void hs_stream_persisted(hs_stream_t s, int64_t pos)
{
    if ((unsigned)s >= HS_STREAM_COUNT)
        return;
    st_stream_t *st = &st_streams[s];
    for (size_t i = 0; i < st->npending; i++)
        if (st->pending[i] == pos) {
            memmove(&st->pending[i], &st->pending[i + 1],
                    (st->npending - i - 1) * sizeof(int64_t));
            st->npending--;
            return;
        }
}

int64_t hs_stream_current(hs_stream_t s)
{
    if ((unsigned)s >= HS_STREAM_COUNT)
        return 0;
    const st_stream_t *st = &st_streams[s];
    return st->npending ? st->pending[0] - 1 : st->max_alloc;
}

int hs_sync_token_parse(const char *tok, int64_t pos[HS_STREAM_COUNT])
{
    memset(pos, 0, sizeof(int64_t) * HS_STREAM_COUNT);
    if (!tok || tok[0] != 's')
        return -EINVAL;
    const char *p = tok + 1;
    for (int i = 0; i < HS_STREAM_COUNT; i++) {
        char *end;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        long long v = strtoll(p, &end, 10);
        if (v < 0)
            return -EINVAL;
        pos[i] = v;
        p = end;
        if (*p == '\0')
            return 0;
        if (*p != '_')
            return -EINVAL;
        p++;
    }
    return *p ? -EINVAL : 0;
}

char *hs_sync_token_make(mx_pool_t *pool, const int64_t pos[HS_STREAM_COUNT])
{
    char buf[HS_STREAM_COUNT * 21 + 2];
    size_t o = 0;
    buf[o++] = 's';
    for (int i = 0; i < HS_STREAM_COUNT; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%" PRId64, i ? "_" : "", pos[i]);
    return mx_pstrdup(pool, buf);
}

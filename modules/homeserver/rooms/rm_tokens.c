/*
 * rm_tokens.c: /messages pagination tokens ("t<P>" = the point after stream
 * position P; a /sync token "s<P>_..." is accepted too).  Kept apart from
 * rm_main.c so unit tests can link it alone.
 */
#include "rooms.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

int rm_parse_token(const char *tok, int64_t *pos)
{
    if (!tok || (tok[0] != 't' && tok[0] != 's'))
        return -EINVAL;
    char *end;
    if (tok[1] < '0' || tok[1] > '9')
        return -EINVAL;
    long long v = strtoll(tok + 1, &end, 10);
    if (tok[0] == 't' && *end)
        return -EINVAL;
    if (tok[0] == 's' && *end && *end != '_')
        return -EINVAL;
    *pos = v;
    return 0;
}

char *rm_make_token(mx_pool_t *pool, int64_t pos)
{
    return mx_psprintf(pool, "t%" PRId64, pos < 0 ? (int64_t)0 : pos);
}

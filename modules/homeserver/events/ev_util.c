/*
 * ev_util.c: small helpers shared by the event library — typed accessors
 * for PDU fields, user-ID checks, the flat "type\x1fstate_key" key format,
 * a ready-made state lookup over a JSON object, prev/auth event references
 * in both formats (v1/v2 pairs, v3+ IDs) and power-level values in the
 * forms old room versions allow (rooms/fragments/v1-stringy-power-levels.md,
 * v1-floaty-power-levels.md).
 */
#include "events.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *hs_ev_str(const json_t *ev, const char *key)
{
    return json_string_value(json_object_get(ev, key));
}

const char *hs_ev_type(const json_t *ev)
{
    return hs_ev_str(ev, "type");
}

const char *hs_ev_sender(const json_t *ev)
{
    return hs_ev_str(ev, "sender");
}

const char *hs_ev_state_key(const json_t *ev)
{
    return hs_ev_str(ev, "state_key");
}

const char *hs_ev_membership(const json_t *ev)
{
    return json_string_value(json_object_get(json_object_get(ev, "content"), "membership"));
}

const char *hs_user_domain(const char *user_id)
{
    const char *c = user_id ? strchr(user_id, ':') : NULL;
    return c ? c + 1 : NULL;
}

/* Server name grammar (appendices): hostname / IPv4 / [IPv6], optional
 * :port.  We check the character set and that it is non-empty; the exact
 * grammar is enforced where IDs are minted. */
static int server_name_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
            return 0;
    }
    return 1;
}

int hs_user_id_valid(const char *s)
{
    /* Historical localparts (any code point except ':' and NUL) must be
     * accepted over federation, so only the shape and length are checked. */
    if (!s || s[0] != '@' || strlen(s) > 255)
        return 0;
    const char *dom = strchr(s, ':');
    return dom && server_name_ok(dom + 1);
}

char *hs_state_key_join(const char *type, const char *state_key)
{
    size_t a = strlen(type), b = strlen(state_key);
    char *k = malloc(a + b + 2);
    if (!k)
        return NULL;
    memcpy(k, type, a);
    k[a] = HS_STATE_KEY_SEP;
    memcpy(k + a + 1, state_key, b + 1);
    return k;
}

const json_t *hs_state_lookup_json(void *ud, const char *type, const char *state_key,
                                   const char **event_id)
{
    char *k = hs_state_key_join(type, state_key);
    const json_t *ev = k ? json_object_get((const json_t *)ud, k) : NULL;
    free(k);
    if (event_id)
        *event_id = NULL;
    return ev;
}

const char *hs_ev_ref_id(const json_t *entry)
{
    if (json_is_array(entry))
        return json_string_value(json_array_get(entry, 0));
    return json_string_value(entry);
}

json_t *hs_ev_ref_new(const hs_room_version_t *rv, const char *id, const json_t *ev)
{
    if (!rv || !id)
        return NULL;
    if (rv->event_format != HS_EVFMT_V1)
        return json_string(id);
    json_t *h = json_object();
    const json_t *sha = json_object_get(json_object_get(ev, "hashes"), "sha256");
    if (h && json_is_string(sha))
        json_object_set(h, "sha256", (json_t *)sha);
    return h ? json_pack("[s,o]", id, h) : NULL;
}

/* " +0050 " -> 50: optional whitespace, one optional sign, base-10 digits,
 * optional whitespace (the stringy power-level grammar). */
static int parse_pl_string(const char *s, int64_t *out)
{
    int neg = 0, digits = 0;
    int64_t v = 0;

    while (isspace((unsigned char)*s))
        s++;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        if (v > (INT64_MAX - (*s - '0')) / 10)
            return -EINVAL;
        v = v * 10 + (*s - '0');
    }
    while (isspace((unsigned char)*s))
        s++;
    if (!digits || *s)
        return -EINVAL;
    *out = neg ? -v : v;
    return 0;
}

int hs_pl_value(const hs_room_version_t *rv, const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (rv && rv->int_power_levels)
        return -EINVAL;
    if (json_is_string(v))
        return parse_pl_string(json_string_value(v), out);
    if (json_is_real(v) && !(rv && rv->strict_canonical_json)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d >= 9.2e18 || d <= -9.2e18)
            return -EINVAL;
        *out = (int64_t)d; /* C conversion truncates toward zero */
        return 0;
    }
    return -EINVAL;
}

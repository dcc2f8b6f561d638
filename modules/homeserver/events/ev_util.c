/*
 * ev_util.c: small helpers shared by the event library — typed accessors
 * for PDU fields, user-ID checks, the flat "type\x1fstate_key" key format
 * and a ready-made state lookup over a JSON object.
 */
#include "events.h"

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

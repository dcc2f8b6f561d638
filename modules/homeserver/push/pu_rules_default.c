/*
 * pu_rules_default.c: the server-default push rules, in the spec's order
 * ("Predefined Rules", client-server API push module), as one JSON text
 * parsed once at start.
 *
 * The legacy body-mention rules (.m.rule.contains_display_name,
 * .m.rule.roomnotif, .m.rule.contains_user_name) left the spec in v1.17 but
 * clients and sytest still rely on them; like Synapse we keep them, marked
 * "_legacy" so that they only apply to events without m.mentions (what the
 * spec said from v1.7 until their removal).  Placeholders for the owner's
 * Matrix ID and localpart are resolved per user (pu_ruleset.c, pu_eval.c).
 */
#include "push.h"

#define SOUND_DEFAULT "{\"set_tweak\":\"sound\",\"value\":\"default\"}"
#define HIGHLIGHT "{\"set_tweak\":\"highlight\"}"
#define MATCH(k, p) "{\"kind\":\"event_match\",\"key\":\"" k "\",\"pattern\":\"" p "\"}"

static const char pu_default_json[] =
    "{\"override\":["
    /* .m.rule.master: above every user rule, disabled by default. */
    "{\"rule_id\":\".m.rule.master\",\"default\":true,\"enabled\":false,"
    " \"conditions\":[],\"actions\":[],\"_prepend\":true},"
    "{\"rule_id\":\".m.rule.suppress_notices\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[" MATCH("content.msgtype", "m.notice") "],\"actions\":[]},"
    "{\"rule_id\":\".m.rule.invite_for_me\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[" MATCH("type", "m.room.member") "," MATCH("content.membership", "invite") ","
    "  {\"kind\":\"event_match\",\"key\":\"state_key\",\"pattern_type\":\"user_id\"}],"
    " \"actions\":[\"notify\"," SOUND_DEFAULT "]},"
    "{\"rule_id\":\".m.rule.member_event\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[" MATCH("type", "m.room.member") "],\"actions\":[]},"
    "{\"rule_id\":\".m.rule.is_user_mention\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[{\"kind\":\"event_property_contains\","
    "  \"key\":\"content.m\\\\.mentions.user_ids\",\"value_type\":\"user_id\"}],"
    " \"actions\":[\"notify\"," SOUND_DEFAULT "," HIGHLIGHT "]},"
    "{\"rule_id\":\".m.rule.contains_display_name\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[{\"kind\":\"contains_display_name\"}],"
    " \"actions\":[\"notify\"," SOUND_DEFAULT "," HIGHLIGHT "],\"_legacy\":true},"
    "{\"rule_id\":\".m.rule.is_room_mention\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[{\"kind\":\"event_property_is\",\"key\":\"content.m\\\\.mentions.room\","
    "  \"value\":true},{\"kind\":\"sender_notification_permission\",\"key\":\"room\"}],"
    " \"actions\":[\"notify\"," HIGHLIGHT "]},"
    "{\"rule_id\":\".m.rule.roomnotif\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[" MATCH("content.body", "@room") ","
    "  {\"kind\":\"sender_notification_permission\",\"key\":\"room\"}],"
    " \"actions\":[\"notify\"," HIGHLIGHT "],\"_legacy\":true},"
    "{\"rule_id\":\".m.rule.tombstone\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[" MATCH("type", "m.room.tombstone") "," MATCH("state_key", "") "],"
    " \"actions\":[\"notify\"," HIGHLIGHT "]},"
    "{\"rule_id\":\".m.rule.reaction\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[" MATCH("type", "m.reaction") "],\"actions\":[]},"
    "{\"rule_id\":\".m.rule.room.server_acl\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[" MATCH("type", "m.room.server_acl") "," MATCH("state_key", "") "],"
    " \"actions\":[]},"
    "{\"rule_id\":\".m.rule.suppress_edits\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[{\"kind\":\"event_property_is\","
    "  \"key\":\"content.m\\\\.relates_to.rel_type\",\"value\":\"m.replace\"}],"
    " \"actions\":[]}"
    "],"
    "\"content\":["
    "{\"rule_id\":\".m.rule.contains_user_name\",\"default\":true,\"enabled\":true,"
    " \"pattern_type\":\"user_localpart\","
    " \"actions\":[\"notify\"," SOUND_DEFAULT "," HIGHLIGHT "],\"_legacy\":true}"
    "],"
    "\"underride\":["
    "{\"rule_id\":\".m.rule.call\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[" MATCH("type", "m.call.invite") "],"
    " \"actions\":[\"notify\",{\"set_tweak\":\"sound\",\"value\":\"ring\"}]},"
    "{\"rule_id\":\".m.rule.encrypted_room_one_to_one\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[{\"kind\":\"room_member_count\",\"is\":\"2\"},"
    MATCH("type", "m.room.encrypted") "],"
    " \"actions\":[\"notify\"," SOUND_DEFAULT "]},"
    "{\"rule_id\":\".m.rule.room_one_to_one\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[{\"kind\":\"room_member_count\",\"is\":\"2\"},"
    MATCH("type", "m.room.message") "],"
    " \"actions\":[\"notify\"," SOUND_DEFAULT "]},"
    "{\"rule_id\":\".m.rule.message\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[" MATCH("type", "m.room.message") "],\"actions\":[\"notify\"]},"
    "{\"rule_id\":\".m.rule.encrypted\",\"default\":true,\"enabled\":true,"
    " \"conditions\":[" MATCH("type", "m.room.encrypted") "],\"actions\":[\"notify\"]}"
    "]}";

json_t *pu_default_rules(void)
{
    return json_loads(pu_default_json, 0, NULL);
}

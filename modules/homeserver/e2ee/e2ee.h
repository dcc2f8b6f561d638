/*
 * e2ee.h: the end-to-end encryption part of the homeserver (schema
 * "homeserver.e2ee"): device keys, one-time and fallback keys, cross-signing
 * keys and signatures, the device-list stream, to-device messages, server-side
 * key backup and dehydrated devices (MSC3814).  See README.md for the tables.
 *
 * hs_e2ee_start() is the only function other parts call; everything else is
 * shared by the files of this folder.  All of it runs on the loop thread.
 */
#ifndef HS_E2EE_H
#define HS_E2EE_H

#include "../hs.h"

#include <stdbool.h>
#include <stdint.h>

/* Runs the migrations, restores the stream positions, registers the routes,
 * the sync provider and the accounts hooks.  0 or a negative code (err
 * filled). */
int hs_e2ee_start(char *err, size_t errlen);

/* ------------------------------------------------------------- requests --- */

/* The requester, copied into the request's pool (the hs_authed_fn argument
 * does not outlive its call). */
typedef struct e2_who {
    const char *user_id;
    const char *device_id;     /* may be NULL */
    int64_t token_id;
} e2_who_t;
e2_who_t *e2_who_copy(mx_req_t *req, const hs_user_t *who);

/* Route variants for e2_route. */
#define E2_V3 0x1              /* /_matrix/client/v3<tail> */
#define E2_R0 0x2              /* /_matrix/client/r0<tail> */
#define E2_UNSTABLE 0x4        /* /_matrix/client/unstable<tail> */
#define E2_ALL (E2_V3 | E2_R0 | E2_UNSTABLE)
int e2_route(const char *method, const char *tail, mx_handler_fn fn, unsigned flags,
             unsigned variants);

/* The body of a MX_ROUTE_JSON_BODY request as an object, or NULL after
 * replying 400 M_NOT_JSON. */
json_t *e2_body(mx_req_t *req);

/* True when `user_id` belongs to this server. */
bool e2_is_local(const char *user_id);
/* The server name part of a user ID (pointer into user_id) or NULL. */
const char *e2_server_of(const char *user_id);

/* JSON text of `v` (compact, keys sorted); malloc'd, free() it. */
char *e2_dump(const json_t *v);
/* Parses stored JSON text; new reference or NULL. */
json_t *e2_load(const char *s);

/* ------------------------------------------------------------ signatures ---
 * The only ed25519 key ("ed25519:<id>" -> base64) of a cross-signing key
 * object's `keys`, or NULL when there is not exactly one.  *key_id gets the
 * "ed25519:<id>" name (borrowed from `key`). */
const char *e2_cs_pubkey(const json_t *key, const char **key_id);
/* Verifies signatures[signer][key_id] of `obj` with `pk_b64`.  true when
 * valid. */
bool e2_verify(const json_t *obj, const char *signer, const char *key_id, const char *pk_b64);

/* ------------------------------------------------------- device lists ---
 * A change of `user_id`'s devices or keys.  Adds the stream row to `b` and
 * returns its position (> 0) or a negative code.  `only_for` (may be NULL)
 * limits who sees the change (user-signing keys and signatures of other
 * users' keys are private to the signer).  After the batch ran, call
 * e2_dl_written() with the same position exactly once. */
int64_t e2_dl_add(mx_sql_batch_t *b, const char *user_id, const char *only_for);
/* Marks `pos` persisted and, when `ok`, wakes the /sync of `user_id` (or
 * of `only_for` when set) and of everyone sharing a room with them. */
void e2_dl_written(const char *user_id, const char *only_for, int64_t pos, bool ok);

/* Adds to `b` the statements of device-list changes between two stream
 * vectors for `user_id` (stmts: changed, joined-with, left) and reads them
 * back; used by /sync and /keys/changes.  Returns the number of statements
 * added (3). */
int e2_dl_query(mx_sql_batch_t *b, const char *user_id, const int64_t *from,
                const int64_t *to);
/* Builds {changed, left} from the three statements starting at `st`.  New
 * reference. */
json_t *e2_dl_result(const mx_sql_res_t *res, int st, const char *user_id);

/* ------------------------------------------------------------ key upload ---
 * The shared core of POST /keys/upload and PUT dehydrated_device: checks and
 * stores device_keys, one_time_keys and fallback_keys of `body` for
 * (user_id, device_id).  `extra` (may be NULL) adds statements to the write
 * batch before it runs; `done` replies (status 0: stored; the batch result
 * holds the counts statement at index `counts_stmt`).  Either replies with an
 * error itself or calls `done`. */
typedef struct e2_upload e2_upload_t;
typedef int (*e2_upload_extra_fn)(e2_upload_t *u, mx_sql_batch_t *b);
typedef void (*e2_upload_done_fn)(e2_upload_t *u, const mx_sql_res_t *res);
struct e2_upload {
    mx_req_t *req;
    const char *user_id, *device_id;      /* pool */
    json_t *body;                         /* borrowed from the request */
    e2_upload_extra_fn extra;
    e2_upload_done_fn done;
    void *ud;
    int counts_stmt;
    int64_t dl_pos;                       /* 0 when the device list did not change */
    /* internal */
    int st_dev, st_otk;
};
void e2_upload_run(e2_upload_t *u);
/* {algorithm: count} from a counts statement (always has signed_curve25519). */
json_t *e2_counts_json(const mx_sql_res_t *res, int st);
/* Adds the statement e2_counts_json reads. */
int e2_counts_add(mx_sql_batch_t *b, const char *user_id, const char *device_id);

/* Deletes every E2EE row of a device (keys, inbox) in `b`. */
void e2_device_forget(mx_sql_batch_t *b, const char *user_id, const char *device_id);

/* ------------------------------------------------------------ to-device ---
 * (e2_sync.c) The most messages one /sync or dehydrated-device fetch
 * returns. */
#define E2_TO_DEVICE_LIMIT 100
/* Deletes (in its own write batch) the device's inbox up to `upto`. */
void e2_inbox_ack(const char *user_id, const char *device_id, int64_t upto);
/* Adds to read batch `b` the device's messages in (after, upto], oldest
 * first, at most `limit`: columns stream_id, message_json. */
void e2_inbox_select(mx_sql_batch_t *b, const char *user_id, const char *device_id,
                     int64_t after, int64_t upto, int limit);

/* ------------------------------------------------------------ the files --- */
int e2_keys_routes(void);
int e2_cs_routes(void);
int e2_td_routes(void);
int e2_backup_routes(void);
int e2_dehydrated_routes(void);
int e2_sync_start(void);
/* Positions restored at start (e2_schema.c). */
int e2_schema_start(char *err, size_t errlen);

#endif /* HS_E2EE_H */

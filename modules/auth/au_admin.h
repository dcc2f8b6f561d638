/*
 * au_admin.h: what the files of the admin API share (MAS's
 * /api/admin/v1, the API Element Admin and scripts manage accounts with).
 *
 * Files: au_admin.c (routes, the caller check, JSON:API documents, errors,
 * pagination, site-config, version), au_admin_list.c (lists and single
 * objects read with SQL, ULIDs of users), au_admin_users.c (users),
 * au_admin_sessions.c (OAuth 2.0, compatibility and browser sessions),
 * au_admin_misc.c (registration tokens, user emails, upstream links),
 * au_admin_schema.c (tables), au_admin_clients.c (configured clients and
 * the admin policy, /oauth2-clients), au_admin_personal.c (personal
 * sessions and their "mpt_" tokens), au_admin_policy.c (/policy-data),
 * au_admin_links.c (adding upstream links),
 * au_admin_activity.c (sessions' last activity), au_ulid.c (ULIDs).
 *
 * Documents are MAS's: {data: {type, id, attributes, links: {self}},
 * links: {self}} for one object, {meta: {count}, data: [...], links:
 * {self, first, last, next?, prev?}} for a page; errors {errors: [{title}]}.
 * Every object has a ULID; users and browser sessions get derived ones
 * (au_ulid.c).  Strings handed to callbacks are borrowed; JSON passed to
 * reply functions is stolen.
 */
#ifndef AU_ADMIN_H
#define AU_ADMIN_H

#include "auth.h"

#include <stdbool.h>
#include <stdint.h>

/* ---------------------------------------------------------------- ULIDs --- */

#define AU_ULID_LEN 26
void au_ulid_encode(uint64_t ms, const unsigned char rnd[10], char out[AU_ULID_LEN + 1]);
/* 0, or -EINVAL when `s` is not a ULID (either case accepted). */
int au_ulid_decode(const char *s, uint64_t *ms, unsigned char rnd[10]);
/* A ULID in canonical (upper-case) form. */
bool au_ulid_valid(const char *s);
/* Time part `ms`, the rest from sha256(seed). */
void au_ulid_derive(uint64_t ms, const char *seed, char out[AU_ULID_LEN + 1]);
/* Time part `ms`, the rest the first 20 hex digits of `hex` (lower case). */
int au_ulid_from_hex(uint64_t ms, const char *hex, char out[AU_ULID_LEN + 1]);
int au_ulid_to_hex(const char *ulid, uint64_t *ms, char hex[21]);

/* ------------------------------------------------------------- requests --- */

#define AA_BASE "/api/admin/v1"

/* One admin API request, in the request's pool. */
typedef struct aa_req {
    mx_req_t *req;
    mx_pool_t *pool;
    const char *caller;           /* the admin's user ID, NULL for a client */
    const char *client_id;
    void *priv;                   /* the handler's own */
    char *filters;                /* "&filter[x]=v..." read so far (links) */
} aa_req_t;
typedef void (*aa_fn)(aa_req_t *r);

/* Adds `method` `AA_BASE path`: the handler runs once the caller is an
 * admin (au_admin.c answers 401/403 otherwise). */
int aa_route(const char *method, const char *path, aa_fn fn);
typedef struct aa_route_def {
    const char *method, *path;
    aa_fn fn;
} aa_route_def_t;
int aa_routes(const aa_route_def_t *defs, size_t n);
#define AA_ROUTES(defs) aa_routes((defs), sizeof(defs) / sizeof((defs)[0]))

/* {errors: [{title}]} with `status`; finishes the request. */
void aa_error(mx_req_t *req, int status, const char *title);
/* Storage or service failure → 500 (logged); -ENOENT → 404 "not found". */
void aa_fail(aa_req_t *r, int status, const char *what);
/* RFC 3339 UTC time of `ms`, or JSON null when ms <= 0 (new reference). */
json_t *aa_time(int64_t ms);
/* Parses an RFC 3339 date-time; 0 or -EINVAL. */
int aa_time_parse(const char *s, int64_t *ms);

/* {type, id, attributes (stolen), links: {self: AA_BASE/<coll>/<id>}}. */
json_t *aa_resource(const char *type, const char *coll, const char *id, json_t *attrs);
/* {data: resource (stolen), links: {self}}; `self` NULL: the request's
 * path. */
void aa_reply_one(aa_req_t *r, int status, json_t *resource, const char *self);

enum { AA_COUNT_FALSE = 0, AA_COUNT_TRUE = 1, AA_COUNT_ONLY = 2 };
typedef struct aa_page {
    char after[AU_ULID_LEN + 1], before[AU_ULID_LEN + 1];  /* "" when absent */
    int64_t n;                    /* page[first] or page[last]; 10 */
    bool backward;                /* page[last] */
    int count;                    /* AA_COUNT_* */
} aa_page_t;
/* Reads page[...] and count; answers 400 and returns false when bad. */
bool aa_page_parse(aa_req_t *r, aa_page_t *p);
/* Replies with a page.  `items`: resources in ascending ID order (stolen;
 * NULL for count=only); `more`: rows exist beyond the page in the
 * direction of travel; `count` < 0: not counted. */
void aa_reply_page(aa_req_t *r, const aa_page_t *p, json_t *items, bool more, int64_t count);

/* filter[...] booleans: -1 absent, else 0/1; false (400 sent) when bad. */
bool aa_qbool(aa_req_t *r, const char *name, int *out);
/* A filter[...] string (recorded for the page links), or NULL. */
const char *aa_qstr(aa_req_t *r, const char *name);
/* A query parameter that must be a ULID: NULL when absent; *bad set (400
 * sent) when malformed. */
const char *aa_qulid(aa_req_t *r, const char *name, bool *bad);
/* Every value of a repeated query parameter (?f=a&f=b), each recorded for
 * the page links: a NULL-terminated pool array, the count in *n (0 when
 * absent); NULL when out of memory. */
const char **aa_qall(aa_req_t *r, const char *name, int *n);
/* aa_qall for values that must all be ULIDs; NULL when answered (400 when
 * one is malformed, 500 when out of memory). */
const char **aa_qall_ulids(aa_req_t *r, const char *name, int *n);
/* The JSON object body (new reference); NULL with 400 sent when bad. */
json_t *aa_body(aa_req_t *r);
/* The {id} path parameter, a ULID; NULL with 400 sent when malformed. */
const char *aa_path_id(aa_req_t *r);
/* `s` as an SQL string literal (quotes doubled), from the pool. */
char *aa_sql_quote(mx_pool_t *pool, const char *s);

/* --------------------------------------------------------- SQL lists --- */

/* Builds one resource from row `row` of statement `st`; a Matrix user ID
 * in attribute `user_attr` of the list is replaced by the user's ULID. */
typedef json_t *(*aa_row_fn)(const mx_sql_res_t *res, int st, int row);
typedef struct aa_list {
    const char *cols;             /* select list; the row builder reads it */
    const char *from;             /* FROM clause (may join) */
    char *where;                  /* condition (pool), "1=1" at least */
    const char *args[6];          /* string binds of `where`, in order */
    int nargs;
    const char *id_col;           /* ULID column ordering the list, or NULL: */
    const char *ts_col, *hash_col; /* derived IDs: created ms + hex hash */
    const char *user_attr;        /* attribute holding a Matrix ID, or NULL */
    const char *user_attr2;       /* a second one (needs user_attr), or NULL */
    aa_row_fn row;
    const char *not_found;        /* single object: 404 title */
    int status;                   /* single object: reply status (0: 200) */
    json_t *merge;                /* single object: attributes added (borrowed) */
} aa_list_t;
/* A list of `from` (pool; where "1=1", the rest zero), NULL when out of
 * memory. */
aa_list_t *aa_list_make(aa_req_t *r, const char *cols, const char *from, const char *id_col,
                        aa_row_fn row, const char *not_found);
/* Answers a page of `l`. */
void aa_list_run(aa_req_t *r, const aa_page_t *p, aa_list_t *l);
/* aa_list_run narrowed to the rows whose `user_id` is the user with ULID
 * `user` (the `filter[user]` query parameter; NULL: no narrowing); an
 * unknown user is answered 404. */
void aa_list_run_for_user(aa_req_t *r, const aa_page_t *p, aa_list_t *l, const char *user);
/* The head of a list handler: page[...] into `p` and filter[user] into
 * *user (NULL when absent); false when answered (400, or 500 `what` when
 * `l` is NULL: out of memory). */
bool aa_list_begin(aa_req_t *r, aa_list_t *l, aa_page_t *p, const char **user,
                   const char *what);
/* `l` narrowed by exact-match filters: each present query parameter
 * eq[i][0] must equal column eq[i][1]. */
void aa_list_where_eq(aa_req_t *r, aa_list_t *l, const char *const eq[][2], size_t n);
/* Answers the one row `l->where` selects (404 `l->not_found` when none);
 * `self` as for aa_reply_one. */
void aa_get_run(aa_req_t *r, aa_list_t *l, const char *self);
/* aa_get_run of the object whose `id` column is `id` (`l` NULL: out of
 * memory, answered); `status` 0 means 200. */
void aa_get_by_id(aa_req_t *r, aa_list_t *l, const char *id, int status, const char *self);

/* Objects a filter names, which must exist (MAS answers 404 otherwise):
 * `sql` selects a row when it does (no binds: values are quoted in it),
 * `title` is the 404's.  Pool strings. */
typedef struct aa_need {
    const char *sql, *title;
} aa_need_t;
typedef void (*aa_then_fn)(aa_req_t *r, void *ud);
/* Runs the `n` checks in one read; the first that finds nothing is
 * answered 404, else `then` runs (at once when n is 0).  `needs` must stay
 * valid until then (pool). */
void aa_require(aa_req_t *r, const aa_need_t *needs, int n, aa_then_fn then, void *ud);
/* The checks of a client's admin API ID ("Client ID <id> not found"), a
 * user's ULID ("User ID <id> not found") and a browser session's ULID
 * ("User session ID <id> not found"); false when out of memory. */
bool aa_need_client(aa_req_t *r, aa_need_t *need, const char *ulid);
bool aa_need_user(aa_req_t *r, aa_need_t *need, const char *ulid);
bool aa_need_user_session(aa_req_t *r, aa_need_t *need, const char *ulid);
/* SQL condition: column `col` holds the hash of the browser session with
 * ULID `ulid` (pool; NULL when `ulid` is not a ULID). */
char *aa_user_session_where(aa_req_t *r, const char *col, const char *ulid);

#define AA_MAX_NEEDS 16
/* filter[client]-style repeated client IDs `name` (any of them) as a
 * condition on column `col`, each client appended to needs[*nneeds] (at
 * most AA_MAX_NEEDS in all); "1=1" when absent, NULL when answered (400
 * malformed, 500).  au_admin_sessions.c */
char *aa_clients_where(aa_req_t *r, const char *name, const char *col, aa_need_t *needs,
                       int *nneeds);
/* `where` narrowed by filter[scope] (repeated: every one of them) on the
 * space-separated scope column `col`; NULL with *bad set (400 "Invalid
 * scope ...") when a token is malformed, NULL alone when out of memory. */
char *aa_scopes_where(aa_req_t *r, const char *col, char *where, bool *bad);

/* ---------------------------------------------------------- user IDs --- */

/* The ULIDs of Matrix user IDs: `map` {user_id: ulid} (borrowed), or a
 * negative status.  Users seen for the first time get their derived ID
 * recorded (auth_admin_users). */
typedef void (*aa_ids_fn)(aa_req_t *r, int status, json_t *map);
void aa_user_ids(aa_req_t *r, json_t *user_ids, aa_ids_fn cb);
/* The Matrix user ID of a user ULID (NULL: unknown), or a negative status. */
typedef void (*aa_uid_fn)(aa_req_t *r, int status, const char *user_id);
void aa_user_of(aa_req_t *r, const char *ulid, aa_uid_fn cb);
/* In an aa_uid_fn: false (and the request answered: 500, or 404 "User ID
 * <ulid> not found") unless the user was found. */
bool aa_user_found(aa_req_t *r, int status, const char *user_id, const char *ulid);
/* The derived ULID of a user (creation time in seconds). */
void aa_user_ulid(const char *user_id, int64_t creation_s, char out[AU_ULID_LEN + 1]);

/* ------------------------------------------------------------ activity --- */

/* Records that session `session_id` (any kind; browser sessions by their
 * hash) was used now, from `ip` with `user_agent` (either NULL); throttled
 * (au_admin_activity.c).  Fire and forget. */
void aa_activity_note(const char *session_id, const char *ip, const char *user_agent);
/* The same with the request's client address (and User-Agent header). */
void aa_activity_note_req(const char *session_id, mx_req_t *req, bool with_agent);
/* Sets last_active_at, last_active_ip (and user_agent) of `attrs` from
 * columns col, col+1 (, col+2) of a row; returns `attrs`. */
json_t *aa_activity_attrs(json_t *attrs, const mx_sql_res_t *res, int st, int i, int col,
                          bool with_agent);
/* `where` narrowed by filter[created-before|created-after|
 * last-active-before|last-active-after] (activity joined as `a`); NULL
 * with *bad set (400 sent) when one is malformed, NULL alone when out of
 * memory. */
char *aa_activity_filters(aa_req_t *r, char *where, bool *bad);

/* ------------------------------------------------------ personal tokens --- */

/* Whether `t` is a personal access token ("mpt_", MAS's prefix). */
#define AA_IS_PERSONAL_TOKEN(t) (!strncmp((t), "mpt_", 4))
/* The lookup au_token_lookup runs for a personal access token: the columns
 * it reads, from auth_personal_tokens joined with its session (one `?`: the
 * token's sha256 hex). */
extern const char aa_personal_lookup_sql[];

/* A number in a JSON body (0..2^32-1): 1 set (*v), 0 null, -1 absent, -2
 * bad (400 sent). */
int aa_body_uint(aa_req_t *r, json_t *body, const char *k, int64_t *v);

/* --------------------------------------------------------- the parts --- */

int aa_users_routes(void);
int aa_sessions_routes(void);
int aa_misc_routes(void);
int aa_personal_routes(void);
int aa_policy_routes(void);
int aa_oauth2_clients_routes(void);
int aa_links_routes(void);
/* Whether `id` is a configured upstream provider's ID (au_admin_links.c). */
bool aa_provider_known(const char *id);
int aa_schema_migrate(char *err, size_t errlen);
/* Configured clients (`auth.clients`) stored at start; the admin policy. */
int aa_clients_start(char *err, size_t errlen);
/* Whether client `client_id` may call the admin API (admin_clients of the
 * newest policy data, else of the config): `verdict` 1 yes, 0 no, negative
 * on a storage error.  0, or a negative code (then `cb` is not called). */
typedef void (*aa_admin_fn)(int verdict, void *ud);
/* The admin API's ID of a client: its client_id when a ULID, else derived. */
void aa_client_ulid(const char *client_id, char out[AU_ULID_LEN + 1]);
/* SQL conditions on a client ID column `col` (pool strings): clients of
 * the admin API ID `ulid`; clients of the kind filter[client-kind] asks for
 * ("1=1" when absent; NULL with *bad set and 400 sent when malformed, NULL
 * alone when out of memory). */
char *aa_client_id_where(aa_req_t *r, const char *col, const char *ulid);
char *aa_client_kind_where(aa_req_t *r, const char *col, bool *bad);
int aa_client_admin_check(const char *client_id, aa_admin_fn cb, void *ud);

#endif /* AU_ADMIN_H */

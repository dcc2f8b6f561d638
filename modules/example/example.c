/*
 * example.c: the smallest complete module, kept to show and test the module
 * ABI.  It uses every core service once:
 *   config   `example: {greeting: ..., max_notes: ...}`
 *   storage  a table of its own, created by a migration
 *   routes   GET  /_mxstack/example/hello          -> {"greeting": ...}
 *            POST /_mxstack/example/notes          {"text": ...} -> stored
 *            GET  /_mxstack/example/notes/{id}     -> the note
 *   service  "example.greeter": a typed interface (struct of function
 *            pointers) and the same as a JSON service, which another mxstack
 *            can call over HTTP when `example.provide` is false here and
 *            `service_locations: {example.greeter: URL}` points at it
 *   bus      publishes "example.note" on every stored note
 *   metrics  mxstack_example_notes_total
 *   manage   `mxstack manage example-count`
 * Tests load it with `modules: [example]`.
 */
#include "mx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

MX_MODULE_API_DEFINE;

typedef struct ex_conf {
    char *greeting;
    int64_t max_notes;
    int provide;      /* offer example.greeter from this process */
} ex_conf_t;

static const mx_conf_item_t ex_conf_items[] = {
    MX_CONF_STR("greeting", ex_conf_t, greeting, "hello"),
    MX_CONF_INT("max_notes", ex_conf_t, max_notes, "1000"),
    MX_CONF_BOOL("provide", ex_conf_t, provide, "true"),
    MX_CONF_END,
};

typedef struct ex_greeter {
    const char *(*greet)(void);
} ex_greeter_t;

typedef struct ex_state {
    const ex_conf_t *conf;
    mx_db_t *db;
    mx_counter_t *notes_total;
} ex_state_t;

static ex_state_t ex;   /* the module's one instance; set in init, cleared in fini */

static const char *ex_greet(void)
{
    return ex.conf->greeting;
}

static const ex_greeter_t ex_greeter = { .greet = ex_greet };

static const mx_migration_t ex_migrations[] = {
    { .version = 1, .sql = "CREATE TABLE example_notes (id TEXT PRIMARY KEY, text TEXT NOT NULL)" },
};

/* The JSON form of example.greeter: method "greet" → {"greeting": ...}. */
static void ex_greeter_call(mx_service_call_t *call, const char *method, const json_t *args,
                            void *ud)
{
    if (strcmp(method, "greet") != 0) {
        mx_service_reply(call, -2 /* -ENOENT */, NULL);
        return;
    }
    mx_service_reply(call, 0, json_pack("{s:s}", "greeting", ex_greet()));
}

static void ex_greeted(int status, const json_t *result, void *ud)
{
    mx_req_t *req = ud;
    const char *g = json_string_value(json_object_get(result, "greeting"));
    if (status != 0 || !g)
        mx_req_error(req, 502, "M_UNKNOWN", "example.greeter unavailable (%d)", status);
    else
        mx_req_reply_json(req, 200, json_pack("{s:s}", "greeting", g));
}

/* Uses the typed interface when the provider is in this process, else the
 * JSON service, which may live in another process. */
static int ex_hello(mx_req_t *req, void *ud)
{
    const ex_greeter_t *g = mx_service_get("example.greeter");
    if (g) {
        mx_req_reply_json(req, 200, json_pack("{s:s}", "greeting", g->greet()));
        return MX_DONE;
    }
    if (mx_service_call("example.greeter", "greet", NULL, ex_greeted, req) != 0) {
        mx_req_error(req, 502, "M_UNKNOWN", "example.greeter is not configured");
        return MX_DONE;
    }
    return MX_ASYNC;
}

typedef struct ex_job {
    mx_req_t *req;
    char id[24];
} ex_job_t;

static void ex_note_stored(int status, mx_sql_res_t *res, void *ud)
{
    ex_job_t *job = ud;
    if (status != 0) {
        mx_req_error(job->req, 500, "M_UNKNOWN", "could not store the note");
        return;
    }
    mx_counter_add(ex.notes_total, 1);
    json_t *msg = json_pack("{s:s}", "id", job->id);
    mx_bus_publish("example.note", msg);
    json_decref(msg);
    mx_req_reply_json(job->req, 200, json_pack("{s:s}", "id", job->id));
}

static int ex_note_post(mx_req_t *req, void *ud)
{
    json_t *body = mx_req_json(req);
    json_t *text = json_object_get(body, "text");
    if (!json_is_string(text)) {
        mx_req_error(req, 400, "M_BAD_JSON", "'text' must be a string");
        return MX_DONE;
    }
    ex_job_t *job = mx_palloc(mx_req_pool(req), sizeof(*job));
    char *rnd = mx_random_string(16);
    if (!job || !rnd) {
        free(rnd);
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return MX_DONE;
    }
    job->req = req;
    snprintf(job->id, sizeof(job->id), "%s", rnd);
    free(rnd);
    mx_sql_batch_t *b = mx_sql_batch_new(ex.db, MX_SQL_WRITE);
    if (!b || mx_sql_add(b, "INSERT INTO example_notes (id, text) VALUES (?, ?)", "ss", job->id,
                         json_string_value(text)) != 0 ||
        mx_sql_run(b, ex_note_stored, job) != 0) {
        mx_req_error(req, 500, "M_UNKNOWN", "storage unavailable");
        return MX_DONE;
    }
    return MX_ASYNC;
}

static void ex_note_loaded(int status, mx_sql_res_t *res, void *ud)
{
    mx_req_t *req = ud;
    if (status != 0) {
        mx_req_error(req, 500, "M_UNKNOWN", "storage error");
    } else if (mx_sql_nrows(res, 0) == 0) {
        mx_req_error(req, 404, "M_NOT_FOUND", "no such note");
    } else {
        mx_req_reply_json(req, 200, json_pack("{s:s, s:s}", "id", mx_sql_text(res, 0, 0, 0),
                                              "text", mx_sql_text(res, 0, 0, 1)));
    }
}

static int ex_note_get(mx_req_t *req, void *ud)
{
    mx_sql_batch_t *b = mx_sql_batch_new(ex.db, MX_SQL_READ);
    if (!b || mx_sql_add(b, "SELECT id, text FROM example_notes WHERE id = ?", "s",
                         mx_req_param(req, "id")) != 0 ||
        mx_sql_run(b, ex_note_loaded, req) != 0) {
        mx_req_error(req, 500, "M_UNKNOWN", "storage unavailable");
        return MX_DONE;
    }
    return MX_ASYNC;
}

static int ex_init(void *conf, char *err, size_t errlen)
{
    ex.conf = conf;
    if (ex.conf->max_notes < 1) {
        snprintf(err, errlen, "example.max_notes must be at least 1");
        return -22;
    }
    return 0;
}

static int ex_start(char *err, size_t errlen)
{
    ex.db = mx_db_get("example");
    int rc = mx_db_migrate(ex.db, "example", ex_migrations,
                           sizeof(ex_migrations) / sizeof(*ex_migrations));
    if (rc) {
        snprintf(err, errlen, "migrations failed");
        return rc;
    }
    ex.notes_total = mx_metrics_counter("mxstack_example_notes_total", "Notes stored.", NULL);
    if (ex.conf->provide &&
        ((rc = mx_service_register("example.greeter", &ex_greeter)) ||
         (rc = mx_service_provide("example.greeter", ex_greeter_call, NULL)))) {
        snprintf(err, errlen, "cannot provide example.greeter");
        return rc;
    }
    if ((rc = mx_route_add("client", "GET", "/_mxstack/example/hello", ex_hello, NULL, 0)) ||
        (rc = mx_route_add("client", "POST", "/_mxstack/example/notes", ex_note_post, NULL,
                           MX_ROUTE_JSON_BODY)) ||
        (rc = mx_route_add("client", "GET", "/_mxstack/example/notes/{id}", ex_note_get, NULL, 0))) {
        snprintf(err, errlen, "cannot register routes");
        return rc;
    }
    return 0;
}

static void ex_stop(void (*done)(const char *module))
{
    done("example");
}

static void ex_fini(void)
{
    memset(&ex, 0, sizeof(ex));
}

static int ex_count(int argc, char **argv)
{
    mx_sql_batch_t *b = mx_sql_batch_new(mx_db_get("example"), MX_SQL_READ);
    mx_sql_res_t *res = NULL;
    if (!b || mx_sql_add(b, "SELECT COUNT(*) FROM example_notes", "") != 0 ||
        mx_sql_run_sync(b, &res) != 0) {
        fprintf(stderr, "example-count: storage error\n");
        mx_sql_res_free(res);
        return 1;
    }
    printf("%lld\n", (long long)mx_sql_int(res, 0, 0, 0));
    mx_sql_res_free(res);
    return 0;
}

static const mx_manage_cmd_t ex_manage[] = {
    { "example-count", "print how many notes are stored", ex_count },
    { NULL, NULL, NULL },
};

__attribute__((visibility("default"))) const mx_module_t mx_module_example = {
    MX_MODULE_HEADER("example"),
    MX_MODULE_API_SLOT,
    .conf = ex_conf_items,
    .conf_size = sizeof(ex_conf_t),
    .init = ex_init,
    .start = ex_start,
    .stop = ex_stop,
    .fini = ex_fini,
    .manage = ex_manage,
};

/*
 * modules.c: finds, loads and runs the modules this process is configured
 * for.  (The services modules offer each other are in services.c.)
 *
 * Lifecycle (STYLE.md §1): dlopen → ABI check → config section filled →
 * init (all) → start (all) → run → stop (reverse order, each calls done) →
 * fini (reverse order).
 *
 * Where a module NAME.so is looked for, first hit wins:
 *   1. `module_dir` from the config, or $MXSTACK_MODULE_DIR;
 *   2. the build tree: <dir of the executable>/modules/NAME/.libs/NAME.so
 *      (so `./mxstack serve` works without `make install`);
 *   3. the install directory (MX_MODULE_DIR, $(pkglibdir)).
 * With no `modules:` list, every module found in those places is loaded.
 */
#include "core.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_MODULES 16

typedef struct loaded {
    char name[64];
    char path[PATH_MAX];
    void *handle;
    const mx_module_t *desc;
    void *conf;             /* the struct the module's config table fills */
    bool inited, started;
} loaded_t;

struct mx_module_state {
    loaded_t mods[MAX_MODULES];
    int nmods;
    int stopping_left;
    void (*all_stopped)(void);
};

static const char *const known_modules[] = {
    "example", "homeserver", "auth", "web", "admin", "rtc", "pubsub",
};

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void exe_dir(char *out, size_t len)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    out[0] = '\0';
    if (n <= 0)
        return;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash)
        *slash = '\0';
    /* libtool wrappers run the real binary from .libs/ */
    size_t bl = strlen(buf);
    if (bl >= 6 && strcmp(buf + bl - 6, "/.libs") == 0)
        buf[bl - 6] = '\0';
    snprintf(out, len, "%s", buf);
}

static int find_module(const mx_conf_t *conf, const char *name, char *path, size_t len)
{
    const char *dir = conf->module_dir ? conf->module_dir : getenv("MXSTACK_MODULE_DIR");
    if (dir && *dir) {
        snprintf(path, len, "%s/%s.so", dir, name);
        if (file_exists(path))
            return 0;
    }
    char ed[PATH_MAX];
    exe_dir(ed, sizeof(ed));
    if (ed[0]) {
        snprintf(path, len, "%s/modules/%s/.libs/%s.so", ed, name, name);
        if (file_exists(path))
            return 0;
    }
    snprintf(path, len, "%s/%s.so", MX_MODULE_DIR, name);
    if (file_exists(path))
        return 0;
    return -ENOENT;
}

static int load_one(struct mx_module_state *st, const mx_conf_t *conf, const char *name,
                    char *err, size_t errlen)
{
    if (st->nmods >= MAX_MODULES) {
        snprintf(err, errlen, "too many modules");
        return -E2BIG;
    }
    for (int i = 0; i < st->nmods; i++)
        if (strcmp(st->mods[i].name, name) == 0)
            return 0;   /* listed twice: load once */
    loaded_t *m = &st->mods[st->nmods];
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", name);
    if (find_module(conf, name, m->path, sizeof(m->path)) != 0) {
        snprintf(err, errlen, "module %s: %s.so not found (module_dir, build tree, %s)", name,
                 name, MX_MODULE_DIR);
        return -ENOENT;
    }
    m->handle = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
    if (!m->handle) {
        snprintf(err, errlen, "module %s: dlopen %s: %s", name, m->path, dlerror());
        return -EINVAL;
    }
    char sym[96];
    snprintf(sym, sizeof(sym), "mx_module_%s", name);
    m->desc = dlsym(m->handle, sym);
    if (!m->desc) {
        snprintf(err, errlen, "module %s: %s has no symbol %s", name, m->path, sym);
        dlclose(m->handle);
        return -EINVAL;
    }
    if (m->desc->abi_major != MX_ABI_MAJOR) {
        snprintf(err, errlen, "module %s: ABI major version %u, this mxstack has %u: rebuild it",
                 name, m->desc->abi_major, MX_ABI_MAJOR);
        dlclose(m->handle);
        return -EINVAL;
    }
    if (!m->desc->signature || strcmp(m->desc->signature, MX_ABI_SIGNATURE) != 0) {
        snprintf(err, errlen, "module %s: build signature \"%s\" differs from \"%s\": rebuild it",
                 name, m->desc->signature ? m->desc->signature : "(none)", MX_ABI_SIGNATURE);
        dlclose(m->handle);
        return -EINVAL;
    }
    if (m->desc->abi_minor > MX_ABI_MINOR) {
        snprintf(err, errlen, "module %s: needs ABI %u.%u, this mxstack has %u.%u", name,
                 m->desc->abi_major, m->desc->abi_minor, MX_ABI_MAJOR, MX_ABI_MINOR);
        dlclose(m->handle);
        return -EINVAL;
    }
    if (!m->desc->name || strcmp(m->desc->name, name) != 0) {
        snprintf(err, errlen, "module %s: descriptor names itself \"%s\"", name,
                 m->desc->name ? m->desc->name : "(null)");
        dlclose(m->handle);
        return -EINVAL;
    }
    if (m->desc->api_slot)
        *m->desc->api_slot = mx__api_table();
    st->nmods++;
    return 0;
}

int mx__modules_load(const mx_conf_t *conf, char *err, size_t errlen)
{
    if (!mx__ctx)
        return -EINVAL;
    struct mx_module_state *st = mx__ctx->modules;
    if (!st) {
        st = calloc(1, sizeof(*st));
        if (!st)
            return -ENOMEM;
        mx__ctx->modules = st;
    }
    if (conf->nmodules >= 0) {
        for (int i = 0; i < conf->nmodules; i++) {
            int rc = load_one(st, conf, conf->modules[i], err, errlen);
            if (rc)
                return rc;
        }
        return 0;
    }
    /* Every built module, except the ABI example (tests name it). */
    for (size_t i = 0; i < sizeof(known_modules) / sizeof(*known_modules); i++) {
        char path[PATH_MAX];
        if (strcmp(known_modules[i], "example") == 0)
            continue;
        if (find_module(conf, known_modules[i], path, sizeof(path)) == 0) {
            int rc = load_one(st, conf, known_modules[i], err, errlen);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* A module's init reason that starts with one of its keys ("auth.email.port:
 * ...") gets the key's place in the config file in front ("FILE:LINE: "),
 * as the core's own config errors have. */
/* A module's init or start error that begins with a config key path
 * ("max_spider_size: ...", "auth.email.port: ...") gets the file and line
 * of that key, or of its nearest parent that has one, in front. */
static void conf_reason(const mx_conf_t *conf, const char *why, char *out, size_t outlen)
{
    size_t n = strspn(why, "abcdefghijklmnopqrstuvwxyz"
                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.[]");
    char key[256];
    int line = 0;
    if (conf && n > 0 && n < sizeof(key) && why[n] == ':') {
        memcpy(key, why, n);
        key[n] = '\0';
        /* The nearest key that has a line: the key, else its parents. */
        while (!(line = mx__conf_line(conf, key))) {
            char *cut = strrchr(key, '.'), *br = strrchr(key, '[');
            if (br && (!cut || br > cut))
                cut = br;
            if (!cut)
                break;
            *cut = '\0';
        }
    }
    if (line > 0)
        snprintf(out, outlen, "%s:%d: %s", conf->path, line, why);
    else
        snprintf(out, outlen, "%s", why);
}

int mx__modules_init(const mx_conf_t *conf, char *err, size_t errlen)
{
    struct mx_module_state *st = mx__ctx->modules;
    for (int i = 0; st && i < st->nmods; i++) {
        loaded_t *m = &st->mods[i];
        /* A module section may name its own database (ESS keeps MAS's data
         * apart from Synapse's); mx_db_get(module) then returns it. */
        mx_db_conf_t dbc;
        int drc = mx__conf_db(conf, m->name, &dbc, err, errlen);
        if (drc == 0)
            drc = mx__store_open_named(m->name, &dbc, err, errlen);
        if (drc != 0 && drc != -ENOENT)
            return drc;
        if (m->desc->conf && m->desc->conf_size) {
            m->conf = calloc(1, m->desc->conf_size);
            if (!m->conf)
                return -ENOMEM;
            int rc = mx__conf_fill(conf, m->name, m->desc->conf, m->conf, err, errlen);
            if (rc)
                return rc;
        }
        if (m->desc->init) {
            char why[256] = "";
            int rc = m->desc->init(m->conf, why, sizeof(why));
            if (rc) {
                char reason[512];
                conf_reason(conf, why[0] ? why : strerror(-rc), reason, sizeof(reason));
                snprintf(err, errlen, "module %s: init failed: %s", m->name, reason);
                return rc;
            }
        }
        m->inited = true;
    }
    return 0;
}

int mx__modules_start(char *err, size_t errlen)
{
    struct mx_module_state *st = mx__ctx->modules;
    for (int i = 0; st && i < st->nmods; i++) {
        loaded_t *m = &st->mods[i];
        if (m->desc->start) {
            char why[256] = "";
            int rc = m->desc->start(why, sizeof(why));
            if (rc) {
                char reason[512];
                conf_reason(mx__ctx->conf, why[0] ? why : strerror(-rc), reason, sizeof(reason));
                snprintf(err, errlen, "module %s: start failed: %s", m->name, reason);
                return rc;
            }
        }
        m->started = true;
        mx_log("core", MX_LOG_INFO, "module %s started (%s)", m->name, m->path);
    }
    return 0;
}

static void module_stopped(const char *name)
{
    struct mx_module_state *st = mx__ctx->modules;
    mx_log("core", MX_LOG_DEBUG, "module %s stopped", name ? name : "?");
    if (--st->stopping_left == 0 && st->all_stopped) {
        void (*cb)(void) = st->all_stopped;
        st->all_stopped = NULL;
        cb();
    }
}

void mx__modules_stop(void (*all_done)(void))
{
    struct mx_module_state *st = mx__ctx->modules;
    if (!st) {
        all_done();
        return;
    }
    st->all_stopped = all_done;
    st->stopping_left = 1;   /* held until every stop is issued */
    for (int i = st->nmods - 1; i >= 0; i--) {
        loaded_t *m = &st->mods[i];
        if (m->started && m->desc->stop) {
            st->stopping_left++;
            m->desc->stop(module_stopped);
        }
        m->started = false;
    }
    module_stopped(NULL);
}

void mx__modules_fini(void)
{
    struct mx_module_state *st = mx__ctx ? mx__ctx->modules : NULL;
    if (!st)
        return;
    for (int i = st->nmods - 1; i >= 0; i--) {
        loaded_t *m = &st->mods[i];
        if (m->inited && m->desc->fini)
            m->desc->fini();
        free(m->conf);
        /* Keep the objects mapped: strings they handed out (route patterns,
         * metric names) may still be referenced until exit. */
    }
    free(st);
    mx__ctx->modules = NULL;
}

/* Finds `mxstack manage CMD` among the loaded modules. */
const mx_manage_cmd_t *mx__modules_find_manage(const char *cmd)
{
    struct mx_module_state *st = mx__ctx ? mx__ctx->modules : NULL;
    for (int i = 0; st && i < st->nmods; i++) {
        const mx_manage_cmd_t *c = st->mods[i].desc->manage;
        for (; c && c->name; c++)
            if (strcmp(c->name, cmd) == 0)
                return c;
    }
    return NULL;
}

void mx__modules_print_manage(FILE *out)
{
    struct mx_module_state *st = mx__ctx ? mx__ctx->modules : NULL;
    for (int i = 0; st && i < st->nmods; i++) {
        const mx_manage_cmd_t *c = st->mods[i].desc->manage;
        for (; c && c->name; c++)
            fprintf(out, "  %-26s %s  [%s]\n", c->name, c->usage ? c->usage : "", st->mods[i].name);
    }
}

int mx__modules_count(void)
{
    return mx__ctx && mx__ctx->modules ? mx__ctx->modules->nmods : 0;
}

int mx__modules_init_conf_only(const mx_conf_t *conf, char *err, size_t errlen)
{
    struct mx_module_state *st = mx__ctx->modules;
    int failed = 0;
    size_t used = 0;
    for (int i = 0; st && i < st->nmods; i++) {
        loaded_t *m = &st->mods[i];
        if (!m->desc->conf || !m->desc->conf_size)
            continue;
        void *tmp = calloc(1, m->desc->conf_size);
        if (!tmp)
            return -ENOMEM;
        int rc = mx__conf_fill(conf, m->name, m->desc->conf, tmp, err + used, errlen - used);
        free(tmp);
        if (rc) {
            failed = rc;
            used = strlen(err);
        }
    }
    return failed;
}

/*
 * au_manage.c: `mxstack manage` commands of the auth module, the jobs of
 * `mas-cli manage` (so the seed deployment's first-admin step is
 * `mxstack manage register-user --username admin --password ... --admin
 * --yes`):
 *
 *   register-user [USERNAME] [--username U] [--password P] [--admin|--no-admin] [--yes]
 *   set-password USER [PASSWORD | --password P]
 *   lock-user USER / unlock-user USER
 *   list-users
 *   issue-compatibility-token USER [DEVICE] [--yes-i-want-to-grant-synapse-admin-privileges]
 *
 * Accounts are the homeserver's for now, so every command goes through its
 * `homeserver.users` service.  Commands run after the modules started, with
 * no server loop running: each drives the loop itself until its one
 * asynchronous call has answered.  Missing values are asked for on a
 * terminal (the password without echo); without a terminal they must be
 * given.
 */
#include "auth.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

typedef struct au_mq {
    bool done;
    int status;
    bool admin, locked;
    char user_id[256];
} au_mq_t;

static const hs_users_iface_t *au_users(void)
{
    const hs_users_iface_t *u = mx_service_get(HS_USERS_SERVICE);
    if (!u)
        fprintf(stderr, "mxstack manage: the homeserver module (accounts) is not loaded\n");
    return u;
}

static void au_mq_done(int status, const hs_users_info_t *u, void *ud)
{
    au_mq_t *q = ud;
    q->status = status;
    if (u) {
        snprintf(q->user_id, sizeof(q->user_id), "%s", u->user_id);
        q->admin = u->is_admin;
        q->locked = u->locked;
    }
    q->done = true;
}

/* Runs the loop until the call started with return code `rc` answered. */
static int au_mq_wait(au_mq_t *q, int rc)
{
    if (rc < 0)
        return rc;
    while (!q->done)
        uv_run(mx_loop(), UV_RUN_ONCE);
    return q->status;
}

static char *au_ask(const char *prompt, bool secret)
{
    if (!isatty(STDIN_FILENO))
        return NULL;
    struct termios old, quiet;
    fprintf(stderr, "%s", prompt);
    fflush(stderr);
    bool restore = false;
    if (secret && tcgetattr(STDIN_FILENO, &old) == 0) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        restore = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
    }
    char buf[1024];
    char *r = fgets(buf, sizeof(buf), stdin);
    if (restore) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!r)
        return NULL;
    buf[strcspn(buf, "\r\n")] = '\0';
    char *out = strdup(buf);
    memset(buf, 0, sizeof(buf));
    return out;
}

static const char *au_errtext(int status)
{
    switch (status) {
    case -ENOENT: return "no such user";
    case -EEXIST: return "the user already exists";
    case -EINVAL: return "invalid username or password";
    default: return "storage error";
    }
}

static int au_register_user(int argc, char **argv)
{
    const char *username = NULL, *password = NULL;
    bool admin = false, yes = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--username") && i + 1 < argc)
            username = argv[++i];
        else if (!strncmp(a, "--username=", 11))
            username = a + 11;
        else if ((!strcmp(a, "--password") || !strcmp(a, "-p")) && i + 1 < argc)
            password = argv[++i];
        else if (!strncmp(a, "--password=", 11))
            password = a + 11;
        else if (!strcmp(a, "--admin") || !strcmp(a, "-a"))
            admin = true;
        else if (!strcmp(a, "--no-admin") || !strcmp(a, "-A"))
            admin = false;
        else if (!strcmp(a, "--yes") || !strcmp(a, "-y"))
            yes = true;
        else if (a[0] != '-' && !username)
            username = a;
        else {
            fprintf(stderr, "usage: mxstack manage register-user [USERNAME] [--username U]"
                            " [-p|--password P] [-a|--admin|-A|--no-admin] [-y|--yes]\n");
            return 2;
        }
    }
    const hs_users_iface_t *users = au_users();
    if (!users)
        return 1;
    char *asked_user = NULL, *asked_pw = NULL;
    if (!username)
        username = asked_user = au_ask("Username: ", false);
    if (!password && username) {
        asked_pw = au_ask("Password: ", true);
        char *again = asked_pw ? au_ask("Password (again): ", true) : NULL;
        if (asked_pw && (!again || strcmp(asked_pw, again))) {
            fprintf(stderr, "mxstack manage: the passwords differ\n");
            free(again);
            free(asked_pw);
            free(asked_user);
            return 1;
        }
        free(again);
        password = asked_pw;
    }
    int code = 1;
    const char *why = password ? au_password_policy(password) : NULL;
    if (!username || !password) {
        fprintf(stderr, "mxstack manage register-user: --username and --password are needed"
                        " without a terminal\n");
        code = 2;
    } else if (why) {
        fprintf(stderr, "mxstack manage register-user: %s\n", au_string(why));
    } else {
        bool go = yes;
        if (!go && isatty(STDIN_FILENO)) {
            fprintf(stderr, "Create %s%s? [y/N] ", username, admin ? " (admin)" : "");
            char *ans = au_ask("", false);
            go = ans && (ans[0] == 'y' || ans[0] == 'Y');
            free(ans);
        } else if (!go) {
            go = true;   /* no terminal to ask: the flags are the intent */
        }
        if (!go) {
            fprintf(stderr, "cancelled\n");
        } else {
            au_mq_t q = { 0 };
            int rc = au_mq_wait(&q, users->create(username, password, admin, au_mq_done, &q));
            if (rc < 0) {
                fprintf(stderr, "mxstack manage register-user: %s\n", au_errtext(rc));
            } else {
                printf("created %s%s\n", q.user_id, admin ? " (admin)" : "");
                code = 0;
            }
        }
    }
    if (asked_pw)
        memset(asked_pw, 0, strlen(asked_pw));
    free(asked_pw);
    free(asked_user);
    return code;
}

static int au_set_password(int argc, char **argv)
{
    const char *user = NULL, *password = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--password") && i + 1 < argc)
            password = argv[++i];
        else if (!user)
            user = argv[i];
        else if (!password)
            password = argv[i];
    }
    const hs_users_iface_t *users = au_users();
    if (!users)
        return 1;
    char *asked = NULL;
    if (user && !password)
        password = asked = au_ask("New password: ", true);
    if (!user || !password) {
        fprintf(stderr, "usage: mxstack manage set-password USER [PASSWORD | --password P]\n");
        free(asked);
        return 2;
    }
    const char *why = au_password_policy(password);
    int code = 1;
    if (why) {
        fprintf(stderr, "mxstack manage set-password: %s\n", au_string(why));
    } else {
        au_mq_t q = { 0 };
        int rc = au_mq_wait(&q, users->set_password(user, password, au_mq_done, &q));
        if (rc < 0)
            fprintf(stderr, "mxstack manage set-password: %s\n", au_errtext(rc));
        else {
            printf("password set for %s\n", q.user_id);
            code = 0;
        }
    }
    if (asked)
        memset(asked, 0, strlen(asked));
    free(asked);
    return code;
}

static int au_lock(int argc, char **argv, bool lock)
{
    if (argc < 2) {
        fprintf(stderr, "usage: mxstack manage %s USER\n", argv[0]);
        return 2;
    }
    const hs_users_iface_t *users = au_users();
    if (!users)
        return 1;
    au_mq_t q = { 0 };
    int rc = au_mq_wait(&q, users->set_locked(argv[1], lock, au_mq_done, &q));
    if (rc < 0) {
        fprintf(stderr, "mxstack manage %s: %s\n", argv[0], au_errtext(rc));
        return 1;
    }
    printf("%s %s\n", lock ? "locked" : "unlocked", q.user_id);
    return 0;
}

static int au_lock_user(int argc, char **argv)
{
    return au_lock(argc, argv, true);
}

static int au_unlock_user(int argc, char **argv)
{
    return au_lock(argc, argv, false);
}

typedef struct au_lq {
    bool done;
    int status;
} au_lq_t;

static void au_listed(int status, json_t *list, void *ud)
{
    au_lq_t *q = ud;
    q->status = status;
    q->done = true;
    size_t i;
    json_t *u;
    json_array_foreach(list, i, u) {
        printf("%s%s%s%s%s\n", json_string_value(json_object_get(u, "user_id")),
               json_is_true(json_object_get(u, "admin")) ? "  admin" : "",
               json_is_true(json_object_get(u, "locked")) ? "  locked" : "",
               json_is_true(json_object_get(u, "deactivated")) ? "  deactivated" : "",
               json_is_true(json_object_get(u, "guest")) ? "  guest" : "");
    }
}

static int au_list_users(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const hs_users_iface_t *users = au_users();
    if (!users)
        return 1;
    au_lq_t q = { 0 };
    int rc = users->list(au_listed, &q);
    if (rc >= 0)
        while (!q.done)
            uv_run(mx_loop(), UV_RUN_ONCE);
    if (rc < 0 || q.status < 0) {
        fprintf(stderr, "mxstack manage list-users: storage error\n");
        return 1;
    }
    return 0;
}

/* --------------------------------------------- issue-compatibility-token --- */

typedef struct au_ct {
    bool done;
    int status;
    char user_id[256];
    bool locked, deactivated;
    char token[128], device[256];
} au_ct_t;

static void au_ct_user(int status, const hs_users_info_t *u, void *ud)
{
    au_ct_t *q = ud;
    q->status = status;
    if (u) {
        snprintf(q->user_id, sizeof(q->user_id), "%s", u->user_id);
        q->locked = u->locked;
        q->deactivated = u->deactivated;
    }
    q->done = true;
}

static void au_ct_issued(int status, const au_compat_tokens_t *t, void *ud)
{
    au_ct_t *q = ud;
    q->status = status;
    if (t) {
        snprintf(q->token, sizeof(q->token), "%s", t->access_token);
        snprintf(q->device, sizeof(q->device), "%s", t->device_id);
    }
    q->done = true;
}

/* MAS's `manage issue-compatibility-token`: a compat session for USER on
 * DEVICE (a new random one when absent); the access token is printed on
 * stdout, alone, for scripts. */
static int au_issue_compat_token(int argc, char **argv)
{
    const char *user = NULL, *device = NULL;
    bool admin = false, bad = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--yes-i-want-to-grant-synapse-admin-privileges"))
            admin = true;
        else if (argv[i][0] != '-' && !user)
            user = argv[i];
        else if (argv[i][0] != '-' && !device)
            device = argv[i];
        else
            bad = true;
    }
    if (bad || !user || (device && (!*device || strlen(device) > 255))) {
        fprintf(stderr, "usage: mxstack manage issue-compatibility-token USER [DEVICE]"
                        " [--yes-i-want-to-grant-synapse-admin-privileges]\n");
        return 2;
    }
    const hs_users_iface_t *users = au_users();
    if (!users)
        return 1;
    au_ct_t q = { 0 };
    int rc = users->get(user, au_ct_user, &q);
    if (rc >= 0)
        while (!q.done)
            uv_run(mx_loop(), UV_RUN_ONCE);
    if (rc < 0 || q.status < 0) {
        fprintf(stderr, "mxstack manage issue-compatibility-token: %s\n",
                au_errtext(rc < 0 ? rc : q.status));
        return 1;
    }
    if (q.deactivated || q.locked) {
        fprintf(stderr, "mxstack manage issue-compatibility-token: %s is %s\n", q.user_id,
                q.deactivated ? "deactivated" : "locked");
        return 1;
    }
    mx_pool_t *pool = mx_pool_new();
    au_compat_new_t n = { .user_id = q.user_id, .device_id = device, .synapse_admin = admin };
    q.done = false;
    rc = pool ? au_compat_session_new(pool, &n, au_ct_issued, &q) : -ENOMEM;
    if (rc >= 0)
        while (!q.done)
            uv_run(mx_loop(), UV_RUN_ONCE);
    mx_pool_free(pool);
    if (rc < 0 || q.status < 0) {
        fprintf(stderr, "mxstack manage issue-compatibility-token: storage error\n");
        return 1;
    }
    fprintf(stderr, "Compatibility token issued for %s, device %s%s\n", q.user_id, q.device,
            admin ? " (with Synapse admin privileges)" : "");
    printf("%s\n", q.token);
    return 0;
}

const mx_manage_cmd_t au_manage_cmds[] = {
    { "register-user", "[USERNAME] [--username U] [-p|--password P] [-a|--admin] [-y|--yes]",
      au_register_user },
    { "issue-compatibility-token", "USER [DEVICE] [--yes-i-want-to-grant-synapse-admin-privileges]",
      au_issue_compat_token },
    { "set-password", "USER [PASSWORD | --password P]", au_set_password },
    { "lock-user", "USER", au_lock_user },
    { "unlock-user", "USER", au_unlock_user },
    { "list-users", "", au_list_users },
    { NULL, NULL, NULL },
};

/*
 * api.c: the table of core functions handed to modules (see mx.h), plus the
 * few API entries that belong to no subsystem.
 */
#include "core.h"

#include <sys/time.h>

#define API_ENTRY(ret, name, params, ...) .name = name,
static const mx_api_t api_table = {
    .size = sizeof(mx_api_t),
    MX_API_VFUNCS(API_ENTRY)
    MX_API_FUNCS(API_ENTRY)
};

const mx_api_t *mx__api_table(void)
{
    return &api_table;
}

const mx_signing_key_t *mx_server_signing_key(void)
{
    return mx__ctx ? &mx__ctx->signing_key : NULL;
}

uv_loop_t *mx_loop(void)
{
    return mx__ctx ? mx__ctx->loop : NULL;
}

uint64_t mx_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/*
 * badsig.c: a module whose build signature differs from the core's (as a
 * module built for another pointer size or JSON library would), for the
 * loader test (tests/integration/test_core.py).
 */
#include "mx.h"

MX_MODULE_API_DEFINE;

__attribute__((visibility("default"))) const mx_module_t mx_module_badsig = {
    .abi_major = MX_ABI_MAJOR,
    .abi_minor = MX_ABI_MINOR,
    .signature = "ilp32-otherjson",
    .name = "badsig",
    MX_MODULE_API_SLOT,
};

/*
 * badabi.c: a module built against a future ABI (major 99), for the test
 * that the loader refuses it and says why (tests/integration/test_core.py).
 */
#include "mx.h"

MX_MODULE_API_DEFINE;

__attribute__((visibility("default"))) const mx_module_t mx_module_badabi = {
    .abi_major = 99,
    .abi_minor = 0,
    .signature = MX_ABI_SIGNATURE,
    .name = "badabi",
    MX_MODULE_API_SLOT,
};

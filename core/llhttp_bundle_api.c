/*
 * llhttp_bundle_api.c: llhttp's api.c (settings, execute, error helpers) as
 * its own translation unit; see llhttp_bundle.c for why.
 */
#include <api.c>  /* <>: core/api.c must not be found */

/*
 * llhttp_bundle_http.c: llhttp's http.c (header/message completion logic) as
 * its own translation unit; see llhttp_bundle.c for why.
 */
#include <http.c>

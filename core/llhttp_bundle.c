/*
 * llhttp_bundle.c: compiles the parser half of the llhttp C sources Debian's
 * node-llhttp package installs (/usr/share/llhttp) when no system libllhttp
 * exists.  The sources are included from their installed place, never copied
 * into this repository.  llhttp.c, api.c and http.c declare the same internal
 * callbacks with different pointer types, so each one is its own translation
 * unit (llhttp_bundle_api.c, llhttp_bundle_http.c).
 */
#include <llhttp.c>

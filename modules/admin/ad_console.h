/*
 * ad_console.h: the built-in admin console (ad_console.c) — the static page
 * in web/admin that drives the Admin API from a browser.
 */
#ifndef MX_AD_CONSOLE_H
#define MX_AD_CONSOLE_H

/* Adds the console's GET routes on the "admin" and "web" resources, under
 * `admin.console_path` (default "/admin/"; null or "" turns the console
 * off).  The files come from `admin.console_dir`, else
 * $(pkgdatadir)/web/admin, else the source tree's web/admin; they are read
 * into memory here, once, and kept for the life of the process (owned by
 * this file, never freed: routes cannot be removed).  Missing files are
 * logged, not fatal.  Call from the module's start; 0 or a negative code. */
int ad_console_start(void);

#endif /* MX_AD_CONSOLE_H */

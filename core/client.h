/*
 * client.h: what the outbound HTTP client's files (http_client.c, ssrf.c)
 * share and nothing else sees: address ranges (CIDRs) and the SSRF
 * whitelist the client parsed from its config.
 */
#ifndef MX_CLIENT_H
#define MX_CLIENT_H

#include "core.h"

#include <sys/socket.h>

/* One address range.  IPv4 ranges are kept as IPv4 (family AF_INET, 4
 * bytes); IPv4-mapped IPv6 addresses are unwrapped before matching. */
typedef struct mx__cidr {
    int family;               /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;                 /* prefix length */
} mx__cidr_t;

/* Parses "10.0.0.0/8", "fe80::/10" or a bare address (a /32 or /128).
 * Returns 0 or -EINVAL. */
int mx__cidr_parse(const char *s, mx__cidr_t *out);

/* 1 when `sa` (AF_INET or AF_INET6) lies in `c`, else 0. */
int mx__cidr_match(const mx__cidr_t *c, const struct sockaddr *sa);

/* The whitelist of the running client (http_client.c); borrowed, valid
 * until mx__client_fini.  Sets *n to 0 when the client is not running. */
const mx__cidr_t *mx__client_whitelist(int *n);

#endif /* MX_CLIENT_H */

/*
 * ssrf.c: the guard that keeps outbound requests away from the server's own
 * network (server-side request forgery).  Every address a hostname resolves
 * to is checked here before the client connects, and the client then
 * connects to exactly that address, so a DNS answer that changes between
 * check and use (rebinding) gains nothing.
 *
 * Refused: loopback, private, link-local, CGNAT, "this network", multicast,
 * broadcast and other reserved IPv4 space, documentation and benchmarking
 * ranges, and the IPv6 equivalents; IPv6 forms that embed an IPv4 address
 * (mapped, compatible, NAT64, 6to4) are judged by that IPv4 address.  The
 * config's `ip_range_whitelist` (client.ip_range_whitelist) overrides.
 * Also here: the CIDR parser the whitelist uses.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* IPv4 ranges no outbound request may reach (IANA special-purpose registry,
 * plus multicast and the reserved 240/4 block that holds broadcast). */
static const struct {
    uint32_t net;
    int bits;
} blocked4[] = {
    { 0x00000000u, 8 },   /* 0.0.0.0/8 "this network", incl. unspecified */
    { 0x0a000000u, 8 },   /* 10/8 private */
    { 0x64400000u, 10 },  /* 100.64/10 carrier-grade NAT */
    { 0x7f000000u, 8 },   /* 127/8 loopback */
    { 0xa9fe0000u, 16 },  /* 169.254/16 link-local (cloud metadata!) */
    { 0xac100000u, 12 },  /* 172.16/12 private */
    { 0xc0000000u, 24 },  /* 192.0.0.0/24 IETF protocol assignments */
    { 0xc0000200u, 24 },  /* 192.0.2.0/24 TEST-NET-1 */
    { 0xc0586300u, 24 },  /* 192.88.99.0/24 6to4 relay anycast */
    { 0xc0a80000u, 16 },  /* 192.168/16 private */
    { 0xc6120000u, 15 },  /* 198.18/15 benchmarking */
    { 0xc6336400u, 24 },  /* 198.51.100.0/24 TEST-NET-2 */
    { 0xcb007100u, 24 },  /* 203.0.113.0/24 TEST-NET-3 */
    { 0xe0000000u, 4 },   /* 224/4 multicast */
    { 0xf0000000u, 4 },   /* 240/4 reserved, incl. 255.255.255.255 */
};

/* IPv6 ranges refused outright (the embedded-IPv4 forms are handled in
 * code before this table is consulted). */
static const struct {
    unsigned char net[16];
    int bits;
} blocked6[] = {
    { { 0 }, 96 },                                   /* ::/96 unspecified, loopback, compatible */
    { { 0x00, 0x64, 0xff, 0x9b, 0x00, 0x01 }, 48 },  /* 64:ff9b:1::/48 local NAT64 */
    { { 0x01, 0x00 }, 64 },                          /* 100::/64 discard-only */
    { { 0x20, 0x01, 0x00, 0x00 }, 32 },              /* 2001::/32 Teredo */
    { { 0x20, 0x01, 0x00, 0x02, 0x00, 0x00 }, 48 },  /* 2001:2::/48 benchmarking */
    { { 0x20, 0x01, 0x0d, 0xb8 }, 32 },              /* 2001:db8::/32 documentation */
    { { 0x3f, 0xff, 0x00 }, 20 },                    /* 3fff::/20 documentation */
    { { 0xfc }, 7 },                                 /* fc00::/7 unique local */
    { { 0xfe, 0x80 }, 10 },                          /* fe80::/10 link-local */
    { { 0xfe, 0xc0 }, 10 },                          /* fec0::/10 site-local */
    { { 0xff }, 8 },                                 /* ff00::/8 multicast */
};

static int prefix_eq(const unsigned char *a, const unsigned char *b, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

static int v4_blocked(uint32_t a)
{
    for (size_t i = 0; i < sizeof(blocked4) / sizeof(blocked4[0]); i++) {
        uint32_t mask = 0xffffffffu << (32 - blocked4[i].bits);
        if ((a & mask) == blocked4[i].net)
            return 1;
    }
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* An IPv6 address that carries an IPv4 one: ::ffff:a.b.c.d (mapped),
 * 64:ff9b::a.b.c.d (NAT64), 2002:aabb:ccdd::/48 (6to4).  Returns 1 and the
 * IPv4 address in *out. */
static int v6_embedded_v4(const unsigned char *a, uint32_t *out)
{
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    static const unsigned char nat64[12] = { 0x00, 0x64, 0xff, 0x9b };
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0) {
        *out = be32(a + 12);
        return 1;
    }
    if (a[0] == 0x20 && a[1] == 0x02) {
        *out = be32(a + 2);
        return 1;
    }
    return 0;
}

static int v6_blocked(const unsigned char *a)
{
    uint32_t v4;
    if (v6_embedded_v4(a, &v4))
        return v4_blocked(v4);
    for (size_t i = 0; i < sizeof(blocked6) / sizeof(blocked6[0]); i++)
        if (prefix_eq(a, blocked6[i].net, blocked6[i].bits))
            return 1;
    return 0;
}

/* Reduces `sa` to (family, bytes), unwrapping IPv4-mapped IPv6. */
static int addr_bytes(const struct sockaddr *sa, unsigned char out[16])
{
    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const unsigned char *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (memcmp(b, mapped, 12) == 0) {
            memcpy(out, b + 12, 4);
            return AF_INET;
        }
        memcpy(out, b, 16);
        return AF_INET6;
    }
    return -1;
}

int mx__cidr_parse(const char *s, mx__cidr_t *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (!s || strlen(s) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, s);
    int bits = -1;
    char *slash = strchr(buf, '/');
    if (slash) {
        *slash = '\0';
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || b < 0 || b > 128)
            return -EINVAL;
        bits = (int)b;
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        if (bits > 32)
            return -EINVAL;
        out->bits = bits < 0 ? 32 : bits;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        out->bits = bits < 0 ? 128 : bits;
        /* ::ffff:a.b.c.d/n is an IPv4 range in disguise */
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (memcmp(out->addr, mapped, 12) == 0 && out->bits >= 96) {
            memmove(out->addr, out->addr + 12, 4);
            memset(out->addr + 4, 0, 12);
            out->family = AF_INET;
            out->bits -= 96;
        }
    } else {
        return -EINVAL;
    }
    return 0;
}

int mx__cidr_match(const mx__cidr_t *c, const struct sockaddr *sa)
{
    unsigned char b[16];
    int fam = addr_bytes(sa, b);
    return fam == c->family && prefix_eq(b, c->addr, c->bits);
}

int mx__ssrf_check(const struct sockaddr *addr)
{
    unsigned char b[16];
    int fam = addr_bytes(addr, b);
    int blocked;
    if (fam == AF_INET)
        blocked = v4_blocked(be32(b));
    else if (fam == AF_INET6)
        blocked = v6_blocked(b);
    else
        return MX_ESSRF;   /* not an internet address at all */
    if (!blocked)
        return 0;
    int n;
    const mx__cidr_t *wl = mx__client_whitelist(&n);
    for (int i = 0; i < n; i++)
        if (mx__cidr_match(&wl[i], addr))
            return 0;
    return MX_ESSRF;
}

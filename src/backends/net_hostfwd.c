/*
 * Parsing of host port forwards for the user-mode backend, kept apart from
 * net_slirp.c so that the device and its fuzzer link without libslirp.
 */
#include "backends/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static struct in_addr net_hostfwd_ip(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	return (struct in_addr){ .s_addr = htonl((uint32_t)a << 24 | (uint32_t)b << 16 | (uint32_t)c << 8 | d) };
}

static int net_hostfwd_port(const char *s, size_t n, uint16_t *port)
{
	unsigned v = 0;

	if (n == 0 || n > 5)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* "[ADDR]:PORT" in s[0, n); an empty ADDR keeps *addr. */
static int net_hostfwd_endpoint(const char *s, size_t n, struct in_addr *addr, uint16_t *port)
{
	const char *colon = memchr(s, ':', n);
	char a[INET_ADDRSTRLEN];
	size_t alen;

	if (!colon)
		return -EINVAL;
	alen = (size_t)(colon - s);
	if (alen) {
		if (alen >= sizeof(a))
			return -EINVAL;
		memcpy(a, s, alen);
		a[alen] = '\0';
		if (inet_pton(AF_INET, a, addr) != 1)
			return -EINVAL;
	}
	return net_hostfwd_port(colon + 1, n - alen - 1, port);
}

int net_hostfwd_parse(const char *s, struct net_hostfwd *fwd, char *err, size_t errlen)
{
	const char *rest, *dash;
	uint32_t guest;
	char q[64];

	memset(fwd, 0, sizeof(*fwd));
	fwd->host_addr = net_hostfwd_ip(127, 0, 0, 1);
	fwd->guest_addr = net_hostfwd_ip(10, 0, 2, 15);
	if (strncmp(s, "tcp:", 4) == 0) {
		rest = s + 4;
	} else if (strncmp(s, "udp:", 4) == 0) {
		fwd->udp = true;
		rest = s + 4;
	} else {
		goto err_syntax;
	}
	dash = strchr(rest, '-');
	if (!dash || net_hostfwd_endpoint(rest, (size_t)(dash - rest), &fwd->host_addr, &fwd->host_port) ||
	    net_hostfwd_endpoint(dash + 1, strlen(dash + 1), &fwd->guest_addr, &fwd->guest_port))
		goto err_syntax;
	guest = ntohl(fwd->guest_addr.s_addr);
	if ((guest & 0xffffff00u) != 0x0a000200u) {
		snprintf(err, errlen, "hostfwd '%s': the guest address must be in 10.0.2.0/24",
			 net_printable(q, sizeof(q), s, strlen(s)));
		return -EINVAL;
	}
	return 0;

err_syntax:
	snprintf(err, errlen, "hostfwd '%s': expected tcp|udp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT"
		 " with ports 1-65535", net_printable(q, sizeof(q), s, strlen(s)));
	return -EINVAL;
}

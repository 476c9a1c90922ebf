/*
 * Network backends against the real thing: libslirp answering a guest's
 * DHCP and ARP and forwarding a host port (loopback only), and a tap device
 * in a network namespace this test creates (skipped without root or
 * /dev/net/tun). No traffic leaves the machine.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/net.h"
#include "loop/loop.h"

static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t ip_csum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += get16(p + i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static size_t eth_hdr(uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, guest_mac, 6);
	put16(f + 12, type);
	return 14;
}

/* DHCPDISCOVER from guest_mac, broadcast, UDP checksum 0 (allowed for IPv4). */
static size_t build_dhcp_discover(uint8_t *f, uint32_t xid)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	const size_t bootp_len = 300, ip_len = 20 + 8 + bootp_len;
	uint8_t *ip, *udp, *bp;
	size_t off = eth_hdr(f, bcast, 0x0800);

	ip = f + off;
	memset(ip, 0, ip_len);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)ip_len);
	ip[8] = 64;
	ip[9] = 17;
	memset(ip + 16, 0xff, 4);   /* 255.255.255.255; source 0.0.0.0 */
	put16(ip + 10, ip_csum(ip, 20));
	udp = ip + 20;
	put16(udp, 68);
	put16(udp + 2, 67);
	put16(udp + 4, (uint16_t)(8 + bootp_len));
	bp = udp + 8;
	bp[0] = 1;   /* BOOTREQUEST */
	bp[1] = 1;   /* Ethernet */
	bp[2] = 6;
	bp[4] = (uint8_t)(xid >> 24);
	bp[5] = (uint8_t)(xid >> 16);
	bp[6] = (uint8_t)(xid >> 8);
	bp[7] = (uint8_t)xid;
	memcpy(bp + 28, guest_mac, 6);
	bp[236] = 99;   /* magic cookie */
	bp[237] = 130;
	bp[238] = 83;
	bp[239] = 99;
	bp[240] = 53;   /* DHCP message type: DISCOVER */
	bp[241] = 1;
	bp[242] = 1;
	bp[243] = 255;
	return off + ip_len;
}

/* ARP request "who has tpa, tell 10.0.2.15", padded to the Ethernet minimum. */
static size_t build_arp_request(uint8_t *f, uint32_t tpa)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	size_t off = eth_hdr(f, bcast, 0x0806);
	uint8_t *a = f + off;

	memset(a, 0, 46);
	put16(a, 1);
	put16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, 1);
	memcpy(a + 8, guest_mac, 6);
	a[14] = 10, a[15] = 0, a[16] = 2, a[17] = 15;
	a[24] = (uint8_t)(tpa >> 24), a[25] = (uint8_t)(tpa >> 16), a[26] = (uint8_t)(tpa >> 8), a[27] = (uint8_t)tpa;
	return off + 46;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ll + ts.tv_nsec / 1000000;
}

typedef bool (*frame_match)(const uint8_t *f, size_t len, void *arg);

/* Run the loop (slirp's sockets and timers) and read frames until one matches, up to 3 s. */
static bool wait_frame(struct net_backend *be, struct loop *l, frame_match m, void *arg)
{
	static uint8_t buf[NET_MAX_FRAME];
	long long end = now_ms() + 3000;

	while (now_ms() < end) {
		ssize_t n;

		while ((n = be->ops->recv(be, buf, sizeof(buf))) > 0)
			if (m(buf, (size_t)n, arg))
				return true;
		assert_int_equal(n, -EAGAIN);
		loop_run_once(l, 20);
	}
	return false;
}

static bool match_dhcp_offer(const uint8_t *f, size_t len, void *arg)
{
	uint32_t xid = *(uint32_t *)arg;
	const uint8_t *ip = f + 14, *udp, *bp, *opt, *end = f + len;

	if (len < 14 + 20 + 8 + 240 || get16(f + 12) != 0x0800 || ip[9] != 17)
		return false;
	udp = ip + (ip[0] & 15) * 4;
	bp = udp + 8;
	if (get16(udp) != 67 || get16(udp + 2) != 68 || bp + 240 > end)
		return false;
	if (bp[0] != 2 || get32(bp + 4) != xid)
		return false;
	/* The offer: 10.0.2.15 for this MAC, from the server 10.0.2.2. */
	assert_int_equal(get32(bp + 16), 0x0a00020f);
	assert_memory_equal(bp + 28, guest_mac, 6);
	assert_true(!memcmp(f, guest_mac, 6) || !memcmp(f, "\xff\xff\xff\xff\xff\xff", 6));
	assert_int_equal(get32(bp + 236), 0x63825363);
	for (opt = bp + 240; opt + 2 <= end && opt[0] != 255; opt += opt[0] ? 2 + opt[1] : 1) {
		if (opt[0] == 53) {
			assert_int_equal(opt[2], 2);   /* DHCPOFFER */
			return true;
		}
	}
	fail_msg("DHCP reply without a message type");
	return false;
}

static bool match_arp_reply(const uint8_t *f, size_t len, void *arg)
{
	const uint8_t *a = f + 14;

	if (len < 14 + 28 || get16(f + 12) != 0x0806 || get16(a + 6) != 2)
		return false;
	assert_int_equal(get32(a + 14), 0x0a000202);     /* 10.0.2.2 is at ... */
	assert_memory_equal(a + 18, guest_mac, 6);       /* ... told to us */
	assert_int_equal(get32(a + 24), 0x0a00020f);
	assert_memory_equal(f, guest_mac, 6);
	memcpy(arg, a + 8, 6);                           /* the gateway's MAC */
	return true;
}

struct syn_want {
	uint16_t port;
};

static bool match_syn(const uint8_t *f, size_t len, void *arg)
{
	struct syn_want *w = arg;
	const uint8_t *ip = f + 14, *tcp;

	if (len < 14 + 20 + 20 || get16(f + 12) != 0x0800 || ip[9] != 6)
		return false;
	tcp = ip + (ip[0] & 15) * 4;
	if (get32(ip + 16) != 0x0a00020f || get16(tcp + 2) != w->port)
		return false;
	assert_true(tcp[13] & 0x02);   /* SYN */
	assert_memory_equal(f, guest_mac, 6);
	return true;
}

static int slirp_send(struct net_backend *be, const uint8_t *f, size_t len)
{
	struct iovec iov[2] = { { (void *)f, 10 }, { (void *)(f + 10), len - 10 } };

	return (int)be->ops->send(be, iov, 2);
}

static void test_slirp_dhcp_and_arp(void **state)
{
	struct net_backend *be;
	struct loop *l = loop_new();
	uint8_t f[600], gw_mac[6];
	uint32_t xid = 0x4b455354;
	char err[256] = "";
	size_t len;

	assert_non_null(l);
	assert_int_equal(net_slirp_open(&be, NULL, 0, err, sizeof(err)), 0);
	assert_false(be->vnet_hdr);
	assert_int_equal(be->ops->set_offload, NULL);
	assert_int_equal(net_backend_set_offload(be, NET_OFFLOAD_CSUM), -EOPNOTSUPP);
	assert_int_equal(net_backend_attach(be, l), 0);
	/* Nothing for the guest yet. */
	assert_int_equal(be->ops->recv(be, f, sizeof(f)), -EAGAIN);

	len = build_dhcp_discover(f, xid);
	assert_int_equal(slirp_send(be, f, len), (int)len);
	assert_true(wait_frame(be, l, match_dhcp_offer, &xid));

	len = build_arp_request(f, 0x0a000202);
	assert_int_equal(slirp_send(be, f, len), (int)len);
	assert_true(wait_frame(be, l, match_arp_reply, gw_mac));
	assert_int_equal(be->dropped, 0);

	net_backend_detach(be, l);
	net_backend_free(be);
	loop_free(l);
}

static uint16_t free_tcp_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &alen), 0);
	close(s);
	return ntohs(a.sin_port);
}

static void test_slirp_hostfwd_connects_to_guest(void **state)
{
	struct net_hostfwd fwd;
	struct net_backend *be;
	struct loop *l = loop_new();
	struct syn_want w = { .port = 2222 };
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	uint8_t f[100], gw_mac[6];
	char spec[64], err[256] = "";
	uint16_t port = free_tcp_port();
	size_t len;
	int c;

	assert_non_null(l);
	snprintf(spec, sizeof(spec), "tcp::%u-:2222", port);
	assert_int_equal(net_hostfwd_parse(spec, &fwd, err, sizeof(err)), 0);
	assert_int_equal(net_slirp_open(&be, &fwd, 1, err, sizeof(err)), 0);
	assert_int_equal(net_backend_attach(be, l), 0);
	/* Introduce the guest (slirp learns its MAC from the ARP request). */
	len = build_arp_request(f, 0x0a000202);
	assert_int_equal(slirp_send(be, f, len), (int)len);
	assert_true(wait_frame(be, l, match_arp_reply, gw_mac));

	/* A host client on 127.0.0.1:port becomes a SYN to 10.0.2.15:2222. */
	c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(c >= 0);
	a.sin_port = htons(port);
	assert_true(connect(c, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EINPROGRESS);
	assert_true(wait_frame(be, l, match_syn, &w));
	close(c);

	/* The same port cannot be forwarded twice. */
	{
		struct net_backend *be2 = (void *)1;

		assert_true(net_slirp_open(&be2, &fwd, 1, err, sizeof(err)) < 0);
		assert_null(be2);
		assert_non_null(strstr(err, "hostfwd"));
		assert_non_null(strstr(err, "127.0.0.1"));
	}
	net_backend_detach(be, l);
	net_backend_free(be);
	loop_free(l);
}

static void test_hostfwd_parse(void **state)
{
	struct net_hostfwd f;
	char err[256];

	assert_int_equal(net_hostfwd_parse("tcp::8080-:80", &f, err, sizeof(err)), 0);
	assert_false(f.udp);
	assert_int_equal(f.host_port, 8080);
	assert_int_equal(f.guest_port, 80);
	assert_int_equal(ntohl(f.host_addr.s_addr), INADDR_LOOPBACK);
	assert_int_equal(ntohl(f.guest_addr.s_addr), 0x0a00020f);
	assert_int_equal(net_hostfwd_parse("udp:0.0.0.0:65535-10.0.2.99:1", &f, err, sizeof(err)), 0);
	assert_true(f.udp);
	assert_int_equal(f.host_addr.s_addr, 0);
	assert_int_equal(f.host_port, 65535);
	assert_int_equal(ntohl(f.guest_addr.s_addr), 0x0a000263);
	assert_int_equal(f.guest_port, 1);

	static const char *const bad[] = {
		"", "tcp", "tcp:", "tcp::", "tcp::80", "tcp::80-", "tcp::80-:", "tcp::-:22", "sctp::1-:2",
		"TCP::1-:2", "tcp::0-:22", "tcp::65536-:22", "tcp::22-:99999", "tcp::2x-:22", "tcp::+22-:22",
		"tcp:1.2.3:22-:22", "tcp:localhost:22-:22", "tcp::22-192.168.1.5:22", "tcp::22-10.0.3.15:22",
		"tcp::22-:22-:23", "tcp:1.2.3.4.5.6.7.8.9.10.11:1-:2", "tcp::1:2-:3", "tcp::1\n-:2", "tcp::1-10.0.2.15:\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (net_hostfwd_parse(bad[i], &f, err, sizeof(err)) != -EINVAL)
			fail_msg("hostfwd '%s' was accepted", bad[i]);
		assert_non_null(strstr(err, "hostfwd"));
		assert_null(strchr(err, '\n'));
	}
}

/* ---- tap ---- */

static void test_tap_bad_names(void **state)
{
	struct net_backend *be = (void *)1;
	char err[256];

	assert_int_equal(net_tap_open(&be, "", err, sizeof(err)), -EINVAL);
	assert_null(be);
	assert_int_equal(net_tap_open(&be, "0123456789abcdefg", err, sizeof(err)), -EINVAL);
	assert_int_equal(net_tap_open(&be, "a/b", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "tap"));
	assert_int_equal(net_tap_open(&be, "a:b", err, sizeof(err)), -EINVAL);
	assert_int_equal(net_tap_open(&be, "x\ny", err, sizeof(err)), -EINVAL);
	assert_null(strchr(err, '\n'));
	assert_non_null(strstr(err, "'x?y'"));
}

static void ifup(const char *name)
{
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	assert_true(s >= 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	assert_int_equal(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	assert_int_equal(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
	close(s);
}

static size_t test_frame(uint8_t *f, uint16_t type, unsigned seed)
{
	static const uint8_t dst[6] = { 0x02, 0, 0, 0, 0, 0x02 };
	size_t off = eth_hdr(f, dst, type);

	for (size_t i = 0; i < 200; i++)
		f[off + i] = (uint8_t)(seed + i);
	return off + 200;
}

/* As an unprivileged user, opening a tap fails with a helpful message. */
static void check_tap_eperm(void)
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct net_backend *be;
		char err[256] = "";
		int rc;

		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(2);
		rc = net_tap_open(&be, "kestrel0", err, sizeof(err));
		/* Where /dev/net/tun is 0600 the open fails already, else TUNSETIFF does. */
		if (rc == -EPERM && !strcmp(err, "tap kestrel0: Operation not permitted (need CAP_NET_ADMIN)"))
			_exit(0);
		if (rc == -EACCES && !strncmp(err, "tap kestrel0: /dev/net/tun: Permission denied (need", 51))
			_exit(0);
		fprintf(stderr, "unexpected: %d %s\n", rc, err);
		_exit(1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_tap_in_netns(void **state)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
	struct net_backend *be;
	uint8_t f[300], buf[NET_VNET_HDR_LEN + 2000];
	uint8_t hdr[NET_VNET_HDR_LEN] = { 0 };
	struct iovec iov[2];
	char err[256] = "";
	int orig, ps, got = 0;
	size_t len;

	if (geteuid() != 0 || access("/dev/net/tun", R_OK | W_OK) != 0) {
		print_message("skipped: tap test needs root and /dev/net/tun\n");
		skip();
	}
	orig = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	assert_true(orig >= 0);
	if (unshare(CLONE_NEWNET) != 0) {
		print_message("skipped: cannot create a network namespace: %s\n", strerror(errno));
		close(orig);
		skip();
	}
	/* From here on everything happens in the private namespace. */
	check_tap_eperm();
	assert_int_equal(net_tap_open(&be, "ktap0", err, sizeof(err)), 0);
	assert_true(be->vnet_hdr);
	assert_int_equal(net_backend_set_offload(be, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6), 0);
	assert_int_equal(net_backend_set_offload(be, 0), 0);
	ifup("ktap0");
	sll.sll_ifindex = (int)if_nametoindex("ktap0");
	assert_true(sll.sll_ifindex > 0);
	ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	assert_true(ps >= 0);
	assert_int_equal(bind(ps, (struct sockaddr *)&sll, sizeof(sll)), 0);

	/* Guest -> host: header + frame into the tap, the frame comes out of the interface. */
	len = test_frame(f, 0x88b5, 1);
	iov[0] = (struct iovec){ hdr, sizeof(hdr) };
	iov[1] = (struct iovec){ f, len };
	assert_int_equal(be->ops->send(be, iov, 2), (ssize_t)(sizeof(hdr) + len));
	for (long long end = now_ms() + 3000; !got && now_ms() < end;) {
		struct pollfd p = { .fd = ps, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = recv(ps, buf, sizeof(buf), 0);
		if (n >= 14 && get16(buf + 12) == 0x88b5) {
			assert_int_equal(n, (ssize_t)len);
			assert_memory_equal(buf, f, len);
			got = 1;
		}
	}
	assert_true(got);

	/* Host -> guest: a frame sent on the interface is read from the tap with a header. */
	len = test_frame(f, 0x88b6, 2);
	memcpy(sll.sll_addr, f, 6);
	sll.sll_halen = 6;
	assert_int_equal(sendto(ps, f, len, 0, (struct sockaddr *)&sll, sizeof(sll)), (ssize_t)len);
	got = 0;
	for (long long end = now_ms() + 3000; !got && now_ms() < end;) {
		struct pollfd p = { .fd = be->fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		while ((n = be->ops->recv(be, buf, sizeof(buf))) > 0) {
			if (n >= NET_VNET_HDR_LEN + 14 && get16(buf + NET_VNET_HDR_LEN + 12) == 0x88b6) {
				assert_int_equal(n, (ssize_t)(NET_VNET_HDR_LEN + len));
				assert_int_equal(buf[1], 0);   /* gso_type NONE */
				assert_memory_equal(buf + NET_VNET_HDR_LEN, f, len);
				got = 1;
			}
		}
		assert_int_equal(n, -EAGAIN);
	}
	assert_true(got);

	close(ps);
	net_backend_free(be);
	assert_int_equal(setns(orig, CLONE_NEWNET), 0);
	close(orig);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostfwd_parse),
		cmocka_unit_test(test_slirp_dhcp_and_arp),
		cmocka_unit_test(test_slirp_hostfwd_connects_to_guest),
		cmocka_unit_test(test_tap_bad_names),
		cmocka_unit_test(test_tap_in_netns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

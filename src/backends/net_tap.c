/*
 * TAP backend: a Linux tap interface through /dev/net/tun. The fd carries
 * one Ethernet frame per read()/write(), each preceded by a 12-byte
 * virtio_net_hdr (IFF_VNET_HDR + TUNSETVNETHDRSZ 12: the kernel reads and
 * writes the first 10 bytes and skips num_buffers), so the guest's
 * checksum and TSO offloads pass through unchanged. TUNSETOFFLOAD says
 * which offloaded frames the kernel may hand us; the device sets it from
 * the guest's GUEST_CSUM/GUEST_TSO4/GUEST_TSO6.
 */
#include "backends/net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct net_tap {
	struct net_backend be;
	char ifname[IFNAMSIZ];
};

static struct net_tap *net_tap_of(struct net_backend *be)
{
	return (struct net_tap *)be;
}

static ssize_t net_tap_send(struct net_backend *be, const struct iovec *iov, int iovcnt)
{
	ssize_t n = writev(be->fd, iov, iovcnt);

	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static ssize_t net_tap_recv(struct net_backend *be, void *buf, size_t len)
{
	ssize_t n = read(be->fd, buf, len);

	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	/* A tap read always returns a whole frame; 0 only when the interface went away. */
	return n == 0 ? -EIO : n;
}

static int net_tap_set_offload(struct net_backend *be, unsigned offloads)
{
	unsigned flags = 0;

	if (offloads & NET_OFFLOAD_CSUM) {
		flags |= TUN_F_CSUM;
		/* The kernel refuses TSO without checksum offload; so does the spec (5.1.3.1). */
		if (offloads & NET_OFFLOAD_TSO4)
			flags |= TUN_F_TSO4;
		if (offloads & NET_OFFLOAD_TSO6)
			flags |= TUN_F_TSO6;
	}
	return ioctl(be->fd, TUNSETOFFLOAD, flags) < 0 ? -errno : 0;
}

static void net_tap_free(struct net_backend *be)
{
	struct net_tap *t = net_tap_of(be);

	if (be->fd >= 0)
		close(be->fd);
	free(t);
}

static const struct net_backend_ops net_tap_ops = {
	.send = net_tap_send,
	.recv = net_tap_recv,
	.set_offload = net_tap_set_offload,
	.free = net_tap_free,
};

static const char *net_tap_hint(int e)
{
	switch (e) {
	case EPERM:
	case EACCES:
		return " (need CAP_NET_ADMIN)";
	case EBUSY:
		return " (is another process using it?)";
	case EINVAL:
		return " (an existing tun/tap device of another kind or without vnet headers?)";
	default:
		return "";
	}
}

int net_tap_open(struct net_backend **out, const char *ifname, char *err, size_t errlen)
{
	struct net_tap *t;
	struct ifreq ifr;
	unsigned features = 0;
	int hdr = NET_VNET_HDR_LEN, rc;

	*out = NULL;
	if (!ifname || !net_ifname_ok(ifname, strlen(ifname))) {
		char q[40];

		snprintf(err, errlen, "tap '%s': an interface name is 1 to %d printable characters "
			 "without '/', ':' or spaces", ifname ? net_printable(q, sizeof(q), ifname, strlen(ifname)) : "",
			 IFNAMSIZ - 1);
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "tap %s: out of memory", ifname);
		return -ENOMEM;
	}
	t->be.ops = &net_tap_ops;
	t->be.kind = "tap";
	t->be.vnet_hdr = true;
	t->be.fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (t->be.fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "tap %s: /dev/net/tun: %s%s", ifname, strerror(-rc),
			 rc == -EACCES ? " (need read/write access to it, or CAP_NET_ADMIN)" : "");
		goto err_free;
	}
	if (ioctl(t->be.fd, TUNGETFEATURES, &features) == 0 && !(features & IFF_VNET_HDR)) {
		rc = -EOPNOTSUPP;
		snprintf(err, errlen, "tap %s: the kernel's tun driver has no IFF_VNET_HDR", ifname);
		goto err_close;
	}

	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, ifname, strlen(ifname));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(t->be.fd, TUNSETIFF, &ifr) < 0) {
		rc = -errno;
		snprintf(err, errlen, "tap %s: %s%s", ifname, strerror(-rc), net_tap_hint(-rc));
		goto err_close;
	}
	memcpy(t->ifname, ifr.ifr_name, IFNAMSIZ - 1);
	t->ifname[IFNAMSIZ - 1] = '\0';

	if (ioctl(t->be.fd, TUNSETVNETHDRSZ, &hdr) < 0) {
		rc = -errno;
		snprintf(err, errlen, "tap %s: TUNSETVNETHDRSZ %d: %s", t->ifname, hdr, strerror(-rc));
		goto err_close;
	}
	/* No offloaded frames towards the guest until it negotiated them. */
	rc = net_tap_set_offload(&t->be, 0);
	if (rc < 0) {
		snprintf(err, errlen, "tap %s: TUNSETOFFLOAD: %s", t->ifname, strerror(-rc));
		goto err_close;
	}
	*out = &t->be;
	return 0;

err_close:
	close(t->be.fd);
err_free:
	free(t);
	return rc;
}

/*
 * Network backends: where a NIC's frames go and where received frames come
 * from. The device model (virtio-net, later e1000) only calls these ops; the
 * backend alone touches host fds.
 *
 * A frame crosses this interface with a 12-byte virtio_net_hdr (the Virtio 1.x
 * layout, num_buffers included) in front of it exactly when the backend's
 * `vnet_hdr` is true (tap with IFF_VNET_HDR); otherwise it is a bare Ethernet
 * frame with complete checksums (slirp), and the device must not offer the
 * guest any checksum or segmentation offload.
 *
 * Threading: every op runs on the I/O thread that polls `fd` (see
 * net_backend_attach()); net_backend_free() runs after that loop stopped.
 */
#ifndef KESTREL_NET_BACKEND_H
#define KESTREL_NET_BACKEND_H

#include "util/compiler.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct loop;

#define NET_VNET_HDR_LEN 12          /* struct virtio_net_hdr with num_buffers */
#define NET_MAX_FRAME    65550       /* 64 KiB IP packet (TSO) + Ethernet header, rounded */
#define NET_MAX_HOSTFWD  8

/* Offloads the reader of the backend (the guest) accepts: TUNSETOFFLOAD's bits. */
enum net_offload {
	NET_OFFLOAD_CSUM = 1u << 0,  /* frames with a partial checksum (NEEDS_CSUM) */
	NET_OFFLOAD_TSO4 = 1u << 1,  /* TCPv4 super-frames (needs CSUM) */
	NET_OFFLOAD_TSO6 = 1u << 2,  /* TCPv6 super-frames (needs CSUM) */
};

struct net_backend;

struct net_backend_ops {
	/*
	 * Send one frame given as iovecs (with the vnet header in front iff
	 * be->vnet_hdr). Returns bytes taken, -EAGAIN when the backend cannot take
	 * it now (poll `fd` for EPOLLOUT and send it again), other -errno when the
	 * frame was refused (count it, do not retry).
	 */
	ssize_t (*send)(struct net_backend *be, const struct iovec *iov, int iovcnt);
	/*
	 * Receive one frame into buf (with the vnet header iff be->vnet_hdr).
	 * Returns its length, -EAGAIN when none is waiting, other -errno on error.
	 */
	ssize_t (*recv)(struct net_backend *be, void *buf, size_t len);
	/* Which offloads (enum net_offload) frames from recv() may use. Optional. */
	int (*set_offload)(struct net_backend *be, unsigned offloads);
	/* Register backend-internal fds (slirp's sockets and timers) with the I/O loop. Optional. */
	int (*attach)(struct net_backend *be, struct loop *l);
	void (*detach)(struct net_backend *be, struct loop *l);
	void (*free)(struct net_backend *be);
};

/* Embedded as the first member of each backend's state. */
struct net_backend {
	const struct net_backend_ops *ops;
	const char *kind;                /* "tap", "user", ... for messages */
	bool vnet_hdr;
	/* Readable: recv() may return a frame. Writable: send() may make progress again. */
	int fd;
	uint64_t dropped;                /* frames the backend itself dropped (slirp's queue full) */
};

struct net_hostfwd {
	bool udp;
	struct in_addr host_addr, guest_addr;
	uint16_t host_port, guest_port;
};

enum net_backend_kind {
	NET_BACKEND_NONE,
	NET_BACKEND_TAP,
	NET_BACKEND_USER,
	NET_BACKEND_VHOST_USER,   /* no backend in kestrel: a vhost-user back-end serves the rings */
};

/* Which backend a NIC opens: a tap by name, or user-mode networking with port forwards. */
struct net_backend_spec {
	enum net_backend_kind kind;
	const char *ifname;                    /* tap */
	const struct net_hostfwd *hostfwd;     /* user */
	unsigned nr_hostfwd;
};

/* Open the backend spec names. 0 or -errno with a one-line reason in err (-EINVAL: none named). */
KESTREL_MUST_CHECK int net_backend_open(struct net_backend **out, const struct net_backend_spec *spec,
		char *err, size_t errlen);

/*
 * Open /dev/net/tun as tap interface `ifname` (created if it does not exist)
 * with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, a 12-byte vnet header and no offloads
 * until set_offload(). 0 or -errno with a one-line reason in err.
 */
KESTREL_MUST_CHECK int net_tap_open(struct net_backend **out, const char *ifname, char *err, size_t errlen);

/*
 * User-mode networking through libslirp: 10.0.2.0/24, gateway and host
 * 10.0.2.2 (reaching the host's 127.0.0.1 too), DNS 10.0.2.3, DHCP from
 * 10.0.2.15, plus host port forwards.
 */
KESTREL_MUST_CHECK int net_slirp_open(struct net_backend **out, const struct net_hostfwd *fwd, unsigned nr_fwd,
		   char *err, size_t errlen);

/*
 * Parse one "tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT" (or udp:...).
 * HOSTADDR defaults to 127.0.0.1 (only this machine can connect; give
 * 0.0.0.0 to accept from anywhere), GUESTADDR to 10.0.2.15.
 */
KESTREL_MUST_CHECK int net_hostfwd_parse(const char *s, struct net_hostfwd *fwd, char *err, size_t errlen);

/*
 * User input quoted in an error message: at most cap - 1 bytes of s[0, len),
 * every byte outside printable ASCII shown as '?', so a message stays one line.
 */
static inline const char *net_printable(char *dst, size_t cap, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len && s[i] && i + 1 < cap; i++)
		dst[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	dst[i] = '\0';
	return dst;
}

/* A Linux interface name: 1 to 15 printable characters, none of them '/', ':' or a space. */
static inline bool net_ifname_ok(const char *s, size_t len)
{
	if (len == 0 || len >= 16)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '/' || s[i] == ':')
			return false;
	return true;
}

static inline ssize_t net_backend_send(struct net_backend *be, const struct iovec *iov, int iovcnt)
{
	return be->ops->send(be, iov, iovcnt);
}

static inline ssize_t net_backend_recv(struct net_backend *be, void *buf, size_t len)
{
	return be->ops->recv(be, buf, len);
}

KESTREL_MUST_CHECK static inline int net_backend_set_offload(struct net_backend *be, unsigned offloads)
{
	return be->ops->set_offload ? be->ops->set_offload(be, offloads) : (offloads ? -EOPNOTSUPP : 0);
}

KESTREL_MUST_CHECK static inline int net_backend_attach(struct net_backend *be, struct loop *l)
{
	return be->ops->attach ? be->ops->attach(be, l) : 0;
}

static inline void net_backend_detach(struct net_backend *be, struct loop *l)
{
	if (be->ops->detach)
		be->ops->detach(be, l);
}

static inline void net_backend_free(struct net_backend *be)
{
	if (be)
		be->ops->free(be);
}

#endif

/*
 * vhost-user front-end messages. See vhost_user.h for the contract; the
 * socket is blocking, each reply is waited for with poll() and a timeout so
 * a hung back-end cannot hang the VMM thread for ever.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/un.h>

#include "mem/gm.h"
#include "util/log.h"
#include "vhost/vhost_user.h"

const char *vhu_request_name(uint32_t request)
{
	switch (request) {
	case VHU_GET_FEATURES: return "GET_FEATURES";
	case VHU_SET_FEATURES: return "SET_FEATURES";
	case VHU_SET_OWNER: return "SET_OWNER";
	case VHU_RESET_OWNER: return "RESET_OWNER";
	case VHU_SET_MEM_TABLE: return "SET_MEM_TABLE";
	case VHU_SET_LOG_BASE: return "SET_LOG_BASE";
	case VHU_SET_LOG_FD: return "SET_LOG_FD";
	case VHU_SET_VRING_NUM: return "SET_VRING_NUM";
	case VHU_SET_VRING_ADDR: return "SET_VRING_ADDR";
	case VHU_SET_VRING_BASE: return "SET_VRING_BASE";
	case VHU_GET_VRING_BASE: return "GET_VRING_BASE";
	case VHU_SET_VRING_KICK: return "SET_VRING_KICK";
	case VHU_SET_VRING_CALL: return "SET_VRING_CALL";
	case VHU_SET_VRING_ERR: return "SET_VRING_ERR";
	case VHU_GET_PROTOCOL_FEATURES: return "GET_PROTOCOL_FEATURES";
	case VHU_SET_PROTOCOL_FEATURES: return "SET_PROTOCOL_FEATURES";
	case VHU_GET_QUEUE_NUM: return "GET_QUEUE_NUM";
	case VHU_SET_VRING_ENABLE: return "SET_VRING_ENABLE";
	case VHU_GET_CONFIG: return "GET_CONFIG";
	case VHU_SET_CONFIG: return "SET_CONFIG";
	default: return "unknown";
	}
}

void vhu_conn_init(struct vhu_conn *c, int fd, const char *name)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->timeout_ms = VHU_DEFAULT_TIMEOUT_MS;
	snprintf(c->name, sizeof(c->name), "%s", name ? name : "vhost-user");
}

int vhu_connect(struct vhu_conn *c, const char *path, const char *name, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, e;

	vhu_conn_init(c, -1, name);
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "vhost-user socket path too long (at most %zu bytes): %s",
			 sizeof(sa.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		e = -errno;
		snprintf(err, errlen, "vhost-user %s: socket: %s", path, strerror(-e));
		return e;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = -errno;
		close(fd);
		snprintf(err, errlen, "vhost-user %s: cannot connect: %s (is the back-end running?)", path,
			 strerror(-e));
		return e;
	}
	c->fd = fd;
	return 0;
}

void vhu_close(struct vhu_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->broken = true;
}

bool vhu_conn_broken(const struct vhu_conn *c)
{
	return c->broken || c->fd < 0;
}

int vhu_check_reply(const struct vhu_hdr *h, uint32_t request, size_t want_size, unsigned nfds,
		    char *why, size_t whylen)
{
	if ((h->flags & VHU_VERSION_MASK) != VHU_VERSION) {
		snprintf(why, whylen, "version %u, not 1", h->flags & VHU_VERSION_MASK);
		return -EPROTO;
	}
	if (!(h->flags & VHU_FLAG_REPLY)) {
		snprintf(why, whylen, "reply flag missing (flags %#x)", h->flags);
		return -EPROTO;
	}
	if (h->flags & ~(VHU_VERSION_MASK | VHU_FLAG_REPLY)) {
		snprintf(why, whylen, "unknown flags %#x", h->flags);
		return -EPROTO;
	}
	if (h->request != request) {
		snprintf(why, whylen, "answers request %u (%s), not %s", h->request, vhu_request_name(h->request),
			 vhu_request_name(request));
		return -EPROTO;
	}
	if (h->size != want_size) {
		snprintf(why, whylen, "payload of %u bytes, not %zu", h->size, want_size);
		return -EPROTO;
	}
	if (nfds) {
		snprintf(why, whylen, "%u unexpected file descriptor(s)", nfds);
		return -EPROTO;
	}
	return 0;
}

/* The connection is unusable from now on: one line says why. */
static int vhu_fail(struct vhu_conn *c, int e, uint32_t request, const char *why)
{
	if (!c->broken) {
		snprintf(c->error, sizeof(c->error), "%s: %s", vhu_request_name(request), why);
		if (!c->quiet)
			log_err(c->name, "vhost-user back-end: %s; connection given up", c->error);
	}
	c->broken = true;
	return e;
}

static int vhu_send(struct vhu_conn *c, const struct vhu_msg *m, const int *fds, unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
		struct cmsghdr align;
	} u;
	size_t len = sizeof(m->hdr) + m->hdr.size;
	struct iovec iov = { .iov_base = (void *)m, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int e = -errno;

		return vhu_fail(c, e == -EPIPE ? -ECONNRESET : e, m->hdr.request, strerror(-e));
	}
	/* A stream socket takes a message this small whole; anything else would split the fds from it. */
	if ((size_t)n != len)
		return vhu_fail(c, -EIO, m->hdr.request, "short send");
	return 0;
}

/* Wait for readability within the connection's timeout. */
static int vhu_wait(struct vhu_conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	int r;

	do
		r = poll(&p, 1, c->timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

/*
 * Read exactly len bytes. Any fds that arrive are closed at once and
 * counted in *nfds: no reply this front-end asks for carries one.
 */
static int vhu_read_full(struct vhu_conn *c, void *buf, size_t len, unsigned *nfds)
{
	size_t got = 0;

	while (got < len) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
			struct cmsghdr align;
		} u;
		struct iovec iov = { .iov_base = (char *)buf + got, .iov_len = len - got };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
				     .msg_controllen = sizeof(u.buf) };
		ssize_t n;
		int e = vhu_wait(c);

		if (e < 0)
			return e;
		n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len < CMSG_LEN(0))
				continue;
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < k; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
				close(fd);
				(*nfds)++;
			}
		}
		if (mh.msg_flags & MSG_CTRUNC)
			(*nfds)++;   /* more fds than we had room for: the kernel closed them */
		if (n == 0)
			return -ECONNRESET;
		got += (size_t)n;
	}
	return 0;
}

/* Read and check the reply to `request`, whose payload must be exactly want_size bytes. */
static int vhu_recv_reply(struct vhu_conn *c, uint32_t request, void *payload, size_t want_size)
{
	struct vhu_hdr h;
	union vhu_payload p;
	unsigned nfds = 0;
	char why[128];
	int e;

	e = vhu_read_full(c, &h, sizeof(h), &nfds);
	if (e < 0)
		return vhu_fail(c, e, request, e == -ETIMEDOUT ? "no reply in time" :
				e == -ECONNRESET ? "back-end closed the connection" : strerror(-e));
	/* Check the size before reading on: the header's size field is the back-end's word. */
	if (h.size > VHU_MAX_PAYLOAD) {
		snprintf(why, sizeof(why), "payload of %u bytes (at most %zu)", h.size, VHU_MAX_PAYLOAD);
		return vhu_fail(c, -EPROTO, request, why);
	}
	e = vhu_read_full(c, &p, h.size, &nfds);
	if (e < 0)
		return vhu_fail(c, e, request, e == -ETIMEDOUT ? "reply cut short" :
				e == -ECONNRESET ? "back-end closed the connection" : strerror(-e));
	e = vhu_check_reply(&h, request, want_size, nfds, why, sizeof(why));
	if (e < 0)
		return vhu_fail(c, e, request, why);
	memcpy(payload, &p, want_size);
	return 0;
}

static int vhu_begin(struct vhu_conn *c, struct vhu_msg *m, uint32_t request, uint32_t size)
{
	if (vhu_conn_broken(c))
		return -ENOTCONN;
	memset(m, 0, sizeof(*m));
	m->hdr.request = request;
	m->hdr.flags = VHU_VERSION;
	m->hdr.size = size;
	return 0;
}

/*
 * Send a request that has no reply of its own; with REPLY_ACK negotiated
 * ask for one and turn a non-zero status into -EIO.
 */
static int vhu_request(struct vhu_conn *c, struct vhu_msg *m, const int *fds, unsigned nfds)
{
	bool ack = c->protocol_features & (1ull << VHU_PROTOCOL_F_REPLY_ACK);
	uint64_t status;
	int e;

	if (ack)
		m->hdr.flags |= VHU_FLAG_NEED_REPLY;
	e = vhu_send(c, m, fds, nfds);
	if (e < 0 || !ack)
		return e;
	e = vhu_recv_reply(c, m->hdr.request, &status, sizeof(status));
	if (e < 0)
		return e;
	if (status) {
		/* A refusal is not a protocol error: the connection stays usable. */
		snprintf(c->error, sizeof(c->error), "%s refused (status %#llx)", vhu_request_name(m->hdr.request),
			 (unsigned long long)status);
		if (!c->quiet)
			log_err(c->name, "vhost-user back-end: %s", c->error);
		return -EIO;
	}
	return 0;
}

/* A request whose reply carries a payload (GET_*). */
static int vhu_query(struct vhu_conn *c, struct vhu_msg *m, void *out, size_t out_size)
{
	int e = vhu_send(c, m, NULL, 0);

	return e < 0 ? e : vhu_recv_reply(c, m->hdr.request, out, out_size);
}

static int vhu_get_u64(struct vhu_conn *c, uint32_t request, uint64_t *v)
{
	struct vhu_msg m;
	int e = vhu_begin(c, &m, request, 0);

	return e < 0 ? e : vhu_query(c, &m, v, sizeof(*v));
}

int vhu_get_features(struct vhu_conn *c, uint64_t *features)
{
	return vhu_get_u64(c, VHU_GET_FEATURES, features);
}

int vhu_set_features(struct vhu_conn *c, uint64_t features)
{
	struct vhu_msg m;
	int e = vhu_begin(c, &m, VHU_SET_FEATURES, sizeof(uint64_t));

	if (e < 0)
		return e;
	m.p.u64 = features;
	e = vhu_request(c, &m, NULL, 0);
	if (e == 0)
		c->features = features;
	return e;
}

int vhu_get_protocol_features(struct vhu_conn *c, uint64_t *features)
{
	return vhu_get_u64(c, VHU_GET_PROTOCOL_FEATURES, features);
}

int vhu_set_protocol_features(struct vhu_conn *c, uint64_t features)
{
	struct vhu_msg m;
	int e = vhu_begin(c, &m, VHU_SET_PROTOCOL_FEATURES, sizeof(uint64_t));

	if (e < 0)
		return e;
	m.p.u64 = features;
	/* Sent before REPLY_ACK is in force: no ack is asked for this one. */
	e = vhu_send(c, &m, NULL, 0);
	if (e == 0)
		c->protocol_features = features;
	return e;
}

int vhu_set_owner(struct vhu_conn *c)
{
	struct vhu_msg m;
	int e = vhu_begin(c, &m, VHU_SET_OWNER, 0);

	return e < 0 ? e : vhu_request(c, &m, NULL, 0);
}

int vhu_set_mem_table(struct vhu_conn *c, const struct vhu_mem_region *regions, const int *fds, unsigned n)
{
	struct vhu_msg m;
	int e;

	if (n == 0 || n > VHU_MAX_REGIONS)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (fds[i] < 0 || regions[i].size == 0)
			return -EINVAL;
	e = vhu_begin(c, &m, VHU_SET_MEM_TABLE, (uint32_t)(8 + n * sizeof(struct vhu_mem_region)));
	if (e < 0)
		return e;
	m.p.mem.nregions = n;
	memcpy(m.p.mem.regions, regions, n * sizeof(*regions));
	return vhu_request(c, &m, fds, n);
}

static int vhu_set_state(struct vhu_conn *c, uint32_t request, unsigned ring, unsigned num)
{
	struct vhu_msg m;
	int e;

	if (ring >= VHU_MAX_RINGS)
		return -EINVAL;
	e = vhu_begin(c, &m, request, sizeof(struct vhu_vring_state));
	if (e < 0)
		return e;
	m.p.state.index = ring;
	m.p.state.num = num;
	return vhu_request(c, &m, NULL, 0);
}

int vhu_set_vring_num(struct vhu_conn *c, unsigned ring, unsigned num)
{
	return vhu_set_state(c, VHU_SET_VRING_NUM, ring, num);
}

int vhu_set_vring_base(struct vhu_conn *c, unsigned ring, unsigned base)
{
	return vhu_set_state(c, VHU_SET_VRING_BASE, ring, base);
}

int vhu_set_vring_enable(struct vhu_conn *c, unsigned ring, bool enable)
{
	return vhu_set_state(c, VHU_SET_VRING_ENABLE, ring, enable);
}

int vhu_set_vring_addr(struct vhu_conn *c, const struct vhu_vring_addr *addr)
{
	struct vhu_msg m;
	int e;

	if (addr->index >= VHU_MAX_RINGS)
		return -EINVAL;
	e = vhu_begin(c, &m, VHU_SET_VRING_ADDR, sizeof(*addr));
	if (e < 0)
		return e;
	m.p.addr = *addr;
	return vhu_request(c, &m, NULL, 0);
}

int vhu_get_vring_base(struct vhu_conn *c, unsigned ring, uint32_t *base)
{
	struct vhu_vring_state st;
	struct vhu_msg m;
	int e;

	if (ring >= VHU_MAX_RINGS)
		return -EINVAL;
	e = vhu_begin(c, &m, VHU_GET_VRING_BASE, sizeof(struct vhu_vring_state));
	if (e < 0)
		return e;
	m.p.state.index = ring;
	e = vhu_query(c, &m, &st, sizeof(st));
	if (e < 0)
		return e;
	if (st.index != ring) {
		char why[64];

		snprintf(why, sizeof(why), "state of ring %u, not %u", st.index, ring);
		return vhu_fail(c, -EPROTO, VHU_GET_VRING_BASE, why);
	}
	/* Split ring indices are 16 bits; anything above is a lie we must not pass to the queue. */
	if (st.num > 0xffff) {
		char why[64];

		snprintf(why, sizeof(why), "ring %u index %u beyond 16 bits", ring, st.num);
		return vhu_fail(c, -EPROTO, VHU_GET_VRING_BASE, why);
	}
	*base = st.num;
	return 0;
}

int vhu_set_vring_fd(struct vhu_conn *c, enum vhu_request request, unsigned ring, int fd)
{
	struct vhu_msg m;
	int e;

	if (ring >= VHU_MAX_RINGS ||
	    (request != VHU_SET_VRING_KICK && request != VHU_SET_VRING_CALL && request != VHU_SET_VRING_ERR))
		return -EINVAL;
	e = vhu_begin(c, &m, request, sizeof(uint64_t));
	if (e < 0)
		return e;
	m.p.u64 = ring | (fd < 0 ? VHU_VRING_NOFD : 0);
	return vhu_request(c, &m, fd < 0 ? NULL : &fd, fd < 0 ? 0 : 1);
}

int vhu_get_queue_num(struct vhu_conn *c, uint64_t *num)
{
	return vhu_get_u64(c, VHU_GET_QUEUE_NUM, num);
}

int vhu_get_config(struct vhu_conn *c, uint32_t offset, void *buf, uint32_t len)
{
	struct vhu_config reply;
	struct vhu_msg m;
	int e;

	if (len == 0 || len > VHU_MAX_CONFIG)
		return -EINVAL;
	e = vhu_begin(c, &m, VHU_GET_CONFIG, 12 + len);
	if (e < 0)
		return e;
	m.p.config.offset = offset;
	m.p.config.size = len;
	e = vhu_query(c, &m, &reply, 12 + len);
	if (e < 0)
		return e;
	if (reply.offset != offset || reply.size != len) {
		char why[96];

		snprintf(why, sizeof(why), "config at %u+%u, asked for %u+%u", reply.offset, reply.size, offset, len);
		return vhu_fail(c, -EPROTO, VHU_GET_CONFIG, why);
	}
	memcpy(buf, reply.payload, len);
	return 0;
}

int vhu_set_config(struct vhu_conn *c, uint32_t offset, const void *buf, uint32_t len)
{
	struct vhu_msg m;
	int e;

	if (len == 0 || len > VHU_MAX_CONFIG)
		return -EINVAL;
	e = vhu_begin(c, &m, VHU_SET_CONFIG, 12 + len);
	if (e < 0)
		return e;
	m.p.config.offset = offset;
	m.p.config.size = len;
	memcpy(m.p.config.payload, buf, len);
	return vhu_request(c, &m, NULL, 0);
}

/* ---- steps every front-end takes at DRIVER_OK ---- */

int vhu_set_mem_table_gm(struct vhu_conn *c, const struct guest_mem *gm)
{
	struct vhu_mem_region r[VHU_MAX_REGIONS];
	int fds[VHU_MAX_REGIONS];

	if (gm->nr_regions == 0 || gm->nr_regions > VHU_MAX_REGIONS || gm->memfd < 0)
		return -EINVAL;
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		r[i] = (struct vhu_mem_region){
			.gpa = gm->regions[i].gpa,
			.size = gm->regions[i].size,
			.uaddr = (uint64_t)(uintptr_t)gm->regions[i].host,
			.mmap_offset = gm->regions[i].fd_offset,
		};
		fds[i] = gm->memfd;
	}
	return vhu_set_mem_table(c, r, fds, gm->nr_regions);
}

int vhu_vring_start(struct vhu_conn *c, const struct vhu_vring_addr *addr, unsigned num, unsigned base,
		    int kick_fd, int call_fd, bool *handed)
{
	unsigned ring = addr->index;
	int e;

	e = vhu_set_vring_num(c, ring, num);
	if (!e)
		e = vhu_set_vring_base(c, ring, base);
	if (!e)
		e = vhu_set_vring_addr(c, addr);
	if (!e)
		e = vhu_set_vring_fd(c, VHU_SET_VRING_KICK, ring, kick_fd);
	if (!e)
		e = vhu_set_vring_fd(c, VHU_SET_VRING_CALL, ring, call_fd);
	if (!e)
		*handed = true;
	if (!e)
		e = vhu_set_vring_enable(c, ring, true);
	return e;
}

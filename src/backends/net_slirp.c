/*
 * User-mode networking through libslirp: a NAT'ed 10.0.2.0/24 with DHCP,
 * DNS forwarding and host port forwards, no privileges needed. Slirp has no
 * vnet header: frames both ways are plain Ethernet with full checksums, so
 * the device offers no checksum or TSO offload with this backend.
 *
 * How slirp is driven from the epoll loop (all on the I/O thread):
 *  - Guest frames go in with slirp_input(); frames slirp emits for the guest
 *    (send_packet) are queued here and `be.fd`, an eventfd, is readable while
 *    that queue is non-empty. The device drains it with recv() at the pace
 *    the guest posts buffers; when the queue is full, frames are dropped and
 *    counted, which slirp permits (TCP retransmits).
 *  - Slirp's own sockets: after each "cycle" the backend asks slirp for the
 *    fds it wants watched (slirp_pollfds_fill) and mirrors that set into a
 *    private epoll instance, which is registered in the loop as one fd; when
 *    any of them becomes ready the loop runs a cycle: poll() with timeout 0
 *    over the same set, slirp_pollfds_poll(), expired timers, then refill.
 *    Re-adding every fd each cycle (MOD, or ADD when the kernel no longer has
 *    it) keeps the mirror right even when slirp closed a socket and a new one
 *    got the same number.
 *  - Slirp's timers and the timeout pollfds_fill asks for (its TCP fast and
 *    slow timers) are one loop timer, armed for the earliest deadline;
 *    slirp_input() and slirp's notify() post a cycle to the loop so new
 *    sockets are watched at once.
 */
#include "backends/net.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <libslirp.h>

#include "loop/loop.h"
#include "util/log.h"

#define NET_SLIRP_QLEN       256      /* frames queued towards the guest */
#define NET_SLIRP_MAX_TIMERS_RUN 64   /* timer callbacks per cycle */

struct net_slirp_timer {
	struct net_slirp_timer *next;
	struct net_slirp *ns;
	SlirpTimerCb cb;              /* timer_new() style */
	void *cb_opaque;
	SlirpTimerId id;              /* timer_new_opaque() style when cb is NULL */
	int64_t expire_ms;
	bool armed;
};

struct net_slirp_frame {
	uint8_t *data;
	size_t len;
};

struct net_slirp {
	struct net_backend be;        /* be.fd: eventfd, readable while rxq is non-empty */
	Slirp *slirp;
	int epfd;                     /* slirp's sockets */
	struct loop_work kick;        /* a cycle posted to the loop */
	struct loop_timer timer;      /* the earliest slirp deadline */
	bool kicked;
	bool in_cycle;
	struct loop *loop;

	struct pollfd *pfds;          /* what the last slirp_pollfds_fill() asked for */
	unsigned npfds, pfds_cap;
	int *watched;                 /* fds currently in epfd */
	unsigned nwatched, watched_cap;
	uint32_t fill_timeout_ms;
	int64_t fill_time_ms;

	struct net_slirp_timer *timers;

	struct net_slirp_frame rxq[NET_SLIRP_QLEN];
	unsigned rxq_head, rxq_count;

	uint8_t txbuf[NET_MAX_FRAME];
	struct log_ratelimit rl;
};

static struct net_slirp *net_slirp_of(struct net_backend *be)
{
	return (struct net_slirp *)be;
}

static int64_t net_slirp_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void net_slirp_signal(int fd)
{
	uint64_t one = 1;

	/* Fails only with EAGAIN when the counter is already huge: it is readable then anyway. */
	if (write(fd, &one, sizeof(one)) < 0)
		return;
}

static void net_slirp_drain(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0)
		return;
}

/* Not attached yet: the cycle waits for attach, which fills and arms anyway. */
static void net_slirp_kick(struct net_slirp *ns)
{
	if (ns->kicked || ns->in_cycle || !ns->loop)
		return;
	ns->kicked = true;
	loop_work_post(ns->loop, &ns->kick);
}

/* ---- libslirp, loaded on first use ---- */

/*
 * libslirp drags in glib (and pcre2); linking it would load them into every
 * kestrel process, costing start-up time and resident memory to VMs that
 * never use user-mode networking. So it is opened when the first user-mode
 * backend is. The table is written once under pthread_once and then only read.
 */
struct slirp_api {
	bool ok;
	char why[160];
	__typeof__(slirp_new) *new_;
	__typeof__(slirp_cleanup) *cleanup;
	__typeof__(slirp_input) *input;
	__typeof__(slirp_pollfds_fill) *pollfds_fill;
	__typeof__(slirp_pollfds_poll) *pollfds_poll;
	__typeof__(slirp_handle_timer) *handle_timer;
	__typeof__(slirp_add_hostfwd) *add_hostfwd;
};

static struct slirp_api slirp_api;
static pthread_once_t slirp_api_once = PTHREAD_ONCE_INIT;

static void slirp_api_load(void)
{
	void *h = dlopen("libslirp.so.0", RTLD_NOW | RTLD_LOCAL);
	struct { const char *name; void **slot; } syms[] = {
		{ "slirp_new", (void **)&slirp_api.new_ },
		{ "slirp_cleanup", (void **)&slirp_api.cleanup },
		{ "slirp_input", (void **)&slirp_api.input },
		{ "slirp_pollfds_fill", (void **)&slirp_api.pollfds_fill },
		{ "slirp_pollfds_poll", (void **)&slirp_api.pollfds_poll },
		{ "slirp_handle_timer", (void **)&slirp_api.handle_timer },
		{ "slirp_add_hostfwd", (void **)&slirp_api.add_hostfwd },
	};

	if (!h) {
		snprintf(slirp_api.why, sizeof(slirp_api.why), "cannot load libslirp.so.0 (Debian: apt-get install libslirp0): %s",
			 dlerror());
		return;
	}
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		*syms[i].slot = dlsym(h, syms[i].name);
		if (!*syms[i].slot) {
			snprintf(slirp_api.why, sizeof(slirp_api.why), "libslirp.so.0 lacks %s", syms[i].name);
			return;
		}
	}
	/* The handle stays open for the life of the process: backends keep using it. */
	slirp_api.ok = true;
}

/* ---- SlirpCb ---- */

static ssize_t net_slirp_cb_send_packet(const void *buf, size_t len, void *opaque)
{
	struct net_slirp *ns = opaque;
	struct net_slirp_frame *f;
	uint8_t *copy;

	if (len == 0 || len > NET_MAX_FRAME || ns->rxq_count == NET_SLIRP_QLEN)
		goto drop;
	copy = malloc(len);
	if (!copy)
		goto drop;
	memcpy(copy, buf, len);
	f = &ns->rxq[(ns->rxq_head + ns->rxq_count) % NET_SLIRP_QLEN];
	f->data = copy;
	f->len = len;
	if (ns->rxq_count++ == 0)
		net_slirp_signal(ns->be.fd);
	return (ssize_t)len;
drop:
	__atomic_add_fetch(&ns->be.dropped, 1, __ATOMIC_RELAXED);
	return (ssize_t)len;
}

static void net_slirp_cb_guest_error(const char *msg, void *opaque)
{
	struct net_slirp *ns = opaque;

	log_guest(&ns->rl, "net-user", "guest error: %s", msg);
}

static int64_t net_slirp_cb_clock_get_ns(void *opaque)
{
	return net_slirp_now_ns();
}

static struct net_slirp_timer *net_slirp_timer_add(struct net_slirp *ns)
{
	struct net_slirp_timer *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ns = ns;
	t->next = ns->timers;
	ns->timers = t;
	return t;
}

static void *net_slirp_cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	struct net_slirp_timer *t = net_slirp_timer_add(opaque);

	if (t) {
		t->cb = cb;
		t->cb_opaque = cb_opaque;
	}
	return t;
}

static void *net_slirp_cb_timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
	struct net_slirp_timer *t = net_slirp_timer_add(opaque);

	if (t) {
		t->id = id;
		t->cb_opaque = cb_opaque;
	}
	return t;
}

static void net_slirp_cb_timer_free(void *timer, void *opaque)
{
	struct net_slirp *ns = opaque;

	for (struct net_slirp_timer **pp = &ns->timers; *pp; pp = &(*pp)->next) {
		if (*pp == timer) {
			*pp = (*pp)->next;
			free(timer);
			return;
		}
	}
}

static void net_slirp_cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	struct net_slirp_timer *t = timer;

	t->expire_ms = expire_ms;
	t->armed = true;
	/* Outside a cycle the loop timer must be re-armed: a cycle does that at its end. */
	net_slirp_kick(opaque);
}

static void net_slirp_cb_register_poll_fd(int fd, void *opaque)
{
	/* Nothing: the watched set is rebuilt from slirp_pollfds_fill() every cycle. */
}

static void net_slirp_cb_unregister_poll_fd(int fd, void *opaque)
{
}

static void net_slirp_cb_notify(void *opaque)
{
	net_slirp_kick(opaque);
}

static const SlirpCb net_slirp_callbacks = {
	.send_packet = net_slirp_cb_send_packet,
	.guest_error = net_slirp_cb_guest_error,
	.clock_get_ns = net_slirp_cb_clock_get_ns,
	.timer_new = net_slirp_cb_timer_new,
	.timer_free = net_slirp_cb_timer_free,
	.timer_mod = net_slirp_cb_timer_mod,
	.register_poll_fd = net_slirp_cb_register_poll_fd,
	.unregister_poll_fd = net_slirp_cb_unregister_poll_fd,
	.notify = net_slirp_cb_notify,
	.timer_new_opaque = net_slirp_cb_timer_new_opaque,
};

/* ---- the poll cycle ---- */

static short net_slirp_to_poll(int ev)
{
	short p = 0;

	if (ev & SLIRP_POLL_IN)
		p |= POLLIN;
	if (ev & SLIRP_POLL_OUT)
		p |= POLLOUT;
	if (ev & SLIRP_POLL_PRI)
		p |= POLLPRI;
	return p;
}

static int net_slirp_add_poll(int fd, int events, void *opaque)
{
	struct net_slirp *ns = opaque;

	if (ns->npfds == ns->pfds_cap) {
		unsigned cap = ns->pfds_cap ? 2 * ns->pfds_cap : 16;
		struct pollfd *p = realloc(ns->pfds, cap * sizeof(*p));

		if (!p)
			return -1;   /* slirp then never asks for this index */
		ns->pfds = p;
		ns->pfds_cap = cap;
	}
	ns->pfds[ns->npfds] = (struct pollfd){ .fd = fd, .events = net_slirp_to_poll(events) };
	return (int)ns->npfds++;
}

static int net_slirp_get_revents(int idx, void *opaque)
{
	struct net_slirp *ns = opaque;
	short r;
	int ev = 0;

	if (idx < 0 || (unsigned)idx >= ns->npfds)
		return 0;
	r = ns->pfds[idx].revents;
	if (r & POLLIN)
		ev |= SLIRP_POLL_IN;
	if (r & POLLOUT)
		ev |= SLIRP_POLL_OUT;
	if (r & POLLPRI)
		ev |= SLIRP_POLL_PRI;
	if (r & (POLLERR | POLLNVAL))
		ev |= SLIRP_POLL_ERR;
	if (r & POLLHUP)
		ev |= SLIRP_POLL_HUP;
	return ev;
}

static uint32_t net_slirp_epoll_events(short p)
{
	uint32_t ev = 0;

	if (p & POLLIN)
		ev |= EPOLLIN;
	if (p & POLLOUT)
		ev |= EPOLLOUT;
	if (p & POLLPRI)
		ev |= EPOLLPRI;
	return ev;
}

static bool net_slirp_in_pfds(const struct net_slirp *ns, int fd, uint32_t *events)
{
	bool found = false;

	*events = 0;
	for (unsigned i = 0; i < ns->npfds; i++) {
		if (ns->pfds[i].fd == fd) {
			*events |= net_slirp_epoll_events(ns->pfds[i].events);
			found = true;
		}
	}
	return found;
}

/* Make epfd watch exactly the fds of the last fill. */
static void net_slirp_sync_epoll(struct net_slirp *ns)
{
	unsigned n = 0;

	for (unsigned i = 0; i < ns->nwatched; i++) {
		uint32_t ev;

		if (!net_slirp_in_pfds(ns, ns->watched[i], &ev))
			epoll_ctl(ns->epfd, EPOLL_CTL_DEL, ns->watched[i], NULL);
	}
	if (ns->watched_cap < ns->npfds) {
		int *w = realloc(ns->watched, ns->npfds * sizeof(*w));

		if (!w) {
			ns->nwatched = 0;
			return;
		}
		ns->watched = w;
		ns->watched_cap = ns->npfds;
	}
	for (unsigned i = 0; i < ns->npfds; i++) {
		int fd = ns->pfds[i].fd;
		struct epoll_event e = { .data.fd = fd };
		uint32_t events;
		bool dup = false;

		for (unsigned j = 0; j < n && !dup; j++)
			dup = ns->watched[j] == fd;
		if (dup)
			continue;
		net_slirp_in_pfds(ns, fd, &events);
		e.events = events;
		if (epoll_ctl(ns->epfd, EPOLL_CTL_MOD, fd, &e) < 0 &&
		    (errno != ENOENT || epoll_ctl(ns->epfd, EPOLL_CTL_ADD, fd, &e) < 0)) {
			log_warn("net-user", "cannot watch slirp socket %d: %s", fd, strerror(errno));
			continue;
		}
		ns->watched[n++] = fd;
	}
	ns->nwatched = n;
}

static void net_slirp_arm_timer(struct net_slirp *ns)
{
	int64_t deadline_ms = INT64_MAX;

	for (struct net_slirp_timer *t = ns->timers; t; t = t->next)
		if (t->armed && t->expire_ms < deadline_ms)
			deadline_ms = t->expire_ms;
	if (ns->fill_timeout_ms != UINT32_MAX && ns->fill_time_ms + ns->fill_timeout_ms < deadline_ms)
		deadline_ms = ns->fill_time_ms + ns->fill_timeout_ms;
	if (deadline_ms == INT64_MAX)
		loop_timer_cancel(&ns->timer);
	else    /* anything in the past fires at once */
		loop_timer_arm_at(&ns->timer, deadline_ms > 0 ? (uint64_t)deadline_ms * 1000000u : 1, 0);
}

static void net_slirp_run_timers(struct net_slirp *ns)
{
	int64_t now_ms = net_slirp_now_ns() / 1000000;

	/* A callback may re-arm or free timers, so look again from the start each time. */
	for (unsigned n = 0; n < NET_SLIRP_MAX_TIMERS_RUN; n++) {
		struct net_slirp_timer *t;

		for (t = ns->timers; t; t = t->next)
			if (t->armed && t->expire_ms <= now_ms)
				break;
		if (!t)
			return;
		t->armed = false;
		if (t->cb)
			t->cb(t->cb_opaque);
		else
			slirp_api.handle_timer(ns->slirp, t->id, t->cb_opaque);
	}
}

static void net_slirp_fill(struct net_slirp *ns)
{
	ns->npfds = 0;
	ns->fill_timeout_ms = UINT32_MAX;
	ns->fill_time_ms = net_slirp_now_ns() / 1000000;
	slirp_api.pollfds_fill(ns->slirp, &ns->fill_timeout_ms, net_slirp_add_poll, ns);
	net_slirp_sync_epoll(ns);
	net_slirp_arm_timer(ns);
}

static void net_slirp_cycle(void *opaque)
{
	struct net_slirp *ns = opaque;
	int rc = 0;

	ns->in_cycle = true;
	ns->kicked = false;
	if (ns->npfds)
		rc = poll(ns->pfds, ns->npfds, 0);
	/* Also with nothing ready: it runs slirp's TCP timers when they are due. */
	slirp_api.pollfds_poll(ns->slirp, rc < 0, net_slirp_get_revents, ns);
	net_slirp_run_timers(ns);
	net_slirp_fill(ns);
	ns->in_cycle = false;
}

static void net_slirp_sockets_cb(void *opaque, uint32_t events)
{
	(void)events;
	net_slirp_cycle(opaque);
}

/* ---- backend ops ---- */

static ssize_t net_slirp_send(struct net_backend *be, const struct iovec *iov, int iovcnt)
{
	struct net_slirp *ns = net_slirp_of(be);
	size_t len = 0;

	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > sizeof(ns->txbuf) - len)
			return -EMSGSIZE;
		memcpy(ns->txbuf + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	slirp_api.input(ns->slirp, ns->txbuf, (int)len);
	/* The frame may have opened a socket or filled one: watch them before sleeping. */
	net_slirp_kick(ns);
	return (ssize_t)len;
}

static ssize_t net_slirp_recv(struct net_backend *be, void *buf, size_t len)
{
	struct net_slirp *ns = net_slirp_of(be);
	struct net_slirp_frame f;
	ssize_t rc;

	if (ns->rxq_count == 0) {
		net_slirp_drain(be->fd);
		return -EAGAIN;
	}
	f = ns->rxq[ns->rxq_head];
	ns->rxq[ns->rxq_head].data = NULL;
	ns->rxq_head = (ns->rxq_head + 1) % NET_SLIRP_QLEN;
	if (--ns->rxq_count == 0)
		net_slirp_drain(be->fd);
	if (f.len > len) {
		__atomic_add_fetch(&be->dropped, 1, __ATOMIC_RELAXED);
		rc = -EMSGSIZE;
	} else {
		memcpy(buf, f.data, f.len);
		rc = (ssize_t)f.len;
	}
	free(f.data);
	return rc;
}

static int net_slirp_attach(struct net_backend *be, struct loop *l)
{
	struct net_slirp *ns = net_slirp_of(be);
	int rc;

	if (ns->loop)
		return -EBUSY;
	rc = loop_add(l, ns->epfd, EPOLLIN, net_slirp_sockets_cb, ns);
	if (rc < 0)
		return rc;
	ns->loop = l;
	loop_work_init(&ns->kick, net_slirp_cycle, ns);
	loop_timer_init(&ns->timer, l, net_slirp_cycle, ns);
	ns->kicked = false;
	/* Arm the watch set and timers now; the first cycle happens when one fires. */
	net_slirp_fill(ns);
	return 0;
}

static void net_slirp_detach(struct net_backend *be, struct loop *l)
{
	struct net_slirp *ns = net_slirp_of(be);

	if (ns->loop == l) {
		loop_timer_cancel(&ns->timer);
		loop_work_cancel(l, &ns->kick);
		loop_del(l, ns->epfd);
		ns->loop = NULL;
	}
}

static void net_slirp_free(struct net_backend *be)
{
	struct net_slirp *ns = net_slirp_of(be);

	if (ns->slirp)
		slirp_api.cleanup(ns->slirp);
	while (ns->timers) {
		struct net_slirp_timer *t = ns->timers;

		ns->timers = t->next;
		free(t);
	}
	for (unsigned i = 0; i < ns->rxq_count; i++)
		free(ns->rxq[(ns->rxq_head + i) % NET_SLIRP_QLEN].data);
	if (ns->epfd >= 0)
		close(ns->epfd);
	if (be->fd >= 0)
		close(be->fd);
	free(ns->pfds);
	free(ns->watched);
	free(ns);
}

static const struct net_backend_ops net_slirp_ops = {
	.send = net_slirp_send,
	.recv = net_slirp_recv,
	.attach = net_slirp_attach,
	.detach = net_slirp_detach,
	.free = net_slirp_free,
};

/* ---- setup ---- */

static struct in_addr net_slirp_ip(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	return (struct in_addr){ .s_addr = htonl((uint32_t)a << 24 | (uint32_t)b << 16 | (uint32_t)c << 8 | d) };
}

static int net_slirp_fds(struct net_slirp *ns)
{
	ns->be.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ns->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ns->be.fd < 0 || ns->epfd < 0)
		return -errno;
	return 0;
}

int net_slirp_open(struct net_backend **out, const struct net_hostfwd *fwd, unsigned nr_fwd,
		   char *err, size_t errlen)
{
	struct net_slirp *ns;
	SlirpConfig cfg = {
		.version = 4,
		.restricted = 0,
		.in_enabled = true,
		.vnetwork = net_slirp_ip(10, 0, 2, 0),
		.vnetmask = net_slirp_ip(255, 255, 255, 0),
		.vhost = net_slirp_ip(10, 0, 2, 2),
		.vhostname = "kestrel",
		.vdhcp_start = net_slirp_ip(10, 0, 2, 15),
		.vnameserver = net_slirp_ip(10, 0, 2, 3),
		.in6_enabled = false,
		/* Guest connections to 10.0.2.2 reach the host's 127.0.0.1. */
		.disable_host_loopback = false,
		.enable_emu = false,
	};
	int rc;

	*out = NULL;
	pthread_once(&slirp_api_once, slirp_api_load);
	if (!slirp_api.ok) {
		snprintf(err, errlen, "user network: %s", slirp_api.why);
		return -ENOENT;
	}
	ns = calloc(1, sizeof(*ns));
	if (!ns) {
		snprintf(err, errlen, "user network: out of memory");
		return -ENOMEM;
	}
	ns->be.ops = &net_slirp_ops;
	ns->be.kind = "user";
	ns->be.vnet_hdr = false;
	ns->be.fd = ns->epfd = -1;
	ns->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	ns->fill_timeout_ms = UINT32_MAX;
	rc = net_slirp_fds(ns);
	if (rc < 0) {
		snprintf(err, errlen, "user network: %s", strerror(-rc));
		goto err_free;
	}
	ns->slirp = slirp_api.new_(&cfg, &net_slirp_callbacks, ns);
	if (!ns->slirp) {
		rc = -ENOMEM;
		snprintf(err, errlen, "user network: libslirp failed to initialise");
		goto err_free;
	}
	for (unsigned i = 0; i < nr_fwd; i++) {
		char host[INET_ADDRSTRLEN];

		if (slirp_api.add_hostfwd(ns->slirp, fwd[i].udp, fwd[i].host_addr, fwd[i].host_port,
				      fwd[i].guest_addr, fwd[i].guest_port) < 0) {
			rc = -EADDRINUSE;
			inet_ntop(AF_INET, &fwd[i].host_addr, host, sizeof(host));
			snprintf(err, errlen, "user network: hostfwd %s:%s:%u: cannot listen (port in use?)",
				 fwd[i].udp ? "udp" : "tcp", host, fwd[i].host_port);
			goto err_free;
		}
	}
	*out = &ns->be;
	return 0;

err_free:
	net_slirp_free(&ns->be);
	return rc;
}

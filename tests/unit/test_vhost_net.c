/*
 * vhost-user-net front-end against a scripted fake back-end (a thread on a
 * listening Unix socket): the --net vhost-user= parser and its bad inputs,
 * the features offered to the driver and sent to the back-end, the config
 * space kestrel keeps (MAC, LINK_UP), both rings handed over at DRIVER_OK
 * and stopped at reset, a refusal at activation, and the back-end's
 * hang-up taking the link down with a config-change interrupt.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "devices/virtio/net.h"
#include "devices/virtio/vhost_user_net.h"
#include "loop/loop.h"
#include "mem/gm.h"
#include "vhost/vhost_user.h"
#include "vmm/machine.h"

#define MAX_LOG 64

struct fake {
	/* Script */
	uint64_t features, protocol_features;
	uint32_t refuse;          /* request acked with status 1 */
	unsigned hangup_after;    /* close the connection after this many SET_VRING_ENABLEs (0: never) */
	/* Record */
	uint32_t reqs[MAX_LOG];
	unsigned nreqs;
	unsigned mem_fds, kick_fds, call_fds, addrs, enables;
	struct vhu_vring_addr addr[2];
	uint64_t acked_features;
	/* Plumbing */
	char path[108];
	int lfd;
	pthread_t thread;
};

static int read_msg(int fd, struct vhu_msg *m, unsigned *nfds, int *keep)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = &m->hdr, .iov_len = 12 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b) };
	ssize_t n = recvmsg(fd, &mh, MSG_WAITALL);

	*nfds = 0;
	if (n != 12)
		return -1;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		for (size_t i = 0; i < k; i++) {
			int x;

			memcpy(&x, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (*nfds == 0 && keep)
				*keep = x;
			else
				close(x);
			(*nfds)++;
		}
	}
	if (m->hdr.size > VHU_MAX_PAYLOAD)
		return -1;
	if (m->hdr.size && recv(fd, &m->p, m->hdr.size, MSG_WAITALL) != (ssize_t)m->hdr.size)
		return -1;
	return 0;
}

static void answer(int fd, uint32_t req, const void *p, uint32_t len)
{
	uint8_t buf[12 + sizeof(union vhu_payload)];
	struct vhu_hdr h = { .request = req, .flags = VHU_VERSION | VHU_FLAG_REPLY, .size = len };

	memcpy(buf, &h, 12);
	memcpy(buf + 12, p, len);
	if (send(fd, buf, 12 + len, MSG_NOSIGNAL) != (ssize_t)(12 + len))
		fprintf(stderr, "fake: send failed\n");
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int c = accept(f->lfd, NULL, NULL);
	struct vhu_msg m;
	unsigned nfds;

	if (c < 0)
		return NULL;
	for (;;) {
		uint32_t r;

		if (read_msg(c, &m, &nfds, NULL) < 0)
			break;
		r = m.hdr.request;
		if (f->nreqs < MAX_LOG)
			f->reqs[f->nreqs++] = r;
		switch (r) {
		case VHU_GET_FEATURES:
			answer(c, r, &f->features, 8);
			continue;
		case VHU_GET_PROTOCOL_FEATURES:
			answer(c, r, &f->protocol_features, 8);
			continue;
		case VHU_GET_VRING_BASE: {
			struct vhu_vring_state st = { .index = m.p.state.index, .num = 3 };

			answer(c, r, &st, 8);
			continue;
		}
		case VHU_SET_FEATURES: f->acked_features = m.p.u64; break;
		case VHU_SET_MEM_TABLE: f->mem_fds = nfds; break;
		case VHU_SET_VRING_ADDR:
			if (m.p.addr.index < 2)
				f->addr[m.p.addr.index] = m.p.addr;
			f->addrs++;
			break;
		case VHU_SET_VRING_KICK: f->kick_fds += nfds; break;
		case VHU_SET_VRING_CALL: f->call_fds += nfds; break;
		case VHU_SET_VRING_ENABLE: f->enables++; break;
		default: break;
		}
		if (m.hdr.flags & VHU_FLAG_NEED_REPLY) {
			uint64_t st = r == f->refuse;

			answer(c, r, &st, 8);
		}
		if (f->hangup_after && r == VHU_SET_VRING_ENABLE && f->enables == f->hangup_after)
			break;
	}
	close(c);
	return NULL;
}

#define F_PROTO  (1ull << VHU_F_PROTOCOL_FEATURES)
#define F_V1     (1ull << 32)
#define F_PACKED (1ull << 34)
#define F_MQ     (1ull << 22)
#define F_CTRL   (1ull << VIRTIO_NET_F_CTRL_VQ)
#define F_MRG    (1ull << VIRTIO_NET_F_MRG_RXBUF)
#define F_CSUM   (1ull << VIRTIO_NET_F_CSUM)
#define F_MAC    (1ull << VIRTIO_NET_F_MAC)
#define F_STATUS (1ull << VIRTIO_NET_F_STATUS)

static void fake_start(struct fake *f)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/kestrel-vhunet-XXXXXX";

	assert_non_null(mkdtemp(dir));
	snprintf(f->path, sizeof(f->path), "%s/s", dir);
	memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->lfd, 1), 0);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
	char dir[108];

	pthread_join(f->thread, NULL);
	close(f->lfd);
	unlink(f->path);
	snprintf(dir, sizeof(dir), "%s", f->path);
	*strrchr(dir, '/') = 0;
	rmdir(dir);
}

/* Roughly what DPDK's vhost PMD offers: more than kestrel passes on. */
static void fake_default(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	f->features = F_PROTO | F_V1 | F_PACKED | F_MQ | F_CTRL | F_MRG | F_CSUM | (1ull << 29) | (1ull << 28);
	f->protocol_features = (1ull << VHU_PROTOCOL_F_REPLY_ACK) | (1ull << VHU_PROTOCOL_F_MQ);
}

/* Transport double: per-queue kick and irq fds, interrupt counters. */
struct tfx {
	int kick[2], irq[2];
	unsigned notifies, config_notifies;
};
static struct tfx tfx;

static void t_notify_queue(struct virtio_dev *d, unsigned q)
{
	tfx.notifies++;
}

static void t_notify_config(struct virtio_dev *d)
{
	tfx.config_notifies++;
}

static int t_kick_fd(struct virtio_dev *d, unsigned q)
{
	return q < 2 ? tfx.kick[q] : -1;
}

static int t_irq_fd(struct virtio_dev *d, unsigned q)
{
	return q < 2 ? tfx.irq[q] : -1;
}

static const struct virtio_transport_ops t_tops = {
	.notify_queue = t_notify_queue,
	.notify_config = t_notify_config,
	.queue_kick_fd = t_kick_fd,
	.queue_irq_fd = t_irq_fd,
};

static void tfx_open(bool irqfds)
{
	tfx = (struct tfx){ .irq = { -1, -1 } };
	for (unsigned q = 0; q < 2; q++) {
		tfx.kick[q] = eventfd(0, EFD_CLOEXEC);
		if (irqfds)
			tfx.irq[q] = eventfd(0, EFD_CLOEXEC);
	}
}

static void tfx_close(void)
{
	for (unsigned q = 0; q < 2; q++) {
		close(tfx.kick[q]);
		if (tfx.irq[q] >= 0)
			close(tfx.irq[q]);
	}
}

static void drive_to_ok(struct virtio_dev *d, uint64_t feat)
{
	d->transport = &tfx;
	d->tops = &t_tops;
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	virtio_set_driver_features(d, 0, (uint32_t)feat);
	virtio_set_driver_features(d, 1, (uint32_t)(feat >> 32));
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	assert_true(d->status & VIRTIO_STATUS_FEATURES_OK);
	for (unsigned q = 0; q < 2; q++) {
		d->queues[q].size = 16;
		d->queues[q].desc_gpa = 0x1000 + q * 0x10000;
		d->queues[q].avail_gpa = 0x2000 + q * 0x10000;
		d->queues[q].used_gpa = 0x3000 + q * 0x10000;
		d->queues[q].enabled = true;
	}
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			  VIRTIO_STATUS_DRIVER_OK);
}

static unsigned count(const struct fake *f, uint32_t req)
{
	unsigned n = 0;

	for (unsigned i = 0; i < f->nreqs; i++)
		n += f->reqs[i] == req;
	return n;
}

/* ---- the --net parser ---- */

static void test_parse(void **state)
{
	static const uint8_t want[6] = { 0x02, 0, 0, 0, 0, 0xab };
	struct net_config nc, nc2;
	uint8_t mac[6];
	char path[VUNET_PATH_MAX], err[256], longp[200];

	(void)state;
	assert_int_equal(machine_net_parse("vhost-user=/run/pmd.sock,mac=02:00:00:00:00:AB", &nc, err,
					   sizeof(err)), 0);
	assert_int_equal(nc.backend, NET_BACKEND_VHOST_USER);
	assert_string_equal(nc.vhost_socket, "/run/pmd.sock");
	assert_memory_equal(nc.mac, want, 6);
	assert_true(nc.mac_set);
	/* model=virtio is the default and may be said; the MAC without mac= is stable and per socket. */
	assert_int_equal(machine_net_parse("vhost-user=/a.sock,model=virtio", &nc, err, sizeof(err)), 0);
	assert_int_equal(machine_net_parse("vhost-user=/a.sock", &nc2, err, sizeof(err)), 0);
	assert_memory_equal(nc.mac, nc2.mac, 6);
	assert_int_equal(nc.mac[0], 0x52);
	machine_net_default_mac(&nc2, mac);
	assert_memory_equal(mac, nc2.mac, 6);
	assert_int_equal(machine_net_parse("vhost-user=/b.sock", &nc2, err, sizeof(err)), 0);
	assert_memory_not_equal(nc.mac, nc2.mac, 6);

	assert_int_equal(machine_net_parse("vhost-user=", &nc, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "socket path must be 1 to 107 bytes"));
	assert_int_equal(machine_net_parse("vhost-user=,mac=02:00:00:00:00:01", &nc, err, sizeof(err)), -EINVAL);
	memset(longp, 'x', sizeof(longp));
	memcpy(longp, "vhost-user=/", 12);
	longp[11 + 108] = '\0';   /* a 108-byte path: no room for sun_path's NUL */
	assert_int_equal(machine_net_parse(longp, &nc, err, sizeof(err)), -EINVAL);
	assert_int_equal(machine_net_parse("vhost-user=/s,model=e1000", &nc, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "only model=virtio"));
	assert_int_equal(machine_net_parse("vhost-user=/s,mtu=1500", &nc, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown option 'mtu=1500'"));
	assert_int_equal(machine_net_parse("vhost-user=/s,server", &nc, err, sizeof(err)), -EINVAL);
	assert_int_equal(vunet_parse_spec("vhost-user=/s,", path, mac, err, sizeof(err)), -EINVAL);
	assert_int_equal(vunet_parse_spec("tap=tap0", path, mac, err, sizeof(err)), -EINVAL);

	static const char *const bad_macs[] = {
		"02:00:00:00:00", "02:00:00:00:00:0", "02:00:00:00:00:001", "02-00-00-00-00-01",
		"0g:00:00:00:00:01", "+2:00:00:00:00:01", " 2:00:00:00:00:01", "01:00:00:00:00:01",
		"ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "",
	};
	for (size_t i = 0; i < sizeof(bad_macs) / sizeof(bad_macs[0]); i++) {
		char spec[64];

		snprintf(spec, sizeof(spec), "vhost-user=/s,mac=%s", bad_macs[i]);
		assert_int_equal(vunet_parse_spec(spec, path, mac, err, sizeof(err)), -EINVAL);
	}
	assert_int_equal(vunet_parse_spec("vhost-user=/s,mac=02:00:00:00:00:01,mac=02:00:00:00:00:02", path, mac,
					  err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "repeated mac="));
	/* Other backends are untouched by this parser. */
	assert_int_equal(machine_net_parse("user", &nc, err, sizeof(err)), 0);
	assert_int_equal(nc.backend, NET_BACKEND_USER);
}

/* ---- the device ---- */

static void test_start_and_reset(void **state)
{
	static const uint8_t mac[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };
	static struct fake f;
	struct vhost_user_net *n;
	struct guest_mem gm;
	struct virtio_dev *d;
	uint8_t cfg[8];
	char err[256] = "";

	(void)state;
	assert_int_equal(gm_init(&gm, 4 << 20, 0), 0);
	fake_default(&f);
	fake_start(&f);
	assert_int_equal(vunet_new(&n, f.path, mac, &gm, err, sizeof(err)), 0);
	d = vunet_virtio(n);
	assert_true(d->vhost_user);
	assert_int_equal(d->num_queues, 2);
	/* Offered: kestrel's MAC and STATUS, the back-end's VERSION_1 and MRG_RXBUF; none of the rest. */
	assert_true(d->host_features & F_MAC);
	assert_true(d->host_features & F_STATUS);
	assert_true(d->host_features & F_V1);
	assert_true(d->host_features & F_MRG);
	assert_false(d->host_features & (F_PACKED | F_MQ | F_CTRL | F_CSUM | F_PROTO));
	/* Config space: kestrel's MAC and the link up. */
	d->ops->config_read(d, 0, cfg, 8);
	assert_memory_equal(cfg, mac, 6);
	assert_int_equal(cfg[6], VIRTIO_NET_S_LINK_UP);
	assert_int_equal(cfg[7], 0);
	/* Nothing there is the driver's to write. */
	d->ops->config_write(d, 0, "\x04\x04\x04\x04\x04\x04", 6);
	d->ops->config_read(d, 0, cfg, 6);
	assert_memory_equal(cfg, mac, 6);

	tfx_open(true);
	drive_to_ok(d, d->host_features);
	assert_true(d->status & VIRTIO_STATUS_DRIVER_OK);
	assert_false(d->status & VIRTIO_STATUS_NEEDS_RESET);
	/* The back-end hears only its own bits, plus PROTOCOL_FEATURES; not kestrel's MAC/STATUS. */
	assert_int_equal(f.acked_features, F_V1 | F_MRG | F_PROTO | (1ull << 29) | (1ull << 28));
	assert_int_equal(f.mem_fds, 1);
	assert_int_equal(f.addrs, 2);
	for (unsigned q = 0; q < 2; q++) {
		assert_int_equal(f.addr[q].desc, (uint64_t)(uintptr_t)gm_ptr(&gm, 0x1000 + q * 0x10000, 1));
		assert_int_equal(f.addr[q].avail, (uint64_t)(uintptr_t)gm_ptr(&gm, 0x2000 + q * 0x10000, 1));
		assert_int_equal(f.addr[q].used, (uint64_t)(uintptr_t)gm_ptr(&gm, 0x3000 + q * 0x10000, 1));
	}
	assert_int_equal(f.kick_fds, 2);
	assert_int_equal(f.call_fds, 2);
	assert_int_equal(f.enables, 2);
	assert_int_equal(count(&f, VHU_GET_VRING_BASE), 0);

	/* Driver reset: both rings are stopped. */
	virtio_set_status(d, 0);
	assert_int_equal(count(&f, VHU_GET_VRING_BASE), 2);
	vunet_free(n);
	fake_stop(&f);
	tfx_close();
	gm_exit(&gm);
}

static void test_refused_at_activation(void **state)
{
	static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 1 };
	static struct fake f;
	struct vhost_user_net *n;
	struct guest_mem gm;
	struct virtio_dev *d;
	char err[256] = "";

	(void)state;
	assert_int_equal(gm_init(&gm, 4 << 20, 0), 0);
	fake_default(&f);
	f.refuse = VHU_SET_VRING_ADDR;
	fake_start(&f);
	assert_int_equal(vunet_new(&n, f.path, mac, &gm, err, sizeof(err)), 0);
	d = vunet_virtio(n);
	tfx_open(false);
	drive_to_ok(d, d->host_features);
	/* The VM runs on; the device wants a reset and never handed over its kick fds. */
	assert_false(d->status & VIRTIO_STATUS_DRIVER_OK);
	assert_true(d->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(f.kick_fds, 0);
	vunet_free(n);
	fake_stop(&f);
	tfx_close();
	gm_exit(&gm);
}

/* A refused enable: the back-end already had the ring, so it is stopped again (GET_VRING_BASE). */
static void test_refused_enable_stops_ring(void **state)
{
	static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 1 };
	static struct fake f;
	struct vhost_user_net *n;
	struct guest_mem gm;
	struct virtio_dev *d;
	char err[256] = "";

	(void)state;
	assert_int_equal(gm_init(&gm, 4 << 20, 0), 0);
	fake_default(&f);
	f.refuse = VHU_SET_VRING_ENABLE;
	fake_start(&f);
	assert_int_equal(vunet_new(&n, f.path, mac, &gm, err, sizeof(err)), 0);
	d = vunet_virtio(n);
	tfx_open(true);
	drive_to_ok(d, d->host_features);
	assert_true(d->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(f.kick_fds, 1);   /* ring 0 only: set-up stopped at its enable */
	assert_int_equal(count(&f, VHU_GET_VRING_BASE), 1);
	/* Stopped once: a reset and the teardown ask nothing more. */
	virtio_set_status(d, 0);
	vunet_free(n);
	fake_stop(&f);
	assert_int_equal(count(&f, VHU_GET_VRING_BASE), 1);
	tfx_close();
	gm_exit(&gm);
}

/* The back-end closes the socket while the rings run: link down, one config interrupt, nothing else. */
static void test_hangup_link_down(void **state)
{
	static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 1 };
	static struct fake f;
	struct vhost_user_net *n;
	struct guest_mem gm;
	struct virtio_dev *d;
	struct loop *l = loop_new();
	uint8_t cfg[8];
	char err[256] = "";

	(void)state;
	assert_non_null(l);
	assert_int_equal(gm_init(&gm, 4 << 20, 0), 0);
	fake_default(&f);
	f.hangup_after = 2;
	fake_start(&f);
	assert_int_equal(vunet_new(&n, f.path, mac, &gm, err, sizeof(err)), 0);
	assert_int_equal(vunet_attach(n, l), 0);
	d = vunet_virtio(n);
	tfx_open(false);
	drive_to_ok(d, d->host_features);
	assert_true(d->status & VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(vunet_link_status(n), VIRTIO_NET_S_LINK_UP);
	assert_int_equal(tfx.config_notifies, 0);
	fake_stop(&f);   /* the fake closed its end after the second ring was enabled */
	loop_run_once(l, 1000);
	assert_int_equal(vunet_link_status(n), 0);
	d->ops->config_read(d, 6, cfg, 2);
	assert_int_equal(cfg[0], 0);
	assert_int_equal(tfx.config_notifies, 1);
	assert_int_equal(d->config_generation, 1);
	/* The device stays as it was (no NEEDS_RESET); a reset asks nothing of the dead back-end. */
	assert_false(d->status & VIRTIO_STATUS_NEEDS_RESET);
	virtio_set_status(d, 0);
	/* Restarting it fails cleanly: the back-end is gone. */
	drive_to_ok(d, d->host_features);
	assert_false(d->status & VIRTIO_STATUS_DRIVER_OK);
	assert_true(d->status & VIRTIO_STATUS_NEEDS_RESET);
	vunet_free(n);
	loop_free(l);
	tfx_close();
	gm_exit(&gm);
}

/* Without STATUS negotiated the driver does not look at the link: no config interrupt, still down. */
static void test_hangup_without_status(void **state)
{
	static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 1 };
	static struct fake f;
	struct vhost_user_net *n;
	struct guest_mem gm;
	struct loop *l = loop_new();
	char err[256] = "";

	(void)state;
	assert_non_null(l);
	assert_int_equal(gm_init(&gm, 4 << 20, 0), 0);
	fake_default(&f);
	f.hangup_after = 2;
	fake_start(&f);
	assert_int_equal(vunet_new(&n, f.path, mac, &gm, err, sizeof(err)), 0);
	assert_int_equal(vunet_attach(n, l), 0);
	tfx_open(true);
	drive_to_ok(vunet_virtio(n), F_V1);
	fake_stop(&f);
	loop_run_once(l, 1000);
	assert_int_equal(vunet_link_status(n), 0);
	assert_int_equal(tfx.config_notifies, 0);
	vunet_free(n);
	loop_free(l);
	tfx_close();
	gm_exit(&gm);
}

static void test_no_irqfd_uses_own_call_fd(void **state)
{
	static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 1 };
	static struct fake f;
	struct vhost_user_net *n;
	struct guest_mem gm;
	struct loop *l = loop_new();
	char err[256] = "";

	(void)state;
	assert_non_null(l);
	assert_int_equal(gm_init(&gm, 4 << 20, 0), 0);
	fake_default(&f);
	fake_start(&f);
	assert_int_equal(vunet_new(&n, f.path, mac, &gm, err, sizeof(err)), 0);
	assert_int_equal(vunet_attach(n, l), 0);
	tfx_open(false);
	drive_to_ok(vunet_virtio(n), F_V1);
	/* INTx: each ring still gets a call fd (kestrel's own, forwarded on the I/O thread). */
	assert_int_equal(f.call_fds, 2);
	vunet_free(n);
	fake_stop(&f);
	loop_free(l);
	tfx_close();
	gm_exit(&gm);
}

static void test_handshake_refusals(void **state)
{
	static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 1 };
	static struct fake f;
	struct vhost_user_net *n = NULL;
	struct guest_mem gm, nomem = { .memfd = -1 };
	char err[256] = "";

	(void)state;
	assert_int_equal(gm_init(&gm, 4 << 20, 0), 0);

	fake_default(&f);
	f.features &= ~F_PROTO;
	fake_start(&f);
	assert_int_equal(vunet_new(&n, f.path, mac, &gm, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "protocol features"));
	fake_stop(&f);

	fake_default(&f);
	f.features &= ~F_V1;
	fake_start(&f);
	assert_int_equal(vunet_new(&n, f.path, mac, &gm, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "VERSION_1"));
	fake_stop(&f);

	/* Without REPLY_ACK offered, kestrel does not ask for it. */
	fake_default(&f);
	f.protocol_features = 0;
	fake_start(&f);
	assert_int_equal(vunet_new(&n, f.path, mac, &gm, err, sizeof(err)), 0);
	vunet_free(n);
	n = NULL;
	fake_stop(&f);
	assert_int_equal(count(&f, VHU_SET_PROTOCOL_FEATURES), 1);

	assert_int_equal(vunet_new(&n, "/tmp/kestrel-no-such.sock", mac, &gm, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot connect"));
	assert_int_equal(vunet_new(&n, "/tmp/x.sock", mac, &nomem, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not shareable"));
	assert_null(n);
	gm_exit(&gm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_start_and_reset),
		cmocka_unit_test(test_refused_at_activation),
		cmocka_unit_test(test_refused_enable_stops_ring),
		cmocka_unit_test(test_hangup_link_down),
		cmocka_unit_test(test_hangup_without_status),
		cmocka_unit_test(test_no_irqfd_uses_own_call_fd),
		cmocka_unit_test(test_handshake_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

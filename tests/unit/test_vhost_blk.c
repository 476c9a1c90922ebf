/*
 * vhost-user-blk front-end against a scripted fake back-end (a thread on a
 * listening Unix socket): the --disk vhost-user= parser, the handshake and
 * its refusals, the messages at DRIVER_OK (memory table with the memfd,
 * rings in kestrel's address space, kick and call fds) and at reset
 * (GET_VRING_BASE), and a back-end refusing a request at activation.
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

#include "devices/virtio/blk.h"
#include "devices/virtio/rng.h"
#include "fakes.h"
#include "loop/loop.h"
#include "virtio/pci.h"
#include "vring_driver.h"
#include "devices/virtio/vhost_user_blk.h"
#include "mem/gm.h"
#include "vhost/vhost_user.h"

#define MAX_LOG 64

struct fake {
	/* Script */
	uint64_t features, protocol_features;
	uint8_t config[60];
	bool bad_config;          /* GET_CONFIG answered with the wrong size */
	uint32_t refuse;          /* request acked with status 1 */
	/* Record */
	uint32_t reqs[MAX_LOG];
	unsigned nreqs;
	unsigned mem_fds;         /* fds with SET_MEM_TABLE */
	unsigned kick_fds, call_fds;
	struct vhu_mem_table mem;
	struct vhu_vring_addr addr;
	uint64_t acked_features;
	uint64_t call_payload;
	int call_fd;              /* the last SET_VRING_CALL's fd, kept open */
	uint32_t set_config_off, set_config_size;
	uint8_t set_config_byte;
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
		int keep = -1;
		uint32_t r;

		if (read_msg(c, &m, &nfds, &keep) < 0)
			break;
		r = m.hdr.request;
		if (keep >= 0 && r == VHU_SET_VRING_CALL) {
			if (f->call_fd >= 0)
				close(f->call_fd);
			f->call_fd = keep;
		} else if (keep >= 0) {
			close(keep);
		}

		if (f->nreqs < MAX_LOG)
			f->reqs[f->nreqs++] = r;
		switch (r) {
		case VHU_GET_FEATURES:
			answer(c, r, &f->features, 8);
			continue;
		case VHU_GET_PROTOCOL_FEATURES:
			answer(c, r, &f->protocol_features, 8);
			continue;
		case VHU_GET_CONFIG: {
			struct vhu_config cfg = m.p.config;

			memcpy(cfg.payload, f->config + cfg.offset, cfg.size);
			answer(c, r, &cfg, f->bad_config ? 12 + cfg.size - 1 : 12 + cfg.size);
			continue;
		}
		case VHU_GET_VRING_BASE: {
			struct vhu_vring_state st = { .index = m.p.state.index, .num = 5 };

			answer(c, r, &st, 8);
			continue;
		}
		case VHU_SET_FEATURES: f->acked_features = m.p.u64; break;
		case VHU_SET_MEM_TABLE: f->mem_fds = nfds; f->mem = m.p.mem; break;
		case VHU_SET_VRING_ADDR: f->addr = m.p.addr; break;
		case VHU_SET_VRING_KICK: f->kick_fds = nfds; break;
		case VHU_SET_VRING_CALL: f->call_fds = nfds; f->call_payload = m.p.u64; break;
		case VHU_SET_CONFIG:
			f->set_config_off = m.p.config.offset;
			f->set_config_size = m.p.config.size;
			f->set_config_byte = m.p.config.payload[0];
			break;
		default: break;
		}
		if (m.hdr.flags & VHU_FLAG_NEED_REPLY) {
			uint64_t st = r == f->refuse;

			answer(c, r, &st, 8);
		}
	}
	close(c);
	return NULL;
}

#define F_PROTO  (1ull << VHU_F_PROTOCOL_FEATURES)
#define F_V1     (1ull << 32)
#define F_PACKED (1ull << 34)
#define F_MQ     (1ull << 12)
#define F_FLUSH  (1ull << 9)

static void fake_start(struct fake *f)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/kestrel-vhublk-XXXXXX";

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

static void fake_default(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	f->call_fd = -1;
	f->features = F_PROTO | F_V1 | F_PACKED | F_MQ | F_FLUSH | (1ull << 29) | (1ull << 28);
	f->protocol_features = (1ull << VHU_PROTOCOL_F_CONFIG) | (1ull << VHU_PROTOCOL_F_REPLY_ACK) |
			       (1ull << VHU_PROTOCOL_F_MQ);
	f->config[0] = 0x00;
	f->config[1] = 0x80;   /* capacity 0x8000 sectors */
}

/* Transport double: queue 0's kick and irq fds. */
struct tfx {
	int kick, irq;
	unsigned notifies;
};
static struct tfx tfx;

static void t_notify_queue(struct virtio_dev *d, unsigned q)
{
	tfx.notifies++;
}

static void t_notify_config(struct virtio_dev *d)
{
}

static int t_kick_fd(struct virtio_dev *d, unsigned q)
{
	return tfx.kick;
}

static int t_irq_fd(struct virtio_dev *d, unsigned q)
{
	return tfx.irq;
}

static const struct virtio_transport_ops t_tops = {
	.notify_queue = t_notify_queue,
	.notify_config = t_notify_config,
	.queue_kick_fd = t_kick_fd,
	.queue_irq_fd = t_irq_fd,
};

static void drive_to_ok(struct virtio_dev *d)
{
	uint64_t feat = d->host_features;

	d->transport = &tfx;
	d->tops = &t_tops;
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	virtio_set_driver_features(d, 0, (uint32_t)feat);
	virtio_set_driver_features(d, 1, (uint32_t)(feat >> 32));
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	assert_true(d->status & VIRTIO_STATUS_FEATURES_OK);
	d->queues[0].size = 16;
	d->queues[0].desc_gpa = 0x1000;
	d->queues[0].avail_gpa = 0x2000;
	d->queues[0].used_gpa = 0x3000;
	d->queues[0].enabled = true;
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			  VIRTIO_STATUS_DRIVER_OK);
}

static bool saw(const struct fake *f, uint32_t req)
{
	for (unsigned i = 0; i < f->nreqs; i++)
		if (f->reqs[i] == req)
			return true;
	return false;
}

/* ---- the --disk parser ---- */

static void test_parse_vhost_user(void **state)
{
	struct blk_config c;
	char err[256];

	(void)state;
	assert_int_equal(blk_parse_spec("vhost-user=/run/qsd.sock", &c, err, sizeof(err)), 0);
	assert_true(c.vhost_user);
	assert_string_equal(c.path, "/run/qsd.sock");
	assert_int_equal(blk_parse_spec("/img.raw", &c, err, sizeof(err)), 0);
	assert_false(c.vhost_user);

	assert_int_equal(blk_parse_spec("vhost-user=", &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "needs a socket path"));
	assert_int_equal(blk_parse_spec("vhost-user=/s,ro", &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "option 'ro' is not supported"));
	assert_int_equal(blk_parse_spec("vhost-user=/s,queues=2", &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(blk_parse_spec("vhost-user=/s,serial=abc", &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "serial=abc"));
}

/* ---- the device ---- */

static void test_start_and_reset(void **state)
{
	static struct fake f;
	struct vhost_user_blk *b;
	struct guest_mem gm;
	struct virtio_dev *d;
	char err[256] = "";
	uint8_t cap[8];

	(void)state;
	assert_int_equal(gm_init(&gm, 4 << 20, 0), 0);
	fake_default(&f);
	fake_start(&f);
	assert_int_equal(vublk_new(&b, f.path, &gm, err, sizeof(err)), 0);
	d = vublk_virtio(b);
	/* Offered: what the back-end has and kestrel passes through; never packed, MQ or bit 30. */
	assert_true(d->host_features & F_V1);
	assert_true(d->host_features & F_FLUSH);
	assert_false(d->host_features & (F_PACKED | F_MQ | F_PROTO));
	assert_true(d->vhost_user);
	/* Config space comes from GET_CONFIG. */
	d->ops->config_read(d, 0, cap, 8);
	assert_int_equal(cap[1], 0x80);

	tfx = (struct tfx){ .kick = eventfd(0, EFD_CLOEXEC), .irq = eventfd(0, EFD_CLOEXEC) };
	drive_to_ok(d);
	assert_true(d->status & VIRTIO_STATUS_DRIVER_OK);
	assert_false(d->status & VIRTIO_STATUS_NEEDS_RESET);
	/* The driver's features plus PROTOCOL_FEATURES, which keeps the protocol features in force. */
	assert_int_equal(f.acked_features, d->driver_features | F_PROTO);
	assert_int_equal(f.mem_fds, 1);
	assert_int_equal(f.mem.nregions, 1);
	assert_int_equal(f.mem.regions[0].gpa, 0);
	assert_int_equal(f.mem.regions[0].uaddr, (uint64_t)(uintptr_t)gm.regions[0].host);
	assert_int_equal(f.addr.desc, (uint64_t)(uintptr_t)gm_ptr(&gm, 0x1000, 1));
	assert_int_equal(f.addr.avail, (uint64_t)(uintptr_t)gm_ptr(&gm, 0x2000, 1));
	assert_int_equal(f.addr.used, (uint64_t)(uintptr_t)gm_ptr(&gm, 0x3000, 1));
	assert_int_equal(f.kick_fds, 1);
	assert_int_equal(f.call_fds, 1);
	assert_true(saw(&f, VHU_SET_VRING_ENABLE));
	assert_false(saw(&f, VHU_GET_VRING_BASE));

	/* Driver reset: the ring is stopped. */
	virtio_set_status(d, 0);
	assert_true(saw(&f, VHU_GET_VRING_BASE));
	vublk_free(b);
	fake_stop(&f);
	close(tfx.kick);
	close(tfx.irq);
	gm_exit(&gm);
}

static void test_refused_at_activation(void **state)
{
	static struct fake f;
	struct vhost_user_blk *b;
	struct guest_mem gm;
	struct virtio_dev *d;
	char err[256] = "";

	(void)state;
	assert_int_equal(gm_init(&gm, 4 << 20, 0), 0);
	fake_default(&f);
	f.refuse = VHU_SET_MEM_TABLE;
	fake_start(&f);
	assert_int_equal(vublk_new(&b, f.path, &gm, err, sizeof(err)), 0);
	d = vublk_virtio(b);
	tfx = (struct tfx){ .kick = eventfd(0, EFD_CLOEXEC), .irq = -1 };
	drive_to_ok(d);
	/* The VM runs on; the device wants a reset and never handed over its rings. */
	assert_false(d->status & VIRTIO_STATUS_DRIVER_OK);
	assert_true(d->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_false(saw(&f, VHU_SET_VRING_KICK));
	vublk_free(b);
	fake_stop(&f);
	close(tfx.kick);
	gm_exit(&gm);
}

static void test_no_irqfd_uses_own_call_fd(void **state)
{
	static struct fake f;
	struct vhost_user_blk *b;
	struct guest_mem gm;
	struct loop *l = loop_new();
	uint64_t one = 1;
	char err[256] = "";

	(void)state;
	assert_non_null(l);
	assert_int_equal(gm_init(&gm, 4 << 20, 0), 0);
	fake_default(&f);
	fake_start(&f);
	assert_int_equal(vublk_new(&b, f.path, &gm, err, sizeof(err)), 0);
	assert_int_equal(vublk_attach(b, l), 0);
	tfx = (struct tfx){ .kick = eventfd(0, EFD_CLOEXEC), .irq = -1 };
	drive_to_ok(vublk_virtio(b));
	/* INTx: the back-end still gets a call fd (kestrel's, forwarded on the I/O thread). */
	assert_int_equal(f.call_fds, 1);
	assert_int_equal(f.call_payload & VHU_VRING_NOFD, 0);
	assert_true(f.call_fd >= 0);
	/* The back-end signals it: the transport raises the queue's interrupt. */
	assert_int_equal(tfx.notifies, 0);
	assert_int_equal(write(f.call_fd, &one, sizeof(one)), 8);
	loop_run_once(l, 1000);
	assert_int_equal(tfx.notifies, 1);
	vublk_free(b);
	fake_stop(&f);
	close(f.call_fd);
	loop_free(l);
	close(tfx.kick);
	gm_exit(&gm);
}

static void test_handshake_refusals(void **state)
{
	static struct fake f;
	struct vhost_user_blk *b = NULL;
	struct guest_mem gm, nomem = { .memfd = -1 };
	char err[256] = "";

	(void)state;
	assert_int_equal(gm_init(&gm, 4 << 20, 0), 0);

	fake_default(&f);
	f.features &= ~F_PROTO;
	fake_start(&f);
	assert_int_equal(vublk_new(&b, f.path, &gm, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "protocol features"));
	fake_stop(&f);

	fake_default(&f);
	f.protocol_features &= ~(1ull << VHU_PROTOCOL_F_CONFIG);
	fake_start(&f);
	assert_int_equal(vublk_new(&b, f.path, &gm, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "CONFIG"));
	fake_stop(&f);

	fake_default(&f);
	f.bad_config = true;
	fake_start(&f);
	assert_int_equal(vublk_new(&b, f.path, &gm, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "GET_CONFIG: payload of 71 bytes, not 72"));
	fake_stop(&f);

	assert_int_equal(vublk_new(&b, "/tmp/kestrel-no-such.sock", &gm, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot connect"));
	assert_int_equal(vublk_new(&b, "/tmp/x.sock", &nomem, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not shareable"));
	assert_null(b);
	gm_exit(&gm);
}

static void test_config_write_goes_to_backend(void **state)
{
	static struct fake f;
	struct vhost_user_blk *b;
	struct guest_mem gm;
	struct virtio_dev *d;
	uint8_t wce = 1, got = 0xff;
	char err[256] = "";

	(void)state;
	assert_int_equal(gm_init(&gm, 4 << 20, 0), 0);
	fake_default(&f);
	f.features |= 1ull << 11;   /* CONFIG_WCE */
	fake_start(&f);
	assert_int_equal(vublk_new(&b, f.path, &gm, err, sizeof(err)), 0);
	d = vublk_virtio(b);
	assert_true(d->host_features & (1ull << 11));
	/* Only the writeback byte is the driver's to write; the capacity is not. */
	d->ops->config_write(d, 0, &wce, 1);
	assert_false(saw(&f, VHU_SET_CONFIG));
	d->ops->config_write(d, 32, &wce, 1);
	assert_true(saw(&f, VHU_SET_CONFIG));
	assert_int_equal(f.set_config_off, 32);
	assert_int_equal(f.set_config_size, 1);
	assert_int_equal(f.set_config_byte, 1);
	d->ops->config_read(d, 32, &got, 1);
	assert_int_equal(got, 1);
	vublk_free(b);
	fake_stop(&f);
	gm_exit(&gm);
}

/* ---- the virtio-pci side: kick eventfds left to the back-end, irqfds handed out ---- */

static unsigned pci_kicks_seen(bool vhost_user)
{
	struct fake_msi fm = { .next_gsi = 24 };
	struct msi_host msi = { &fake_msi_ops, &fm };
	struct loop *l = loop_new();
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	struct virtio_rng *r = calloc(1, sizeof(*r));
	struct vrd drv;
	uint64_t one = 1, v = 0;
	unsigned kicks;

	assert_non_null(l);
	assert_non_null(vp);
	assert_non_null(r);
	assert_int_equal(vrd_init(&drv, 16), 0);
	rng_init(r, &drv.gm);
	r->vdev.vhost_user = vhost_user;
	assert_int_equal(virtio_pci_init(vp, &r->vdev, &msi, l), 0);
	/* The transport hands out queue 0's kick eventfd and, with MSI-X on, its vector's irqfd. */
	assert_int_equal(r->vdev.tops->queue_kick_fd(&r->vdev, 0), vp->kick_fd[0]);
	assert_int_equal(r->vdev.tops->queue_kick_fd(&r->vdev, 5), -1);
	assert_int_equal(r->vdev.tops->queue_irq_fd(&r->vdev, 0), -1);   /* MSI-X off: INTx */
	vp->msix_enabled = true;
	r->vdev.queues[0].msix_vector = VPCI_NO_VECTOR;
	assert_int_equal(r->vdev.tops->queue_irq_fd(&r->vdev, 0), -1);
	r->vdev.queues[0].msix_vector = 1;
	assert_int_equal(r->vdev.tops->queue_irq_fd(&r->vdev, 0), vp->vec_fd[1]);
	vp->msix_enabled = false;

	assert_int_equal(write(vp->kick_fd[0], &one, sizeof(one)), 8);
	loop_run_once(l, 50);
	kicks = (unsigned)r->vdev.metrics.kicks;
	/* Whoever did not read the kick leaves it for the back-end. */
	if (vhost_user)
		assert_int_equal(read(vp->kick_fd[0], &v, sizeof(v)), 8);
	virtio_pci_exit(vp);
	loop_free(l);
	vrd_exit(&drv);
	free(vp);
	free(r);
	return kicks;
}

static void test_pci_leaves_kicks_to_backend(void **state)
{
	(void)state;
	assert_int_equal(pci_kicks_seen(false), 1);   /* a normal device: the I/O thread reads it */
	assert_int_equal(pci_kicks_seen(true), 0);    /* vhost-user: nobody in kestrel does */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_vhost_user),
		cmocka_unit_test(test_start_and_reset),
		cmocka_unit_test(test_refused_at_activation),
		cmocka_unit_test(test_no_irqfd_uses_own_call_fd),
		cmocka_unit_test(test_handshake_refusals),
		cmocka_unit_test(test_config_write_goes_to_backend),
		cmocka_unit_test(test_pci_leaves_kicks_to_backend),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * vhost-user-blk front-end. The device model is thin: the virtio core and
 * the PCI transport hold the registers the driver programs; at DRIVER_OK
 * this file tells the back-end where guest RAM and the rings are and which
 * eventfds carry kicks and interrupts, and at reset it stops the rings.
 *
 * Everything the back-end says is checked in src/vhost/; here a failed
 * message puts the device in NEEDS_RESET (activation fails) and the VM runs on.
 */
#include "devices/virtio/vhost_user_blk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "loop/loop.h"
#include "util/log.h"
#include "vhost/vhost_user.h"

/* Feature bits (Virtio 1.2, 5.2.3) kestrel lets through from the back-end to the driver. */
#define VUBLK_F_SIZE_MAX     1
#define VUBLK_F_SEG_MAX      2
#define VUBLK_F_GEOMETRY     4
#define VUBLK_F_RO           5
#define VUBLK_F_BLK_SIZE     6
#define VUBLK_F_FLUSH        9
#define VUBLK_F_TOPOLOGY     10
#define VUBLK_F_CONFIG_WCE   11
#define VUBLK_F_DISCARD      13
#define VUBLK_F_WRITE_ZEROES 14

/*
 * Not passed through: MQ (one queue for now), packed rings, ACCESS_PLATFORM
 * (no IOMMU), and bit 30 (vhost-user's own, never the guest's).
 */
#define VUBLK_GUEST_FEATURES                                                                          \
	(VIRTIO_BIT(VUBLK_F_SIZE_MAX) | VIRTIO_BIT(VUBLK_F_SEG_MAX) | VIRTIO_BIT(VUBLK_F_GEOMETRY) |    \
	 VIRTIO_BIT(VUBLK_F_RO) | VIRTIO_BIT(VUBLK_F_BLK_SIZE) | VIRTIO_BIT(VUBLK_F_FLUSH) |             \
	 VIRTIO_BIT(VUBLK_F_TOPOLOGY) | VIRTIO_BIT(VUBLK_F_CONFIG_WCE) | VIRTIO_BIT(VUBLK_F_DISCARD) |  \
	 VIRTIO_BIT(VUBLK_F_WRITE_ZEROES) | VIRTIO_BIT(VIRTIO_F_VERSION_1) |                            \
	 VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))

#define VUBLK_NUM_QUEUES  1
#define VUBLK_QUEUE_SIZE  256
/* virtio_blk_config through write_zeroes_may_unmap and its padding (5.2.4). */
#define VUBLK_CONFIG_SIZE 60
#define VUBLK_CONFIG_WCE_OFF 32   /* `writeback`, the one field a driver writes */

struct vhost_user_blk;

struct vublk_call {
	struct vhost_user_blk *b;
	unsigned q;
	int fd;                      /* ours, for queues without an irqfd */
};

struct vhost_user_blk {
	struct virtio_dev vdev;
	struct vhu_conn conn;
	char path[108];
	uint64_t backend_features;
	uint8_t config[VUBLK_CONFIG_SIZE];
	/*
	 * One request at a time on the connection (activation and reset come
	 * under the core's lock, config writes from any vCPU without it), and
	 * the config copy. Taken after the core's lock, never before it.
	 */
	pthread_mutex_t lock;
	struct loop *loop;
	struct vublk_call call[VUBLK_NUM_QUEUES];
	bool running[VUBLK_NUM_QUEUES];  /* handed to the back-end, not stopped yet */
	bool watching_hup;               /* the socket is on the loop for hang-ups */
	bool hung_up;                    /* atomic: the back-end closed the connection */
};

static struct vhost_user_blk *vublk_of(struct virtio_dev *d)
{
	return d->priv;
}

static void vublk_config_read(struct virtio_dev *d, uint32_t off, void *buf, uint32_t len)
{
	struct vhost_user_blk *b = vublk_of(d);

	/* The core checked off + len against config_size. */
	pthread_mutex_lock(&b->lock);
	memcpy(buf, b->config + off, len);
	pthread_mutex_unlock(&b->lock);
}

static void vublk_config_write(struct virtio_dev *d, uint32_t off, const void *buf, uint32_t len)
{
	struct vhost_user_blk *b = vublk_of(d);
	int e;

	/* Only the cache mode is the driver's to write, and only when offered. */
	if (off != VUBLK_CONFIG_WCE_OFF || len != 1 || !(d->host_features & VIRTIO_BIT(VUBLK_F_CONFIG_WCE)))
		return;
	pthread_mutex_lock(&b->lock);
	e = vhu_set_config(&b->conn, off, buf, len);
	if (e == 0)
		memcpy(b->config + off, buf, len);
	pthread_mutex_unlock(&b->lock);
	if (e < 0)
		log_guest(&d->rl, d->name, "writeback mode not changed: the back-end did not take it (%s)",
			  strerror(-e));
}

/* Stop every ring the back-end runs; its position is logged, not kept (no snapshot support yet). */
static void vublk_stop(struct vhost_user_blk *b)
{
	for (unsigned q = 0; q < VUBLK_NUM_QUEUES; q++) {
		uint32_t base;

		if (!b->running[q])
			continue;
		b->running[q] = false;
		/* Nobody to ask (and the hang-up was logged already). */
		if (vhu_conn_broken(&b->conn) || __atomic_load_n(&b->hung_up, __ATOMIC_ACQUIRE))
			continue;
		if (vhu_get_vring_base(&b->conn, q, &base) == 0)
			log_debug(b->vdev.name, "queue %u stopped at avail index %u", q, base);
	}
}

static void vublk_reset(struct virtio_dev *d)
{
	struct vhost_user_blk *b = vublk_of(d);

	pthread_mutex_lock(&b->lock);
	vublk_stop(b);
	pthread_mutex_unlock(&b->lock);
}

/* The address of [gpa, gpa+len) in kestrel's mapping: what SET_VRING_ADDR speaks in. */
static int vublk_uaddr(const struct virtio_dev *d, uint64_t gpa, uint64_t len, uint64_t *out)
{
	void *p = gm_ptr(d->gm, gpa, len);

	if (!p)
		return -EFAULT;
	*out = (uint64_t)(uintptr_t)p;
	return 0;
}

static int vublk_start_queue(struct vhost_user_blk *b, unsigned q)
{
	struct virtio_dev *d = &b->vdev;
	const struct virtq *vq = &d->queues[q];
	struct vhu_vring_addr a = { .index = q };
	int kick = d->tops->queue_kick_fd(d, q);
	int irq = d->tops->queue_irq_fd(d, q);

	/* vq_activate() checked these ranges; translating them again cannot fail, but is checked anyway. */
	if (vublk_uaddr(d, vq->desc_gpa, 16ull * vq->size, &a.desc) < 0 ||
	    vublk_uaddr(d, vq->avail_gpa, 6 + 2ull * vq->size, &a.avail) < 0 ||
	    vublk_uaddr(d, vq->used_gpa, 6 + 8ull * vq->size, &a.used) < 0)
		return -EFAULT;
	if (kick < 0)
		return -ENODEV;
	if (irq < 0)
		irq = b->call[q].fd;   /* forwarded by vublk_call_cb */
	return vhu_vring_start(&b->conn, &a, vq->size, vq->last_avail, kick, irq, &b->running[q]);
}

static int vublk_activate(struct virtio_dev *d)
{
	struct vhost_user_blk *b = vublk_of(d);
	int e;

	if (!d->tops || !d->tops->queue_kick_fd || !d->tops->queue_irq_fd) {
		log_err(d->name, "vhost-user needs the virtio-pci transport");
		return -ENODEV;
	}
	pthread_mutex_lock(&b->lock);
	/* The driver's choice, plus the bit that keeps protocol features in force. */
	e = vhu_set_features(&b->conn, d->driver_features | VIRTIO_BIT(VHU_F_PROTOCOL_FEATURES));
	if (!e)
		e = vhu_set_mem_table_gm(&b->conn, d->gm);
	for (unsigned q = 0; !e && q < VUBLK_NUM_QUEUES; q++)
		if (d->queues[q].enabled)
			e = vublk_start_queue(b, q);
	if (e < 0) {
		/* Errors from the back-end were logged once by src/vhost/; the rest are ours to say. */
		if (e == -EFAULT || e == -ENODEV || e == -EINVAL || e == -ENOTCONN)
			log_err(d->name, "vhost-user back-end %s: device not started (%s); it needs a reset",
				b->path, strerror(-e));
		vublk_stop(b);
		pthread_mutex_unlock(&b->lock);
		return e;
	}
	pthread_mutex_unlock(&b->lock);
	log_debug(d->name, "vhost-user back-end %s started, features %#llx", b->path,
		  (unsigned long long)d->driver_features);
	return 0;
}

/* The back-end signalled a queue that has no irqfd (INTx, or no MSI-X vector): raise it for it. */
static void vublk_call_cb(void *opaque, uint32_t events)
{
	struct vublk_call *c = opaque;
	struct virtio_dev *d = &c->b->vdev;
	uint64_t v;

	if (read(c->fd, &v, sizeof(v)) == sizeof(v) && d->tops) {
		__atomic_add_fetch(&d->metrics.interrupts, 1, __ATOMIC_RELAXED);
		d->tops->notify_queue(d, c->q);
	}
}

/*
 * The back-end went away. Nothing serves the queue any more: say so once,
 * now rather than at the next reset. The requests in flight wait (no
 * reconnect yet, docs/vhost-user.md); the VM runs on.
 */
static void vublk_hup_cb(void *opaque, uint32_t events)
{
	struct vhost_user_blk *b = opaque;

	loop_del(b->loop, b->conn.fd);   /* level-triggered: once is enough */
	b->watching_hup = false;
	__atomic_store_n(&b->hung_up, true, __ATOMIC_RELEASE);
	log_err(b->vdev.name, "vhost-user back-end %s closed the connection; the disk's requests will not "
		"complete", b->path);
}

static const struct virtio_dev_ops vublk_ops = {
	.config_read = vublk_config_read,
	.config_write = vublk_config_write,
	.activate = vublk_activate,
	.reset = vublk_reset,
};

/* Connection set-up: owner, features, protocol features, config space. */
static int vublk_handshake(struct vhost_user_blk *b, char *err, size_t errlen)
{
	uint64_t pf = 0, want;
	int e;

	e = vhu_set_owner(&b->conn);
	if (!e)
		e = vhu_get_features(&b->conn, &b->backend_features);
	if (e < 0)
		goto err_msg;
	if (!(b->backend_features & VIRTIO_BIT(VHU_F_PROTOCOL_FEATURES)) ||
	    !(b->backend_features & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
		snprintf(err, errlen, "vhost-user back-end %s: offers features %#llx, without VERSION_1 or "
			 "protocol features (both are needed)", b->path, (unsigned long long)b->backend_features);
		return -ENOTSUP;
	}
	e = vhu_get_protocol_features(&b->conn, &pf);
	if (e < 0)
		goto err_msg;
	if (!(pf & (1ull << VHU_PROTOCOL_F_CONFIG))) {
		snprintf(err, errlen, "vhost-user back-end %s: no CONFIG protocol feature, so no disk size",
			 b->path);
		return -ENOTSUP;
	}
	want = pf & ((1ull << VHU_PROTOCOL_F_CONFIG) | (1ull << VHU_PROTOCOL_F_REPLY_ACK));
	e = vhu_set_protocol_features(&b->conn, want);
	if (!e)
		e = vhu_get_config(&b->conn, 0, b->config, VUBLK_CONFIG_SIZE);
	if (e < 0)
		goto err_msg;
	return 0;

err_msg:
	snprintf(err, errlen, "vhost-user back-end %s: set-up failed: %s", b->path,
		 b->conn.error[0] ? b->conn.error : strerror(-e));
	return e;
}

int vublk_new(struct vhost_user_blk **out, const char *socket_path, const struct guest_mem *gm, char *err,
	      size_t errlen)
{
	struct vhost_user_blk *b;
	int e;

	if (gm->memfd < 0) {
		snprintf(err, errlen, "vhost-user disk %s: guest RAM is not shareable (no memfd)", socket_path);
		return -EINVAL;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	snprintf(b->path, sizeof(b->path), "%s", socket_path);
	pthread_mutex_init(&b->lock, NULL);
	vhu_conn_init(&b->conn, -1, "vhost-user-blk");
	for (unsigned q = 0; q < VUBLK_NUM_QUEUES; q++)
		b->call[q] = (struct vublk_call){ .b = b, .q = q, .fd = -1 };
	for (unsigned q = 0; q < VUBLK_NUM_QUEUES; q++) {
		b->call[q].fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (b->call[q].fd < 0) {
			e = -errno;
			snprintf(err, errlen, "vhost-user disk %s: eventfd: %s", socket_path, strerror(-e));
			goto err_free;
		}
	}
	e = vhu_connect(&b->conn, socket_path, "vhost-user-blk", err, errlen);
	if (e < 0)
		goto err_free;
	b->conn.quiet = true;   /* set-up errors reach the user once, through err */
	e = vublk_handshake(b, err, errlen);
	b->conn.quiet = false;
	if (e < 0)
		goto err_free;
	virtio_dev_init(&b->vdev, "vhost-user-blk", VIRTIO_ID_BLOCK, &vublk_ops, b, VUBLK_NUM_QUEUES,
			VUBLK_QUEUE_SIZE, VUBLK_CONFIG_SIZE, gm);
	/* What the back-end can do, not what the core would add for its own queues. */
	b->vdev.host_features = b->backend_features & VUBLK_GUEST_FEATURES;
	b->vdev.vhost_user = true;
	*out = b;
	return 0;

err_free:
	vublk_free(b);
	return e;
}

int vublk_attach(struct vhost_user_blk *b, struct loop *l)
{
	for (unsigned q = 0; q < VUBLK_NUM_QUEUES; q++) {
		int e = loop_add(l, b->call[q].fd, EPOLLIN, vublk_call_cb, &b->call[q]);

		if (e < 0) {
			for (unsigned r = 0; r < q; r++)
				loop_del(l, b->call[r].fd);
			return e;
		}
	}
	b->loop = l;
	/* Hang-ups only (no EPOLLIN): replies are read on the thread that asked. */
	if (loop_add(l, b->conn.fd, EPOLLRDHUP, vublk_hup_cb, b) == 0)
		b->watching_hup = true;
	return 0;
}

void vublk_free(struct vhost_user_blk *b)
{
	if (!b)
		return;
	if (b->watching_hup)
		loop_del(b->loop, b->conn.fd);
	vublk_stop(b);
	vhu_close(&b->conn);
	for (unsigned q = 0; q < VUBLK_NUM_QUEUES; q++) {
		if (b->call[q].fd < 0)
			continue;
		if (b->loop)
			loop_del(b->loop, b->call[q].fd);
		close(b->call[q].fd);
	}
	pthread_mutex_destroy(&b->lock);
	free(b);
}

struct virtio_dev *vublk_virtio(struct vhost_user_blk *b)
{
	return &b->vdev;
}

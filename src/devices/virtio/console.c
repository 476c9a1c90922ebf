#include "devices/virtio/console.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "snapshot/snap.h"

#define VCON_F_EMERG_WRITE 2
#define VCON_QUEUE_SIZE 256
#define VCON_RXQ 0
#define VCON_TXQ 1

struct vcon_config {
	uint16_t cols;
	uint16_t rows;
	uint32_t max_nr_ports;
	uint32_t emerg_wr;
} __attribute__((packed));
_Static_assert(sizeof(struct vcon_config) == 12, "virtio-console config is 12 bytes");

static uint64_t vcon_features(struct virtio_dev *d)
{
	return VIRTIO_BIT(VCON_F_EMERG_WRITE);
}

static void vcon_config_read(struct virtio_dev *d, uint32_t off, void *buf, uint32_t len)
{
	struct vcon_config cfg = { .max_nr_ports = htole32(1) };

	memcpy(buf, (uint8_t *)&cfg + off, len);
}

static void vcon_config_write(struct virtio_dev *d, uint32_t off, const void *buf, uint32_t len)
{
	struct virtio_console *c = d->priv;
	uint8_t ch;

	/* emerg_wr: one character written straight out, even before the queues work. */
	if (off == offsetof(struct vcon_config, emerg_wr) && len >= 1) {
		memcpy(&ch, buf, 1);
		chardev_write(c->out, &ch, 1);
		c->tx_bytes++;
	}
}

static void vcon_tx(struct virtio_console *c)
{
	struct virtio_dev *d = &c->vdev;
	struct virtq *vq = &d->queues[VCON_TXQ];
	struct vq_elem *e = malloc(sizeof(*e));
	bool pushed = false, ok = true;

	if (!e)
		return;
	do {
		vq_disable_kicks(vq);
		for (unsigned n = 0; n < vq->size; n++) {
			int rc = vq_pop(vq, e);

			if (rc == -ENOENT)
				break;
			if (rc < 0) {
				virtio_fail(d, "console: bad transmit chain");
				ok = false;
				break;
			}
			for (unsigned i = 0; i < e->out_num; i++)
				chardev_write(c->out, e->iov[i].iov_base, e->iov[i].iov_len);
			c->tx_bytes += e->out_len;
			vq_push(vq, e->head, 0);
			pushed = true;
		}
	} while (ok && vq_enable_kicks(vq));
	free(e);
	if (pushed)
		virtio_notify_queue(d, VCON_TXQ);
}

/* Move buffered input into receive buffers; returns true if the buffer drained. */
static bool vcon_rx(struct virtio_console *c)
{
	struct virtio_dev *d = &c->vdev;
	struct virtq *vq = &d->queues[VCON_RXQ];
	struct vq_elem *e;
	bool pushed = false, drained = false;

	if (!(d->status & VIRTIO_STATUS_DRIVER_OK) || !vq->enabled)
		return false;
	e = malloc(sizeof(*e));
	if (!e)
		return false;
	pthread_mutex_lock(&c->lock);
	while (c->rx_len) {
		int rc = vq_pop(vq, e);
		size_t n = 0;

		if (rc == -ENOENT)
			break;
		if (rc < 0) {
			pthread_mutex_unlock(&c->lock);
			virtio_fail(d, "console: bad receive chain");
			free(e);
			return false;
		}
		while (c->rx_len && n < e->in_len) {
			size_t chunk = VCON_RX_BUF - c->rx_head;

			if (chunk > c->rx_len)
				chunk = c->rx_len;
			if (chunk > e->in_len - n)
				chunk = e->in_len - n;
			vq_copy_to_in(e, n, c->rx + c->rx_head, chunk);
			n += chunk;
			c->rx_head = (c->rx_head + chunk) % VCON_RX_BUF;
			c->rx_len -= chunk;
		}
		c->rx_bytes += n;
		log_debug("virtio-console", "%zu bytes to the guest", n);
		vq_push(vq, e->head, (uint32_t)n);
		pushed = true;
		drained = c->rx_len == 0;
	}
	pthread_mutex_unlock(&c->lock);
	free(e);
	/* Ask for a kick when the driver adds receive buffers (avail_event with EVENT_IDX). */
	vq_enable_kicks(vq);
	if (pushed)
		virtio_notify_queue(d, VCON_RXQ);
	return drained;
}

static void vcon_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_console *c = d->priv;

	if (q == VCON_TXQ)
		vcon_tx(c);
	else if (q == VCON_RXQ && vcon_rx(c) && c->rx_drained)
		c->rx_drained(c->rx_opaque);
}

static void vcon_wake_cb(void *opaque)
{
	struct virtio_console *c = opaque;

	if (vcon_rx(c) && c->rx_drained)
		c->rx_drained(c->rx_opaque);
}

/* Have the I/O thread move buffered input into the receive queue. */
static void vcon_wake(struct virtio_console *c)
{
	struct loop *l = __atomic_load_n(&c->loop, __ATOMIC_ACQUIRE);

	if (l)
		loop_work_post(l, &c->wake);
}

size_t vcon_receive(struct virtio_console *c, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&c->lock);
	while (n < len && c->rx_len < VCON_RX_BUF) {
		c->rx[(c->rx_head + c->rx_len) % VCON_RX_BUF] = buf[n++];
		c->rx_len++;
	}
	pthread_mutex_unlock(&c->lock);
	log_debug("virtio-console", "host input: %zu of %zu bytes buffered", n, len);
	if (n)
		vcon_wake(c);
	return n;
}

/* DRIVER_OK: input that arrived early, and buffers the driver posted, meet now. */
static int vcon_activate(struct virtio_dev *d)
{
	vcon_wake(d->priv);
	return 0;
}

/*
 * Snapshot: the one port has no state of its own beyond the queues; what
 * the device keeps is host input not yet moved into receive buffers. (No
 * quiesce op is needed: transmit and receive pop and push each chain in one
 * go on the I/O thread, so a stopped thread leaves nothing half done.)
 */
static void vcon_save(struct virtio_dev *d, struct snap_writer *w)
{
	struct virtio_console *c = d->priv;

	pthread_mutex_lock(&c->lock);
	snap_put_u32(w, VCON_SNAP_VERSION);
	snap_put_u32(w, (uint32_t)c->rx_len);
	for (size_t i = 0; i < c->rx_len; i++)
		snap_put_u8(w, c->rx[(c->rx_head + i) % VCON_RX_BUF]);
	pthread_mutex_unlock(&c->lock);
}

static int vcon_load(struct virtio_dev *d, struct snap_sec *s, bool apply, char *err, size_t errlen)
{
	struct virtio_console *c = d->priv;
	uint8_t buf[VCON_RX_BUF];
	uint32_t version = snap_get_u32(s);
	uint32_t len = snap_get_u32(s);

	if (s->err || version != VCON_SNAP_VERSION || len > VCON_RX_BUF || snap_get(s, buf, len) < 0) {
		snprintf(err, errlen, "virtio-console: state is truncated, of another version, or holds "
			 "more input than the device buffers");
		snap_sec_fail(s);
		return -EINVAL;
	}
	if (apply) {
		pthread_mutex_lock(&c->lock);
		memcpy(c->rx, buf, len);
		c->rx_head = 0;
		c->rx_len = len;
		pthread_mutex_unlock(&c->lock);
	}
	return 0;
}

static const struct virtio_dev_ops vcon_ops = {
	.activate = vcon_activate,
	.save = vcon_save,
	.load = vcon_load,
	.features = vcon_features,
	.config_read = vcon_config_read,
	.config_write = vcon_config_write,
	.queue_notify = vcon_queue_notify,
};

void vcon_init(struct virtio_console *c, const struct guest_mem *gm, struct chardev *out)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	c->out = out;
	loop_work_init(&c->wake, vcon_wake_cb, c);
	virtio_dev_init(&c->vdev, "virtio-console", VIRTIO_ID_CONSOLE, &vcon_ops, c, 2, VCON_QUEUE_SIZE,
			sizeof(struct vcon_config), gm);
}

int vcon_attach(struct virtio_console *c, struct loop *l)
{
	if (c->loop)
		return -EBUSY;
	__atomic_store_n(&c->loop, l, __ATOMIC_RELEASE);
	/* Input may have arrived before: look at it once the loop runs. */
	loop_work_post(l, &c->wake);
	return 0;
}

void vcon_detach(struct virtio_console *c)
{
	struct loop *l = c->loop;

	if (!l)
		return;
	__atomic_store_n(&c->loop, NULL, __ATOMIC_RELEASE);
	loop_work_cancel(l, &c->wake);
}

void vcon_exit(struct virtio_console *c)
{
	vcon_detach(c);
	pthread_mutex_destroy(&c->lock);
}

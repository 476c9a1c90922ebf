/*
 * vhost-user-net front-end. The device model is thin: the virtio core and
 * the PCI transport hold the registers the driver programs, this file holds
 * the config space (MAC and link status; a net back-end has none), and at
 * DRIVER_OK tells the back-end where guest RAM and the two rings are and
 * which eventfds carry kicks and interrupts; at reset it stops the rings.
 *
 * Everything the back-end says is checked in src/vhost/; here a failed
 * message puts the device in NEEDS_RESET (activation fails), a hang-up takes
 * the link down, and the VM runs on either way.
 */
#include "devices/virtio/vhost_user_net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "devices/virtio/net.h"
#include "loop/loop.h"
#include "util/log.h"
#include "vhost/vhost_user.h"

/*
 * What kestrel lets through from the back-end to the driver: mergeable
 * receive buffers, the ring features the back-end implements, VERSION_1.
 * Not passed through: offloads (kestrel has not tested them with a
 * back-end), MQ and CTRL_VQ (one queue pair, no control queue here),
 * packed rings, ACCESS_PLATFORM (no IOMMU), and bit 30 (vhost-user's own).
 */
#define VUNET_BACKEND_FEATURES                                                                        \
	(VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) | VIRTIO_BIT(VIRTIO_F_VERSION_1) |                          \
	 VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))
/* kestrel's own: it keeps the config space these describe. */
#define VUNET_OWN_FEATURES (VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS))

#define VUNET_NUM_QUEUES  2     /* receiveq1, transmitq1 */
#define VUNET_QUEUE_SIZE  256
/* virtio_net_config: mac[6], status (5.1.4); nothing after it is offered. */
#define VUNET_CONFIG_SIZE 8
#define VUNET_STATUS_OFF  6

struct vhost_user_net;

struct vunet_call {
	struct vhost_user_net *n;
	unsigned q;
	int fd;                      /* ours, for queues without an irqfd */
};

struct vhost_user_net {
	struct virtio_dev vdev;
	struct vhu_conn conn;
	char path[VUNET_PATH_MAX];
	uint64_t backend_features;
	/*
	 * One request at a time on the connection (activation and reset come
	 * under the core's lock, the hang-up on the I/O thread), and the
	 * config copy. Taken after the core's lock, never before it.
	 */
	pthread_mutex_t lock;
	uint8_t config[VUNET_CONFIG_SIZE];
	struct loop *loop;
	struct vunet_call call[VUNET_NUM_QUEUES];
	bool running[VUNET_NUM_QUEUES];  /* handed to the back-end, not stopped yet */
	bool watching_hup;
	bool hung_up;                    /* under lock: the back-end closed the connection */
};

/* ---- --net vhost-user=SOCK[,mac=M] ---- */

int vunet_parse_spec(const char *spec, char path[VUNET_PATH_MAX], uint8_t mac[6], char *err, size_t errlen)
{
	static const char key[] = "vhost-user=";
	const char *p;
	size_t plen;
	bool mac_given = false;
	char seed[VUNET_PATH_MAX + sizeof(key)];

	if (strncmp(spec, key, sizeof(key) - 1) != 0) {
		snprintf(err, errlen, "--net: expected vhost-user=SOCKET");
		return -EINVAL;
	}
	p = spec + sizeof(key) - 1;
	plen = strcspn(p, ",");
	if (plen == 0 || plen >= VUNET_PATH_MAX) {
		snprintf(err, errlen, "--net vhost-user=: the socket path must be 1 to %d bytes", VUNET_PATH_MAX - 1);
		return -EINVAL;
	}
	memcpy(path, p, plen);
	path[plen] = '\0';
	p += plen;
	while (*p == ',') {
		size_t len;

		p++;
		len = strcspn(p, ",");
		if (len > 4 && !strncmp(p, "mac=", 4)) {
			if (mac_given || vnet_parse_mac(p + 4, len - 4, mac) < 0) {
				snprintf(err, errlen, "--net vhost-user: %s mac= (expected one unicast "
					 "xx:xx:xx:xx:xx:xx)", mac_given ? "repeated" : "bad");
				return -EINVAL;
			}
			mac_given = true;
		} else {
			snprintf(err, errlen, "--net vhost-user: unknown option '%.*s' (expected mac=)",
				 (int)(len > 32 ? 32 : len), p);
			return -EINVAL;
		}
		p += len;
	}
	if (!mac_given) {
		snprintf(seed, sizeof(seed), "%s%s", key, path);
		vnet_default_mac(seed, 0, mac);
	}
	return 0;
}

/* ---- the device ---- */

static struct vhost_user_net *vunet_of(struct virtio_dev *d)
{
	return d->priv;
}

static void vunet_config_read(struct virtio_dev *d, uint32_t off, void *buf, uint32_t len)
{
	struct vhost_user_net *n = vunet_of(d);

	/* The core checked off + len against config_size. */
	pthread_mutex_lock(&n->lock);
	memcpy(buf, n->config + off, len);
	pthread_mutex_unlock(&n->lock);
}

/* Nothing in virtio-net's config space is the driver's to write without CTRL_MAC_ADDR (5.1.4). */
static void vunet_config_write(struct virtio_dev *d, uint32_t off, const void *buf, uint32_t len)
{
	(void)d; (void)off; (void)buf; (void)len;
}

/* Stop every ring the back-end runs; its position is logged, not kept (no snapshot support yet). */
static void vunet_stop(struct vhost_user_net *n)
{
	for (unsigned q = 0; q < VUNET_NUM_QUEUES; q++) {
		uint32_t base;

		if (!n->running[q])
			continue;
		n->running[q] = false;
		if (vhu_conn_broken(&n->conn) || n->hung_up)
			continue;
		if (vhu_get_vring_base(&n->conn, q, &base) == 0)
			log_debug(n->vdev.name, "queue %u stopped at avail index %u", q, base);
	}
}

static void vunet_reset(struct virtio_dev *d)
{
	struct vhost_user_net *n = vunet_of(d);

	pthread_mutex_lock(&n->lock);
	vunet_stop(n);
	pthread_mutex_unlock(&n->lock);
}

static int vunet_uaddr(const struct virtio_dev *d, uint64_t gpa, uint64_t len, uint64_t *out)
{
	void *p = gm_ptr(d->gm, gpa, len);

	if (!p)
		return -EFAULT;
	*out = (uint64_t)(uintptr_t)p;
	return 0;
}

static int vunet_start_queue(struct vhost_user_net *n, unsigned q)
{
	struct virtio_dev *d = &n->vdev;
	const struct virtq *vq = &d->queues[q];
	struct vhu_vring_addr a = { .index = q };
	int kick = d->tops->queue_kick_fd(d, q);
	int irq = d->tops->queue_irq_fd(d, q);

	if (vunet_uaddr(d, vq->desc_gpa, 16ull * vq->size, &a.desc) < 0 ||
	    vunet_uaddr(d, vq->avail_gpa, 6 + 2ull * vq->size, &a.avail) < 0 ||
	    vunet_uaddr(d, vq->used_gpa, 6 + 8ull * vq->size, &a.used) < 0)
		return -EFAULT;
	if (kick < 0)
		return -ENODEV;
	if (irq < 0)
		irq = n->call[q].fd;   /* forwarded by vunet_call_cb */
	return vhu_vring_start(&n->conn, &a, vq->size, vq->last_avail, kick, irq, &n->running[q]);
}

static int vunet_activate(struct virtio_dev *d)
{
	struct vhost_user_net *n = vunet_of(d);
	int e;

	if (!d->tops || !d->tops->queue_kick_fd || !d->tops->queue_irq_fd) {
		log_err(d->name, "vhost-user needs the virtio-pci transport");
		return -ENODEV;
	}
	pthread_mutex_lock(&n->lock);
	if (n->hung_up) {
		pthread_mutex_unlock(&n->lock);
		log_err(d->name, "vhost-user back-end %s is gone: device not started; the link stays down", n->path);
		return -ENOTCONN;
	}
	/*
	 * The back-end gets the driver's choice of its own bits only (MAC and
	 * STATUS are kestrel's), plus the bit that keeps protocol features on.
	 */
	e = vhu_set_features(&n->conn, (d->driver_features & n->backend_features & ~VUNET_OWN_FEATURES) |
				       VIRTIO_BIT(VHU_F_PROTOCOL_FEATURES));
	if (!e)
		e = vhu_set_mem_table_gm(&n->conn, d->gm);
	for (unsigned q = 0; !e && q < VUNET_NUM_QUEUES; q++)
		if (d->queues[q].enabled)
			e = vunet_start_queue(n, q);
	if (e < 0) {
		if (e == -EFAULT || e == -ENODEV || e == -EINVAL || e == -ENOTCONN)
			log_err(d->name, "vhost-user back-end %s: device not started (%s); it needs a reset",
				n->path, strerror(-e));
		vunet_stop(n);
		pthread_mutex_unlock(&n->lock);
		return e;
	}
	pthread_mutex_unlock(&n->lock);
	log_debug(d->name, "vhost-user back-end %s started, features %#llx", n->path,
		  (unsigned long long)d->driver_features);
	return 0;
}

/* The back-end signalled a queue that has no irqfd (INTx, or no MSI-X vector): raise it for it. */
static void vunet_call_cb(void *opaque, uint32_t events)
{
	struct vunet_call *c = opaque;
	struct virtio_dev *d = &c->n->vdev;
	uint64_t v;

	(void)events;
	if (read(c->fd, &v, sizeof(v)) == sizeof(v) && d->tops) {
		__atomic_add_fetch(&d->metrics.interrupts, 1, __ATOMIC_RELAXED);
		d->tops->notify_queue(d, c->q);
	}
}

/*
 * The back-end went away: nothing serves the rings any more. The link goes
 * down and the driver hears it through a config-change interrupt (it
 * negotiated STATUS, or it reads 0 anyway); one log line; the VM runs on.
 * No reconnect yet (docs/vhost-user.md).
 */
static void vunet_hup_cb(void *opaque, uint32_t events)
{
	struct vhost_user_net *n = opaque;
	bool tell;

	(void)events;
	loop_del(n->loop, n->conn.fd);   /* level-triggered: once is enough */
	n->watching_hup = false;
	pthread_mutex_lock(&n->lock);
	n->hung_up = true;
	n->config[VUNET_STATUS_OFF] &= (uint8_t)~VIRTIO_NET_S_LINK_UP;
	pthread_mutex_unlock(&n->lock);
	log_err(n->vdev.name, "vhost-user back-end %s closed the connection; link down", n->path);
	pthread_mutex_lock(&n->vdev.lock);
	tell = (n->vdev.driver_features & VIRTIO_BIT(VIRTIO_NET_F_STATUS)) &&
	       (n->vdev.status & VIRTIO_STATUS_DRIVER_OK);
	pthread_mutex_unlock(&n->vdev.lock);
	if (tell)
		virtio_notify_config(&n->vdev);
}

static const struct virtio_dev_ops vunet_ops = {
	.config_read = vunet_config_read,
	.config_write = vunet_config_write,
	.activate = vunet_activate,
	.reset = vunet_reset,
};

/* Connection set-up: owner, features, protocol features. */
static int vunet_handshake(struct vhost_user_net *n, char *err, size_t errlen)
{
	uint64_t pf = 0;
	int e;

	e = vhu_set_owner(&n->conn);
	if (!e)
		e = vhu_get_features(&n->conn, &n->backend_features);
	if (e < 0)
		goto err_msg;
	if (!(n->backend_features & VIRTIO_BIT(VHU_F_PROTOCOL_FEATURES)) ||
	    !(n->backend_features & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
		snprintf(err, errlen, "vhost-user back-end %s: offers features %#llx, without VERSION_1 or "
			 "protocol features (both are needed)", n->path, (unsigned long long)n->backend_features);
		return -ENOTSUP;
	}
	e = vhu_get_protocol_features(&n->conn, &pf);
	if (!e)
		e = vhu_set_protocol_features(&n->conn, pf & (1ull << VHU_PROTOCOL_F_REPLY_ACK));
	if (e < 0)
		goto err_msg;
	return 0;

err_msg:
	snprintf(err, errlen, "vhost-user back-end %s: set-up failed: %s", n->path,
		 n->conn.error[0] ? n->conn.error : strerror(-e));
	return e;
}

int vunet_new(struct vhost_user_net **out, const char *socket_path, const uint8_t mac[6],
	      const struct guest_mem *gm, char *err, size_t errlen)
{
	struct vhost_user_net *n;
	int e;

	if (gm->memfd < 0) {
		snprintf(err, errlen, "vhost-user NIC %s: guest RAM is not shareable (no memfd)", socket_path);
		return -EINVAL;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	snprintf(n->path, sizeof(n->path), "%s", socket_path);
	pthread_mutex_init(&n->lock, NULL);
	vhu_conn_init(&n->conn, -1, "vhost-user-net");
	for (unsigned q = 0; q < VUNET_NUM_QUEUES; q++)
		n->call[q] = (struct vunet_call){ .n = n, .q = q, .fd = -1 };
	for (unsigned q = 0; q < VUNET_NUM_QUEUES; q++) {
		n->call[q].fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (n->call[q].fd < 0) {
			e = -errno;
			snprintf(err, errlen, "vhost-user NIC %s: eventfd: %s", socket_path, strerror(-e));
			goto err_free;
		}
	}
	e = vhu_connect(&n->conn, socket_path, "vhost-user-net", err, errlen);
	if (e < 0)
		goto err_free;
	n->conn.quiet = true;   /* set-up errors reach the user once, through err */
	e = vunet_handshake(n, err, errlen);
	n->conn.quiet = false;
	if (e < 0)
		goto err_free;
	memcpy(n->config, mac, 6);
	n->config[VUNET_STATUS_OFF] = VIRTIO_NET_S_LINK_UP;
	virtio_dev_init(&n->vdev, "vhost-user-net", VIRTIO_ID_NET, &vunet_ops, n, VUNET_NUM_QUEUES,
			VUNET_QUEUE_SIZE, VUNET_CONFIG_SIZE, gm);
	n->vdev.host_features = (n->backend_features & VUNET_BACKEND_FEATURES) | VUNET_OWN_FEATURES;
	n->vdev.vhost_user = true;
	*out = n;
	return 0;

err_free:
	vunet_free(n);
	return e;
}

int vunet_attach(struct vhost_user_net *n, struct loop *l)
{
	for (unsigned q = 0; q < VUNET_NUM_QUEUES; q++) {
		int e = loop_add(l, n->call[q].fd, EPOLLIN, vunet_call_cb, &n->call[q]);

		if (e < 0) {
			for (unsigned r = 0; r < q; r++)
				loop_del(l, n->call[r].fd);
			return e;
		}
	}
	n->loop = l;
	/* Hang-ups only (no EPOLLIN): replies are read on the thread that asked. */
	if (loop_add(l, n->conn.fd, EPOLLRDHUP, vunet_hup_cb, n) == 0)
		n->watching_hup = true;
	return 0;
}

uint16_t vunet_link_status(struct vhost_user_net *n)
{
	uint16_t s;

	pthread_mutex_lock(&n->lock);
	s = (uint16_t)(n->config[VUNET_STATUS_OFF] | n->config[VUNET_STATUS_OFF + 1] << 8);
	pthread_mutex_unlock(&n->lock);
	return s;
}

void vunet_free(struct vhost_user_net *n)
{
	if (!n)
		return;
	if (n->watching_hup)
		loop_del(n->loop, n->conn.fd);
	vunet_stop(n);
	vhu_close(&n->conn);
	for (unsigned q = 0; q < VUNET_NUM_QUEUES; q++) {
		if (n->call[q].fd < 0)
			continue;
		if (n->loop)
			loop_del(n->loop, n->call[q].fd);
		close(n->call[q].fd);
	}
	pthread_mutex_destroy(&n->lock);
	free(n);
}

struct virtio_dev *vunet_virtio(struct vhost_user_net *n)
{
	return &n->vdev;
}

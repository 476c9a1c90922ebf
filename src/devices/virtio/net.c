/*
 * virtio-net device model (Virtio 1.2 section 5.1) over a network backend.
 *
 * Transmit: a kick pops chains from transmitq1; each is the 12-byte header
 * followed by one frame, all device-readable. The header is copied out and
 * checked once; the frame goes to the backend straight from guest memory as
 * iovecs (with our copy of the header in front when the backend takes one).
 * A frame the backend cannot take right now (-EAGAIN) is copied into a
 * device buffer, its chain completed, and transmission pauses until the
 * backend fd is writable: no chain is ever held across wake-ups.
 *
 * Receive: frames are read from the backend only while the guest has posted
 * receive buffers, one frame at a time into a device buffer, then copied
 * into the chains: one chain per frame without VIRTIO_NET_F_MRG_RXBUF, as
 * many as needed with it (num_buffers says how many). A frame that needs
 * more chains than the guest has posted waits, with the chains filled so
 * far held back, until the guest refills; nothing becomes visible in the
 * used ring before the whole frame is there. With no buffers at all the
 * backend fd is dropped from the poll set until the next receive kick, so
 * the backend (a tap's socket queue, slirp's queue) holds the traffic.
 * Drops happen only for frames that can never fit the guest's buffers.
 *
 * Bounded work: at most NET_TX_BUDGET transmit chains and NET_RX_BUDGET
 * frames per wake-up; a cut transmit batch reschedules itself through the
 * work eventfd, receive relies on the level-triggered backend fd.
 *
 * Locking: n->lock covers the queues and device state. activate/reset come
 * with the core's d->lock (and a transport's register lock) held, and the
 * core and transports take those locks again to raise interrupts and to
 * fail a device, so nothing here calls into them while holding n->lock:
 * interrupts and violations are recorded and delivered by vnet_unlock().
 */
#include "devices/virtio/net.h"

#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "loop/loop.h"
#include "snapshot/snap.h"
#include "util/bytes.h"
#include "util/log.h"

#define NET_TAG        "virtio-net"
#define NET_TX_BUDGET  256
#define NET_RX_BUDGET  256
#define NET_ETH_HLEN   14
#define NET_BUF_LEN    (NET_VNET_HDR_LEN + NET_MAX_FRAME)
#define NET_MAX_IOV    1024        /* writev's limit (UIO_MAXIOV) */

/* Work handed to the I/O thread (n->work_post). */
#define NET_WORK_RX     (1u << NET_RX_QUEUE)
#define NET_WORK_TX     (1u << NET_TX_QUEUE)
#define NET_WORK_EVENTS (1u << 2)

struct virtio_net {
	struct virtio_dev vdev;
	struct net_backend *be;
	uint8_t mac[6];
	uint16_t mtu;

	pthread_mutex_t lock;
	bool active;                 /* DRIVER_OK and queues armed */
	bool failed;                 /* protocol violation seen; until reset */
	bool fail_pending;
	char fail_msg[160];
	uint32_t notify;             /* queues to interrupt once n->lock is dropped */
	uint64_t features;           /* negotiated, copied at activation */
	bool mrg_rxbuf;

	/* I/O thread side. */
	struct loop *loop;           /* atomic: vCPU threads post work through it */
	struct loop_work work_post;
	uint32_t work;               /* NET_WORK_* (atomic) */
	pthread_t io_thread;
	bool io_thread_known;        /* atomic */
	uint32_t be_events;          /* what the backend fd is registered for */
	bool be_registered;          /* the backend fd is in the loop */
	bool rx_blocked;             /* waiting for receive buffers */
	bool rx_dead;                /* the backend failed hard: stop reading */
	bool tx_more;                /* a transmit batch was cut by its budget */

	/* A frame from the backend being delivered: [hdr][frame] in rx_buf. */
	uint8_t *rx_buf;
	bool rx_pending;
	size_t rx_len, rx_off;
	unsigned rx_nheld;           /* chains filled but not yet in the used ring */
	uint16_t rx_head[VQ_MAX_SIZE];
	uint32_t rx_written[VQ_MAX_SIZE];
	uint64_t rx_nbuf_gpa[2];     /* where the first chain's num_buffers bytes are */

	/* A guest frame waiting for the backend: [hdr][frame] in tx_buf. */
	uint8_t *tx_buf;
	bool tx_pending;
	size_t tx_pending_len;
	struct iovec tx_iov[NET_MAX_IOV + 1];

	struct vq_elem elem;
	struct vnet_stats stats;
	struct log_ratelimit rl;
};

static struct virtio_net *vnet_of(struct virtio_dev *d)
{
	return d->priv;
}

static bool vnet_has(const struct virtio_net *n, unsigned bit)
{
	return n->features & VIRTIO_BIT(bit);
}

static void vnet_count(uint64_t *field, uint64_t v)
{
	__atomic_add_fetch(field, v, __ATOMIC_RELAXED);
}

/* Caller holds n->lock. The core hears about it once the lock is dropped. */
__attribute__((format(printf, 2, 3)))
static void vnet_fail(struct virtio_net *n, const char *fmt, ...)
{
	va_list ap;

	if (n->failed)
		return;
	n->failed = true;
	n->fail_pending = true;
	va_start(ap, fmt);
	vsnprintf(n->fail_msg, sizeof(n->fail_msg), fmt, ap);
	va_end(ap);
}

static void vnet_lock(struct virtio_net *n)
{
	pthread_mutex_lock(&n->lock);
}

static void vnet_unlock(struct virtio_net *n)
{
	char msg[sizeof(n->fail_msg)];
	bool fail = n->fail_pending;
	uint32_t notify = n->notify;

	if (fail) {
		memcpy(msg, n->fail_msg, sizeof(msg));
		n->fail_pending = false;
	}
	n->notify = 0;
	pthread_mutex_unlock(&n->lock);
	/*
	 * Only the I/O thread (or a test's single thread) processes the queues,
	 * so the suppression state virtio_notify_queue() reads is not changing
	 * under it; a reset racing with it can at worst cause one spurious
	 * interrupt, which drivers tolerate.
	 */
	for (unsigned q = 0; q < 2; q++)
		if (notify & (1u << q))
			virtio_notify_queue(&n->vdev, q);
	if (fail)
		virtio_fail(&n->vdev, "%s", msg);
}

static bool vnet_running(const struct virtio_net *n)
{
	return n->active && !n->failed;
}

/* ---- transmit ---- */

/* The guest's header, checked against what was negotiated. false: drop the frame. */
static bool vnet_tx_hdr_ok(struct virtio_net *n, struct virtio_net_hdr *h, size_t frame_len)
{
	uint8_t gso = h->gso_type;

	if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !vnet_has(n, VIRTIO_NET_F_CSUM))
		return false;
	if (gso == VIRTIO_NET_HDR_GSO_TCPV4 && !vnet_has(n, VIRTIO_NET_F_HOST_TSO4))
		return false;
	if (gso == VIRTIO_NET_HDR_GSO_TCPV6 && !vnet_has(n, VIRTIO_NET_F_HOST_TSO6))
		return false;
	if (gso != VIRTIO_NET_HDR_GSO_NONE && gso != VIRTIO_NET_HDR_GSO_TCPV4 && gso != VIRTIO_NET_HDR_GSO_TCPV6)
		return false;   /* UDP (UFO) and ECN were not offered */
	if (gso != VIRTIO_NET_HDR_GSO_NONE && !(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM))
		return false;   /* 5.1.6.2.1: segmentation needs a partial checksum */
	if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
	    (uint32_t)le16toh(h->csum_start) + le16toh(h->csum_offset) + 2u > frame_len)
		return false;
	/* Only NEEDS_CSUM means something on transmit; num_buffers is unused. */
	h->flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h->num_buffers = 0;
	return true;
}

static void vnet_tx_drop(struct virtio_net *n, const char *why, size_t len)
{
	vnet_count(&n->stats.tx_dropped, 1);
	vnet_count(&n->stats.tx_errors, 1);
	vnet_count(&n->vdev.metrics.errors, 1);
	log_guest(&n->rl, NET_TAG, "dropping a %zu-byte transmit frame: %s", len, why);
}

static void vnet_tx_sent(struct virtio_net *n, size_t frame_len)
{
	vnet_count(&n->stats.tx_packets, 1);
	vnet_count(&n->stats.tx_bytes, frame_len);
	vnet_count(&n->vdev.metrics.tx_packets, 1);
	vnet_count(&n->vdev.metrics.tx_bytes, frame_len);
}

/* Send tx_buf ([hdr][frame]); the header only if the backend takes one. */
static ssize_t vnet_tx_send_buf(struct virtio_net *n, size_t len)
{
	struct iovec iov;
	size_t skip = n->be->vnet_hdr ? 0 : NET_VNET_HDR_LEN;

	iov.iov_base = n->tx_buf + skip;
	iov.iov_len = len - skip;
	return net_backend_send(n->be, &iov, 1);
}

/* The backend could not take the frame now: keep a copy, complete the chain. */
static void vnet_tx_defer(struct virtio_net *n, const struct vq_elem *e, const struct virtio_net_hdr *h)
{
	memcpy(n->tx_buf, h, NET_VNET_HDR_LEN);
	n->tx_pending_len = NET_VNET_HDR_LEN +
		vq_copy_from_out(e, NET_VNET_HDR_LEN, n->tx_buf + NET_VNET_HDR_LEN, NET_MAX_FRAME);
	n->tx_pending = true;
}

/* One chain. Returns 0 (sent or dropped), -EAGAIN (frame kept for later), -EPROTO. */
static int vnet_tx_one(struct virtio_net *n, const struct vq_elem *e)
{
	struct virtio_net_hdr h;
	size_t frame_len, skip = NET_VNET_HDR_LEN;
	unsigned cnt = 0;
	ssize_t rc;

	if (e->in_num) {
		vnet_fail(n, "transmit chain %u has a device-writable buffer", e->head);
		return -EPROTO;
	}
	if (e->out_len < NET_VNET_HDR_LEN) {
		vnet_fail(n, "transmit chain %u is shorter than the virtio-net header", e->head);
		return -EPROTO;
	}
	frame_len = e->out_len - NET_VNET_HDR_LEN;
	if (frame_len > NET_MAX_FRAME) {
		vnet_tx_drop(n, "larger than 64 KiB", frame_len);
		return 0;
	}
	if (frame_len < NET_ETH_HLEN) {
		vnet_tx_drop(n, "shorter than an Ethernet header", frame_len);
		return 0;
	}
	vq_copy_from_out(e, 0, &h, sizeof(h));
	if (!vnet_tx_hdr_ok(n, &h, frame_len)) {
		vnet_tx_drop(n, "offload not negotiated or bad header", frame_len);
		return 0;
	}

	if (n->be->vnet_hdr) {
		n->tx_iov[cnt].iov_base = &h;
		n->tx_iov[cnt++].iov_len = sizeof(h);
	}
	for (unsigned i = 0; i < e->out_num; i++) {
		size_t len = e->iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		if (cnt == NET_MAX_IOV) {
			cnt = 0;   /* too scattered for writev: bounce through tx_buf */
			break;
		}
		n->tx_iov[cnt].iov_base = (uint8_t *)e->iov[i].iov_base + skip;
		n->tx_iov[cnt++].iov_len = len - skip;
		skip = 0;
	}
	if (cnt) {
		rc = net_backend_send(n->be, n->tx_iov, (int)cnt);
		if (rc == -EAGAIN)
			vnet_tx_defer(n, e, &h);
	} else {
		vnet_tx_defer(n, e, &h);
		rc = vnet_tx_send_buf(n, n->tx_pending_len);
		n->tx_pending = rc == -EAGAIN;
	}
	if (rc == -EAGAIN)
		return -EAGAIN;
	if (rc < 0)
		vnet_tx_drop(n, strerror((int)-rc), frame_len);
	else
		vnet_tx_sent(n, frame_len);
	return 0;
}

/* Retry the frame that waited for the backend. true when it is gone (sent or dropped). */
static bool vnet_tx_flush_pending(struct virtio_net *n)
{
	ssize_t rc;

	if (!n->tx_pending)
		return true;
	rc = vnet_tx_send_buf(n, n->tx_pending_len);
	if (rc == -EAGAIN)
		return false;
	n->tx_pending = false;
	if (rc < 0)
		vnet_tx_drop(n, strerror((int)-rc), n->tx_pending_len - NET_VNET_HDR_LEN);
	else
		vnet_tx_sent(n, n->tx_pending_len - NET_VNET_HDR_LEN);
	return true;
}

/* Caller holds n->lock. */
static void vnet_tx(struct virtio_net *n)
{
	struct virtq *vq = &n->vdev.queues[NET_TX_QUEUE];
	unsigned done = 0;
	bool pushed = false;

	n->tx_more = false;
	if (!vnet_running(n) || !vnet_tx_flush_pending(n))
		return;
	vq_disable_kicks(vq);
	for (;;) {
		while (done < NET_TX_BUDGET) {
			int rc = vq_pop(vq, &n->elem);

			if (rc == -ENOENT)
				break;
			if (rc < 0) {
				vnet_fail(n, "transmit queue: %s", vq->error ? vq->error : "broken");
				goto out;
			}
			done++;
			rc = vnet_tx_one(n, &n->elem);
			if (rc == -EPROTO)
				goto out;
			vq_push(vq, n->elem.head, 0);
			pushed = true;
			if (rc == -EAGAIN)
				goto out;   /* the backend fd's EPOLLOUT resumes us */
		}
		if (done == NET_TX_BUDGET) {
			n->tx_more = true;
			break;
		}
		if (!vq_enable_kicks(vq))
			break;
	}
out:
	if (pushed)
		n->notify |= 1u << NET_TX_QUEUE;
}

/* ---- receive ---- */

/* Guest address of byte `off` of the chain's device-writable part. */
static bool vnet_in_gpa(const struct vq_elem *e, size_t off, uint64_t *gpa)
{
	for (unsigned i = e->out_num; i < e->out_num + e->in_num; i++) {
		if (off < e->iov[i].iov_len) {
			*gpa = e->gpa[i] + off;
			return true;
		}
		off -= e->iov[i].iov_len;
	}
	return false;
}

/* Fix up the header the backend gave us (or make one). false: the guest cannot take this frame. */
static bool vnet_rx_hdr(struct virtio_net *n, struct virtio_net_hdr *h)
{
	uint8_t gso = h->gso_type;

	if (!n->be->vnet_hdr) {
		memset(h, 0, sizeof(*h));
	} else if (!vnet_has(n, VIRTIO_NET_F_GUEST_CSUM)) {
		/* 5.1.6.4.1: flags must be 0, and the packet is fully checksummed. */
		if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM || gso != VIRTIO_NET_HDR_GSO_NONE)
			return false;
		memset(h, 0, sizeof(*h));
	} else {
		if (gso == VIRTIO_NET_HDR_GSO_TCPV4 && !vnet_has(n, VIRTIO_NET_F_GUEST_TSO4))
			return false;
		if (gso == VIRTIO_NET_HDR_GSO_TCPV6 && !vnet_has(n, VIRTIO_NET_F_GUEST_TSO6))
			return false;
		if (gso != VIRTIO_NET_HDR_GSO_NONE && gso != VIRTIO_NET_HDR_GSO_TCPV4 &&
		    gso != VIRTIO_NET_HDR_GSO_TCPV6)
			return false;
		h->flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
	}
	h->num_buffers = htole16(1);
	return true;
}

static void vnet_rx_drop(struct virtio_net *n, const char *why)
{
	vnet_count(&n->stats.rx_dropped, 1);
	log_guest(&n->rl, NET_TAG, "dropping a received %zu-byte frame: %s",
		  n->rx_len - NET_VNET_HDR_LEN, why);
}

/*
 * Read the next frame into rx_buf. 1: got one, 2: read one but dropped it,
 * 0: none waiting, -1: hard backend error.
 */
static int vnet_rx_read(struct virtio_net *n)
{
	size_t hdr = n->be->vnet_hdr ? 0 : NET_VNET_HDR_LEN;
	ssize_t rc;

	rc = net_backend_recv(n->be, n->rx_buf + hdr, NET_BUF_LEN - hdr);
	if (rc == -EAGAIN || rc == -EINTR)
		return 0;
	if (rc < 0) {
		vnet_count(&n->stats.rx_errors, 1);
		vnet_count(&n->vdev.metrics.errors, 1);
		if (rc == -EMSGSIZE || rc == -ENOBUFS)
			return 2;
		log_err(NET_TAG, "%s backend: receive failed: %s; no longer receiving",
			n->be->kind, strerror((int)-rc));
		return -1;
	}
	n->rx_len = hdr + (size_t)rc;
	if (n->rx_len < NET_VNET_HDR_LEN + NET_ETH_HLEN) {
		vnet_count(&n->stats.rx_errors, 1);
		vnet_count(&n->vdev.metrics.errors, 1);
		return 2;
	}
	if (!vnet_rx_hdr(n, (struct virtio_net_hdr *)(void *)n->rx_buf)) {
		vnet_rx_drop(n, "offload the guest did not negotiate");
		return 2;
	}
	/* 5.1.4.2: with VIRTIO_NET_F_MTU nothing unsegmented beyond mtu + L2 header (VLAN tag allowed). */
	if (vnet_has(n, VIRTIO_NET_F_MTU) && n->rx_buf[1] == VIRTIO_NET_HDR_GSO_NONE &&
	    n->rx_len - NET_VNET_HDR_LEN > (size_t)n->mtu + NET_ETH_HLEN + 4) {
		vnet_rx_drop(n, "larger than the MTU");
		return 2;
	}
	n->rx_off = 0;
	n->rx_nheld = 0;
	n->rx_pending = true;
	return 1;
}

static void vnet_rx_done(struct virtio_net *n)
{
	size_t frame_len = n->rx_len - NET_VNET_HDR_LEN;

	n->rx_pending = false;
	vnet_count(&n->stats.rx_packets, 1);
	vnet_count(&n->stats.rx_bytes, frame_len);
	vnet_count(&n->vdev.metrics.rx_packets, 1);
	vnet_count(&n->vdev.metrics.rx_bytes, frame_len);
}

/* Give back every held chain empty: the frame cannot be delivered. */
static void vnet_rx_abandon(struct virtio_net *n, struct virtq *vq, const char *why)
{
	for (unsigned i = 0; i < n->rx_nheld; i++)
		vq_push(vq, n->rx_head[i], 0);
	n->rx_nheld = 0;
	n->rx_pending = false;
	vnet_rx_drop(n, why);
}

/*
 * Move the pending frame into receive chains. 1: the frame is done (delivered
 * or dropped, chains pushed), 0: out of chains (frame kept), -1: violation.
 */
static int vnet_rx_deliver(struct virtio_net *n, struct virtq *vq)
{
	struct vq_elem *e = &n->elem;

	while (n->rx_off < n->rx_len) {
		size_t chunk;
		int rc;

		if (n->rx_nheld == vq->size) {
			/* Every buffer the ring can hold is ours and the frame still does not fit. */
			vnet_rx_abandon(n, vq, "receive buffers too small for it");
			return 1;
		}
		rc = vq_pop(vq, e);
		if (rc == -ENOENT)
			return 0;
		if (rc < 0) {
			vnet_fail(n, "receive queue: %s", vq->error ? vq->error : "broken");
			return -1;
		}
		if (e->out_num) {
			vnet_fail(n, "receive chain %u has a device-readable buffer", e->head);
			return -1;
		}
		if (!n->mrg_rxbuf) {
			if (e->in_len < n->rx_len) {
				vq_push(vq, e->head, 0);
				n->rx_pending = false;
				vnet_rx_drop(n, "receive buffer too small for it");
				return 1;
			}
			vq_copy_to_in(e, 0, n->rx_buf, n->rx_len);
			vq_push(vq, e->head, (uint32_t)n->rx_len);
			vnet_rx_done(n);
			return 1;
		}
		if (e->in_len < NET_VNET_HDR_LEN) {
			/* 5.1.6.3.1: with MRG_RXBUF every buffer holds at least the header. */
			vnet_fail(n, "mergeable receive buffer %u is smaller than the header", e->head);
			return -1;
		}
		chunk = n->rx_len - n->rx_off;
		if (chunk > e->in_len)
			chunk = e->in_len;
		if (n->rx_nheld == 0) {
			if (!vnet_in_gpa(e, 10, &n->rx_nbuf_gpa[0]) || !vnet_in_gpa(e, 11, &n->rx_nbuf_gpa[1])) {
				vnet_fail(n, "receive chain %u: header bytes not addressable", e->head);
				return -1;
			}
		}
		vq_copy_to_in(e, 0, n->rx_buf + n->rx_off, chunk);
		n->rx_head[n->rx_nheld] = e->head;
		n->rx_written[n->rx_nheld] = (uint32_t)chunk;
		n->rx_nheld++;
		n->rx_off += chunk;
	}

	/* Complete: num_buffers, then publish all chains at once. */
	if (n->rx_nheld > 1) {
		uint8_t nb[2];

		st16le(nb, (uint16_t)n->rx_nheld);
		if (gm_write(n->vdev.gm, n->rx_nbuf_gpa[0], &nb[0], 1) ||
		    gm_write(n->vdev.gm, n->rx_nbuf_gpa[1], &nb[1], 1)) {
			vnet_rx_abandon(n, vq, "header not writable");
			return 1;
		}
	}
	for (unsigned i = 0; i < n->rx_nheld; i++)
		vq_push(vq, n->rx_head[i], n->rx_written[i]);
	n->rx_nheld = 0;
	vnet_rx_done(n);
	return 1;
}

/* Caller holds n->lock. */
static void vnet_rx(struct virtio_net *n)
{
	struct virtq *vq = &n->vdev.queues[NET_RX_QUEUE];
	uint16_t used_before = vq->used_idx;
	unsigned frames = 0;

	if (!vnet_running(n))
		return;
	while (frames < NET_RX_BUDGET) {
		int rc;

		if (!n->rx_pending) {
			if (n->rx_dead)
				break;
			/* Leave frames in the backend until the guest has somewhere to put them. */
			if (!vq_has_work(vq)) {
				if (vq->broken) {
					vnet_fail(n, "receive queue: %s", vq->error ? vq->error : "broken");
					break;
				}
				if (vq_enable_kicks(vq))
					continue;
				n->rx_blocked = true;
				break;
			}
			rc = vnet_rx_read(n);
			if (rc < 0)
				n->rx_dead = true;
			if (rc <= 0)
				break;
			if (rc == 2) {
				frames++;
				continue;
			}
		}
		rc = vnet_rx_deliver(n, vq);
		if (rc < 0)
			break;
		if (rc == 0) {
			if (vq_enable_kicks(vq))
				continue;
			n->rx_blocked = true;
			break;
		}
		frames++;
	}
	if (!n->rx_blocked)
		vq_disable_kicks(vq);
	if (vq->used_idx != used_before)
		n->notify |= 1u << NET_RX_QUEUE;
}

/* ---- I/O thread plumbing ---- */

static bool vnet_on_io_thread(struct virtio_net *n)
{
	return __atomic_load_n(&n->io_thread_known, __ATOMIC_ACQUIRE) &&
	       pthread_equal(n->io_thread, pthread_self());
}

static void vnet_mark_io_thread(struct virtio_net *n)
{
	if (__atomic_load_n(&n->io_thread_known, __ATOMIC_ACQUIRE))
		return;
	n->io_thread = pthread_self();
	__atomic_store_n(&n->io_thread_known, true, __ATOMIC_RELEASE);
}

/* Ask the I/O thread to do `work`; callable from any thread. */
static void vnet_schedule(struct virtio_net *n, uint32_t work)
{
	struct loop *l;

	__atomic_or_fetch(&n->work, work, __ATOMIC_ACQ_REL);
	/* Not attached yet: the bits wait; vnet_attach() posts once. */
	l = __atomic_load_n(&n->loop, __ATOMIC_ACQUIRE);
	if (l)
		loop_work_post(l, &n->work_post);
}

/* I/O thread: poll the backend for what the device can use now. */
static void vnet_update_events(struct virtio_net *n)
{
	uint32_t ev = 0;

	if (!n->loop)
		return;
	vnet_lock(n);
	if (n->rx_dead && n->be_registered) {
		/* A dead tap reports EPOLLERR for ever: stop polling it at all. */
		loop_del(n->loop, n->be->fd);
		n->be_registered = false;
	}
	if (vnet_running(n) && !n->rx_blocked && !n->rx_dead)
		ev |= EPOLLIN;
	if (vnet_running(n) && n->tx_pending)
		ev |= EPOLLOUT;
	if (n->be_registered && ev != n->be_events && loop_mod(n->loop, n->be->fd, ev) == 0)
		n->be_events = ev;
	if (n->tx_more)
		vnet_schedule(n, NET_WORK_TX);
	vnet_unlock(n);
}

static void vnet_do_work(struct virtio_net *n, uint32_t work)
{
	vnet_lock(n);
	if (work & NET_WORK_RX) {
		n->rx_blocked = false;
		vnet_rx(n);
	}
	if (work & NET_WORK_TX)
		vnet_tx(n);
	vnet_unlock(n);
}

static void vnet_work_cb(void *opaque)
{
	struct virtio_net *n = opaque;

	vnet_mark_io_thread(n);
	vnet_do_work(n, __atomic_exchange_n(&n->work, 0, __ATOMIC_ACQ_REL));
	vnet_update_events(n);
}

static void net_backend_cb(void *opaque, uint32_t events)
{
	struct virtio_net *n = opaque;

	vnet_mark_io_thread(n);
	vnet_lock(n);
	if (events & (EPOLLOUT | EPOLLERR))
		vnet_tx(n);
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		vnet_rx(n);
	vnet_unlock(n);
	vnet_update_events(n);
}

/* ---- virtio_dev_ops ---- */

static uint64_t vnet_features(struct virtio_dev *d)
{
	struct virtio_net *n = vnet_of(d);
	uint64_t f = VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS) |
		     VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF);

	if (n->mtu)
		f |= VIRTIO_BIT(VIRTIO_NET_F_MTU);
	/* Offloads only where the backend carries the header; slirp wants finished frames. */
	if (n->be->vnet_hdr)
		f |= VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |
		     VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6) |
		     VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6);
	return f;
}

/* 5.1.3.1: segmentation offloads depend on the matching checksum offload. */
static bool vnet_features_ok(struct virtio_dev *d, uint64_t f)
{
	bool csum = f & VIRTIO_BIT(VIRTIO_NET_F_CSUM);
	bool gcsum = f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM);

	if (!csum && (f & (VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6))))
		return false;
	if (!gcsum && (f & (VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6))))
		return false;
	return true;
}

static void vnet_config_read(struct virtio_dev *d, uint32_t off, void *buf, uint32_t len)
{
	struct virtio_net *n = vnet_of(d);
	struct virtio_net_config c;

	memcpy(c.mac, n->mac, sizeof(c.mac));
	c.status = htole16(VIRTIO_NET_S_LINK_UP);
	c.max_virtqueue_pairs = htole16(1);
	c.mtu = htole16(n->mtu);
	if (off > sizeof(c) || len > sizeof(c) - off)
		return;
	memcpy(buf, (const uint8_t *)&c + off, len);
}

static void vnet_config_write(struct virtio_dev *d, uint32_t off, const void *buf, uint32_t len)
{
	/* Every field is read-only for a Virtio 1.x driver (5.1.4.2). */
	log_guest(&d->rl, NET_TAG, "ignoring a %u-byte config write at %u", len, off);
}

static unsigned vnet_guest_offloads(const struct virtio_net *n)
{
	unsigned o = 0;

	if (vnet_has(n, VIRTIO_NET_F_GUEST_CSUM)) {
		o |= NET_OFFLOAD_CSUM;
		if (vnet_has(n, VIRTIO_NET_F_GUEST_TSO4))
			o |= NET_OFFLOAD_TSO4;
		if (vnet_has(n, VIRTIO_NET_F_GUEST_TSO6))
			o |= NET_OFFLOAD_TSO6;
	}
	return o;
}

static void vnet_clear_state(struct virtio_net *n)
{
	n->active = false;
	n->failed = false;
	n->fail_pending = false;
	n->notify = 0;
	n->rx_blocked = false;
	n->rx_pending = false;
	n->rx_nheld = 0;
	n->tx_pending = false;
	n->tx_more = false;
}

static int vnet_activate(struct virtio_dev *d)
{
	struct virtio_net *n = vnet_of(d);
	int rc;

	vnet_lock(n);
	vnet_clear_state(n);
	n->features = d->driver_features;
	n->mrg_rxbuf = vnet_has(n, VIRTIO_NET_F_MRG_RXBUF);
	rc = net_backend_set_offload(n->be, vnet_guest_offloads(n));
	if (rc < 0) {
		log_err(NET_TAG, "%s backend: cannot set offloads: %s", n->be->kind, strerror(-rc));
	} else {
		n->active = true;
	}
	pthread_mutex_unlock(&n->lock);
	if (rc == 0 && n->loop)
		vnet_schedule(n, NET_WORK_RX | NET_WORK_TX | NET_WORK_EVENTS);
	return rc;
}

static void vnet_reset(struct virtio_dev *d)
{
	struct virtio_net *n = vnet_of(d);

	vnet_lock(n);
	vnet_clear_state(n);
	n->features = 0;
	n->mrg_rxbuf = false;
	/*
	 * Best effort: the device stays inactive until the driver activates it
	 * again, which sets the offloads it negotiates and checks that.
	 */
	KESTREL_IGNORE(net_backend_set_offload(n->be, 0));
	/* The chains held for a partial frame belong to rings that are being reset. */
	pthread_mutex_unlock(&n->lock);
	if (n->loop)
		vnet_schedule(n, NET_WORK_EVENTS);
}

static void vnet_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_net *n = vnet_of(d);

	if (q != NET_RX_QUEUE && q != NET_TX_QUEUE) {
		log_guest(&d->rl, NET_TAG, "notify of queue %u, which does not exist", q);
		return;
	}
	if (n->loop && !vnet_on_io_thread(n)) {
		vnet_schedule(n, 1u << q);
		return;
	}
	vnet_do_work(n, 1u << q);
	vnet_update_events(n);
}

/*
 * Pause (I/O thread stopped). Transmit never holds a chain: a frame the
 * backend could not take is already a copy in tx_buf, its chain completed.
 * Receive may hold chains for a frame only partly copied into them: those
 * are given back (vq_unpop) rather than published with a partial frame, and
 * the frame, a copy in rx_buf, is delivered again from its start into the
 * same chains once the I/O thread runs. What they got so far is in buffers
 * the guest does not read until they are used.
 */
static void vnet_quiesce(struct virtio_dev *d)
{
	struct virtio_net *n = vnet_of(d);

	vnet_lock(n);
	if (n->rx_nheld) {
		vq_unpop(&n->vdev.queues[NET_RX_QUEUE], (uint16_t)n->rx_nheld);
		n->rx_nheld = 0;
		n->rx_off = 0;
		/* No kick will come for chains the driver already offered: look again after the pause. */
		n->rx_blocked = false;
		vnet_schedule(n, NET_WORK_RX | NET_WORK_EVENTS);
	}
	vnet_unlock(n);
}

/* A frame copy in the snapshot: [virtio_net_hdr][frame], its length first. */
static void vnet_save_frame(struct snap_writer *w, bool pending, const uint8_t *buf, size_t len)
{
	snap_put_bool(w, pending);
	if (!pending)
		return;
	snap_put_u32(w, (uint32_t)len);
	snap_put(w, buf, len);
}

static void vnet_save(struct virtio_dev *d, struct snap_writer *w)
{
	struct virtio_net *n = vnet_of(d);

	vnet_lock(n);
	snap_put_u32(w, NET_SNAP_VERSION);
	snap_put(w, n->mac, sizeof(n->mac));
	snap_put_u16(w, n->mtu);
	vnet_save_frame(w, n->tx_pending, n->tx_buf, n->tx_pending_len);
	/* After a pause no receive chain is held (vnet_quiesce); a frame is then always whole. */
	vnet_save_frame(w, n->rx_pending && n->rx_nheld == 0, n->rx_buf, n->rx_len);
	pthread_mutex_unlock(&n->lock);
}

/* Read (or, checking, step over) a saved frame of min..NET_BUF_LEN bytes into buf. */
static int vnet_load_frame(struct snap_sec *s, bool apply, uint8_t *buf, size_t min, bool *pending, size_t *len)
{
	uint32_t l;

	*pending = snap_get_bool(s);
	*len = 0;
	if (!*pending)
		return s->err ? -EINVAL : 0;
	l = snap_get_u32(s);
	if (s->err || l < min || l > NET_BUF_LEN || l > s->len - s->off)
		return -EINVAL;
	if (!apply) {
		s->off += l;
		return 0;
	}
	if (snap_get(s, buf, l) < 0)
		return -EINVAL;
	*len = l;
	return 0;
}

static int vnet_load(struct virtio_dev *d, struct snap_sec *s, bool apply, char *err, size_t errlen)
{
	struct virtio_net *n = vnet_of(d);
	uint8_t mac[6];
	uint32_t version;
	uint16_t mtu;
	bool txp, rxp;
	size_t txl, rxl;
	int rc;

	version = snap_get_u32(s);
	snap_get(s, mac, sizeof(mac));
	mtu = snap_get_u16(s);
	if (s->err) {
		snprintf(err, errlen, "virtio-net: state is truncated");
		goto bad;
	}
	if (version != NET_SNAP_VERSION) {
		snprintf(err, errlen, "virtio-net: state has layout version %u, this kestrel reads %u", version,
			 NET_SNAP_VERSION);
		goto bad;
	}
	if (memcmp(mac, n->mac, sizeof(mac)) || mtu != n->mtu) {
		snprintf(err, errlen, "virtio-net: snapshot has MAC %02x:%02x:%02x:%02x:%02x:%02x and MTU %u, "
			 "this NIC %02x:%02x:%02x:%02x:%02x:%02x and %u", mac[0], mac[1], mac[2], mac[3], mac[4],
			 mac[5], mtu, n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5], n->mtu);
		goto bad;
	}
	if (apply)
		vnet_lock(n);
	rc = vnet_load_frame(s, apply, n->tx_buf, NET_VNET_HDR_LEN, &txp, &txl);
	if (rc == 0)
		rc = vnet_load_frame(s, apply, n->rx_buf, NET_VNET_HDR_LEN + NET_ETH_HLEN, &rxp, &rxl);
	if (apply) {
		if (rc == 0) {
			/* Only whole frames were saved; a checked state cannot fail here. */
			n->tx_pending = txp;
			n->tx_pending_len = txl;
			n->rx_pending = rxp;
			n->rx_len = rxl;
			n->rx_off = 0;
			n->rx_nheld = 0;
		}
		pthread_mutex_unlock(&n->lock);
	}
	if (rc == 0)
		return 0;
	snprintf(err, errlen, "virtio-net: a saved frame is truncated or has a bad length");
bad:
	snap_sec_fail(s);
	return -EINVAL;
}

/*
 * Restore with DRIVER_OK (d->lock held, like activate): the negotiated
 * features and the backend's offloads as activate sets them, but frames
 * restored by vnet_load stay; every kind of work is scheduled once, since
 * no kick will come for what the guest offered before the snapshot.
 */
static int vnet_restore(struct virtio_dev *d)
{
	struct virtio_net *n = vnet_of(d);
	int rc;

	vnet_lock(n);
	n->failed = false;
	n->fail_pending = false;
	n->notify = 0;
	n->rx_blocked = false;
	n->tx_more = false;
	n->features = d->driver_features;
	n->mrg_rxbuf = vnet_has(n, VIRTIO_NET_F_MRG_RXBUF);
	rc = net_backend_set_offload(n->be, vnet_guest_offloads(n));
	if (rc < 0)
		log_err(NET_TAG, "%s backend: cannot set offloads: %s", n->be->kind, strerror(-rc));
	else
		n->active = true;
	pthread_mutex_unlock(&n->lock);
	if (rc == 0 && n->loop)
		vnet_schedule(n, NET_WORK_RX | NET_WORK_TX | NET_WORK_EVENTS);
	return rc;
}

static const struct virtio_dev_ops vnet_ops = {
	.features = vnet_features,
	.config_read = vnet_config_read,
	.config_write = vnet_config_write,
	.features_ok = vnet_features_ok,
	.activate = vnet_activate,
	.reset = vnet_reset,
	.queue_notify = vnet_queue_notify,
	.quiesce = vnet_quiesce,
	.save = vnet_save,
	.load = vnet_load,
	.restore = vnet_restore,
};

/* ---- public API ---- */

struct virtio_dev *vnet_virtio(struct virtio_net *n)
{
	return &n->vdev;
}

void vnet_poll(struct virtio_net *n)
{
	vnet_lock(n);
	if (n->tx_pending || n->tx_more)
		vnet_tx(n);
	vnet_rx(n);
	vnet_unlock(n);
}

void vnet_get_stats(struct virtio_net *n, struct vnet_stats *st)
{
	vnet_lock(n);
	*st = n->stats;
	st->backend_dropped = __atomic_load_n(&n->be->dropped, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&n->lock);
}

int vnet_attach(struct virtio_net *n, struct loop *l)
{
	int rc;

	if (n->loop)
		return -EBUSY;
	/* Registered idle; vnet_update_events() turns on what the device state allows. */
	rc = loop_add(l, n->be->fd, 0, net_backend_cb, n);
	if (rc < 0)
		return rc;
	rc = net_backend_attach(n->be, l);
	if (rc < 0)
		goto err_be;
	n->be_events = 0;
	n->be_registered = true;
	__atomic_store_n(&n->loop, l, __ATOMIC_RELEASE);
	/* Already activated (attach after DRIVER_OK): start polling on the first round. */
	vnet_schedule(n, NET_WORK_EVENTS);
	return 0;

err_be:
	loop_del(l, n->be->fd);
	return rc;
}

void vnet_detach(struct virtio_net *n)
{
	struct loop *l = n->loop;

	if (!l)
		return;
	__atomic_store_n(&n->loop, NULL, __ATOMIC_RELEASE);
	loop_work_cancel(l, &n->work_post);
	net_backend_detach(n->be, l);
	if (n->be_registered)
		loop_del(l, n->be->fd);
	n->be_registered = false;
	__atomic_store_n(&n->io_thread_known, false, __ATOMIC_RELEASE);
}

static int vnet_open_backend(struct virtio_net *n, const struct vnet_config *cfg, char *err, size_t errlen)
{
	if (cfg->custom) {
		n->be = cfg->custom;
		return 0;
	}
	struct net_backend_spec spec = {
		.kind = cfg->backend, .ifname = cfg->ifname,
		.hostfwd = cfg->hostfwd, .nr_hostfwd = cfg->nr_hostfwd,
	};

	return net_backend_open(&n->be, &spec, err, errlen);
}

int vnet_new(struct virtio_net **out, const struct vnet_config *cfg, const struct guest_mem *gm,
	    char *err, size_t errlen)
{
	uint16_t qsize = cfg->queue_size ? cfg->queue_size : NET_DEFAULT_QUEUE_SIZE;
	struct virtio_net *n;
	int rc;

	*out = NULL;
	if (qsize > VQ_MAX_SIZE || (qsize & (qsize - 1)) || cfg->nr_hostfwd > NET_MAX_HOSTFWD ||
	    (cfg->mtu && cfg->mtu < 68)) {
		snprintf(err, errlen, "virtio-net: bad configuration (queue size %u, mtu %u)",
			 qsize, cfg->mtu);
		net_backend_free(cfg->custom);
		return -EINVAL;
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		net_backend_free(cfg->custom);
		snprintf(err, errlen, "virtio-net: out of memory");
		return -ENOMEM;
	}
	loop_work_init(&n->work_post, vnet_work_cb, n);
	n->rx_buf = malloc(NET_BUF_LEN);
	n->tx_buf = malloc(NET_BUF_LEN);
	if (!n->rx_buf || !n->tx_buf) {
		rc = -ENOMEM;
		snprintf(err, errlen, "virtio-net: out of memory");
		net_backend_free(cfg->custom);
		goto err_free;
	}
	rc = vnet_open_backend(n, cfg, err, errlen);
	if (rc < 0)
		goto err_free;
	memcpy(n->mac, cfg->mac, sizeof(n->mac));
	n->mtu = cfg->mtu;
	n->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	pthread_mutex_init(&n->lock, NULL);
	virtio_dev_init(&n->vdev, "virtio-net", VIRTIO_ID_NET, &vnet_ops, n, 2, qsize,
			sizeof(struct virtio_net_config), gm);
	*out = n;
	return 0;

err_free:
	free(n->rx_buf);
	free(n->tx_buf);
	free(n);
	return rc;
}

void vnet_free(struct virtio_net *n)
{
	if (!n)
		return;
	vnet_detach(n);
	net_backend_free(n->be);
	pthread_mutex_destroy(&n->lock);
	pthread_mutex_destroy(&n->vdev.lock);
	free(n->rx_buf);
	free(n->tx_buf);
	free(n);
}

/* ---- --net parsing ---- */

void vnet_default_mac(const char *seed, unsigned index, uint8_t mac[6])
{
	uint32_t h = 2166136261u;   /* FNV-1a */

	for (const char *p = seed; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	for (unsigned i = 0; i < 4; i++)
		h = (h ^ (uint8_t)(index >> (8 * i))) * 16777619u;
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

static int vnet_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int vnet_parse_mac(const char *s, size_t len, uint8_t mac[6])
{
	if (len != 17)
		return -EINVAL;
	for (unsigned i = 0; i < 6; i++) {
		int hi = vnet_hex(s[3 * i]), lo = vnet_hex(s[3 * i + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
			return -EINVAL;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	/* A NIC's own address is unicast and not all zeros. */
	if ((mac[0] & 1) || !(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]))
		return -EINVAL;
	return 0;
}

static int vnet_parse_u16(const char *s, size_t len, unsigned min, unsigned max, uint16_t *v)
{
	unsigned x = 0;

	if (len == 0 || len > 5)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		x = x * 10 + (unsigned)(s[i] - '0');
	}
	if (x < min || x > max)
		return -EINVAL;
	*v = (uint16_t)x;
	return 0;
}

/* One "key=value" option after the backend part. */
static int vnet_parse_opt(struct vnet_config *cfg, const char *opt, size_t len, bool *mac_given,
			 char *err, size_t errlen)
{
	const char *eq = memchr(opt, '=', len);
	size_t klen = eq ? (size_t)(eq - opt) : len;
	const char *val = eq ? eq + 1 : opt + len;
	size_t vlen = len - klen - (eq ? 1 : 0);
	char q[64];

	if (klen == 3 && !memcmp(opt, "mac", 3) && eq) {
		if (vnet_parse_mac(val, vlen, cfg->mac)) {
			snprintf(err, errlen, "--net: bad mac '%s' (want a unicast xx:xx:xx:xx:xx:xx)",
				 net_printable(q, sizeof(q), val, vlen));
			return -EINVAL;
		}
		*mac_given = true;
		return 0;
	}
	if (klen == 3 && !memcmp(opt, "mtu", 3) && eq) {
		if (vnet_parse_u16(val, vlen, 68, 65535, &cfg->mtu)) {
			snprintf(err, errlen, "--net: bad mtu '%s' (68-65535)", net_printable(q, sizeof(q), val, vlen));
			return -EINVAL;
		}
		return 0;
	}
	if (klen == 7 && !memcmp(opt, "hostfwd", 7) && eq && cfg->backend == NET_BACKEND_USER) {
		char fwd[96];

		if (cfg->nr_hostfwd == NET_MAX_HOSTFWD) {
			snprintf(err, errlen, "--net: at most %d hostfwd= options", NET_MAX_HOSTFWD);
			return -EINVAL;
		}
		if (vlen >= sizeof(fwd)) {
			snprintf(err, errlen, "--net: hostfwd value too long");
			return -EINVAL;
		}
		memcpy(fwd, val, vlen);
		fwd[vlen] = '\0';
		return net_hostfwd_parse(fwd, &cfg->hostfwd[cfg->nr_hostfwd++], err, errlen);
	}
	snprintf(err, errlen, "--net: unknown option '%s' for %s (expected mac=, mtu=%s)",
		 net_printable(q, sizeof(q), opt, len),
		 cfg->backend == NET_BACKEND_TAP ? "tap" : "user",
		 cfg->backend == NET_BACKEND_USER ? ", hostfwd=" : "");
	return -EINVAL;
}

int vnet_parse_spec(const char *spec, struct vnet_config *cfg, char *err, size_t errlen)
{
	const char *p, *comma = strchr(spec, ',');
	size_t first = comma ? (size_t)(comma - spec) : strlen(spec);
	bool mac_given = false;
	char seed[IFNAMSIZ + 8], q[64];

	memset(cfg, 0, sizeof(*cfg));
	if (first == 4 && !memcmp(spec, "user", 4)) {
		cfg->backend = NET_BACKEND_USER;
	} else if (first > 4 && !memcmp(spec, "tap=", 4)) {
		size_t nlen = first - 4;

		if (!net_ifname_ok(spec + 4, nlen)) {
			snprintf(err, errlen, "--net: tap interface name '%s' must be 1-%d printable characters "
				 "without '/', ':' or spaces", net_printable(q, sizeof(q), spec + 4, nlen), IFNAMSIZ - 1);
			return -EINVAL;
		}
		cfg->backend = NET_BACKEND_TAP;
		memcpy(cfg->ifname, spec + 4, nlen);
	} else {
		snprintf(err, errlen, "--net: '%s': expected tap=NAME or user", net_printable(q, sizeof(q), spec, first));
		return -EINVAL;
	}

	for (p = comma; p; p = comma) {
		size_t len;
		int rc;

		p++;
		comma = strchr(p, ',');
		len = comma ? (size_t)(comma - p) : strlen(p);
		rc = vnet_parse_opt(cfg, p, len, &mac_given, err, errlen);
		if (rc < 0)
			return rc;
	}
	if (!mac_given) {
		snprintf(seed, sizeof(seed), "%.*s", (int)first, spec);
		vnet_default_mac(seed, 0, cfg->mac);
	}
	return 0;
}

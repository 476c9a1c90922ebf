/*
 * virtio-net device model: driver-side rings over fake guest memory, the
 * real virtio core and queue, and an in-memory backend that records what the
 * device sends and hands out frames queued by the test.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/net.h"
#include "loop/loop.h"
#include "vring_driver.h"
#include "fakes.h"

/* ---- fake backend (fakes.c) ---- */

/* Queue a frame for the guest: `hdr` (12 bytes, vnet backends only) + `len` bytes of pattern. */
static void fb_queue(struct fake_be *f, const struct virtio_net_hdr *hdr, const uint8_t *frame, size_t len)
{
	size_t h = f->be.vnet_hdr ? NET_VNET_HDR_LEN : 0;
	uint8_t *p = calloc(1, h + len);

	assert_non_null(p);
	if (h && hdr)
		memcpy(p, hdr, h);
	memcpy(p + h, frame, len);
	fb_push(f, p, h + len);
	free(p);
}

/* ---- fixture: device + two driver queues sharing one fake RAM ---- */

#define FX_RAM (8ull << 20)

struct fx {
	struct vrd rx, tx;            /* rx owns the RAM; tx is a view into its upper half */
	struct fake_be *fb;
	struct virtio_net *n;
	struct virtio_dev *d;
	unsigned notified[2], config_irqs;
};

/*
 * Real transports take their own lock here, and hold it while they call the
 * device's reset: the device must never interrupt with its lock held. Taking
 * that lock (vnet_get_stats) from here would hang the test if it did.
 */
static void fx_notify_queue(struct virtio_dev *d, unsigned q)
{
	struct fx *x = d->transport;
	struct vnet_stats st;

	assert_true(q < 2);
	vnet_get_stats(x->n, &st);
	x->notified[q]++;
}

static void fx_notify_config(struct virtio_dev *d)
{
	struct fx *x = d->transport;
	struct vnet_stats st;

	vnet_get_stats(x->n, &st);
	x->config_irqs++;
}

static const struct virtio_transport_ops fx_tops = {
	.notify_queue = fx_notify_queue,
	.notify_config = fx_notify_config,
};

static void fx_program_queue(struct virtio_dev *d, unsigned q, const struct vrd *r)
{
	struct virtq *vq = &d->queues[q];

	vq->size = r->size;
	vq->desc_gpa = r->desc_gpa;
	vq->avail_gpa = r->avail_gpa;
	vq->used_gpa = r->used_gpa;
	vq->enabled = true;
}

/* The tx view: its own rings and data area in the upper half of rx's RAM. */
static void fx_split_ram(struct fx *x, uint16_t size)
{
	uint64_t half = FX_RAM / 2;

	x->tx = x->rx;
	x->rx.ram_size = half;        /* rx's bump allocator stays in the lower half */
	x->tx.desc_gpa = x->rx.ram_gpa + half;
	x->tx.avail_gpa = x->tx.desc_gpa + 16ull * size;
	x->tx.used_gpa = (x->tx.avail_gpa + 6ull + 2ull * size + 3) & ~3ull;
	x->tx.data_start = (x->tx.used_gpa + 6ull + 8ull * size + 15) & ~15ull;
	x->tx.data_next = x->tx.data_start;
}

static uint8_t fx_set_status(struct fx *x, uint8_t s)
{
	virtio_set_status(x->d, s);
	return x->d->status;
}

/* Create with this MTU (0: none), negotiate `features` (+VERSION_1), DRIVER_OK. */
static struct fx *fx_new_user_or_mtu(bool user, bool vnet_hdr, uint64_t features, uint16_t qsize,
				     uint16_t mtu)
{
	struct fx *x = calloc(1, sizeof(*x));
	struct vnet_config cfg = { .mac = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 }, .queue_size = qsize, .mtu = mtu };
	char err[256] = "";
	uint8_t s;

	assert_non_null(x);
	assert_int_equal(vrd_init_ram(&x->rx, qsize, FX_RAM), 0);
	fx_split_ram(x, qsize);
	if (user) {
		cfg.backend = NET_BACKEND_USER;   /* the real libslirp backend */
	} else {
		x->fb = fb_new(vnet_hdr);
		cfg.custom = &x->fb->be;
	}
	assert_int_equal(vnet_new(&x->n, &cfg, &x->rx.gm, err, sizeof(err)), 0);
	x->d = vnet_virtio(x->n);
	x->d->tops = &fx_tops;
	x->d->transport = x;
	fx_program_queue(x->d, NET_RX_QUEUE, &x->rx);
	fx_program_queue(x->d, NET_TX_QUEUE, &x->tx);

	features |= VIRTIO_BIT(VIRTIO_F_VERSION_1);
	virtio_set_driver_features(x->d, 0, (uint32_t)features);
	virtio_set_driver_features(x->d, 1, (uint32_t)(features >> 32));
	fx_set_status(x, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	s = fx_set_status(x, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	assert_true(s & VIRTIO_STATUS_FEATURES_OK);
	s = fx_set_status(x, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			  VIRTIO_STATUS_DRIVER_OK);
	assert_true(s & VIRTIO_STATUS_DRIVER_OK);
	return x;
}

static struct fx *fx_new_mtu(bool vnet_hdr, uint64_t features, uint16_t qsize, uint16_t mtu)
{
	return fx_new_user_or_mtu(false, vnet_hdr, features, qsize, mtu);
}

static struct fx *fx_new(bool vnet_hdr, uint64_t features, uint16_t qsize)
{
	return fx_new_user_or_mtu(false, vnet_hdr, features, qsize, 0);
}

static void fx_free(struct fx *x)
{
	vnet_free(x->n);
	vrd_exit(&x->rx);
	free(x);
}

static struct vnet_stats fx_stats(struct fx *x)
{
	struct vnet_stats st;

	vnet_get_stats(x->n, &st);
	return st;
}

static void fx_kick(struct fx *x, unsigned q)
{
	x->d->ops->queue_notify(x->d, q);
}

static bool fx_failed(struct fx *x)
{
	return x->d->status & VIRTIO_STATUS_NEEDS_RESET;
}

static void pattern(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 31u + i * 7u + (i >> 8));
}

/* A transmit chain: header + frame split at the given cut points into readable buffers. */
static uint16_t fx_tx_chain(struct fx *x, const struct virtio_net_hdr *h, const uint8_t *frame, size_t len,
			    const size_t *cuts, unsigned ncuts)
{
	size_t total = NET_VNET_HDR_LEN + len, prev = 0;
	uint8_t *all = malloc(total);
	struct vrd_buf b[16];
	unsigned nb = 0;
	uint16_t head;

	memcpy(all, h, NET_VNET_HDR_LEN);
	memcpy(all + NET_VNET_HDR_LEN, frame, len);
	for (unsigned i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : total;

		b[nb++] = vrd_buf_data(&x->tx, all + prev, (uint32_t)(end - prev), false);
		prev = end;
	}
	head = vrd_add_chain(&x->tx, b, nb);
	vrd_publish(&x->tx, head);
	free(all);
	return head;
}

/* A receive chain of one writable buffer of `len` bytes; returns its address via gpa. */
static uint16_t fx_rx_buf(struct fx *x, uint32_t len, uint64_t *gpa)
{
	struct vrd_buf b = vrd_buf_data(&x->rx, NULL, len, true);
	uint16_t head = vrd_add_chain(&x->rx, &b, 1);

	if (gpa)
		*gpa = b.gpa;
	vrd_publish(&x->rx, head);
	return head;
}

static const uint64_t offloads_all = VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |
	VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6) |
	VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6);

/* ---- config space and features ---- */

static void test_config_and_features(void **state)
{
	struct fx *x = fx_new(true, VIRTIO_BIT(VIRTIO_NET_F_MAC), 256);
	struct virtio_net_config c;
	uint64_t host = x->d->host_features;
	uint16_t v;
	uint8_t b;

	assert_int_equal(x->d->device_id, VIRTIO_ID_NET);
	assert_int_equal(x->d->config_size, sizeof(c));
	x->d->ops->config_read(x->d, 0, &c, sizeof(c));
	assert_memory_equal(c.mac, ((uint8_t[]){ 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 }), 6);
	assert_int_equal(le16toh(c.status), VIRTIO_NET_S_LINK_UP);
	assert_int_equal(le16toh(c.max_virtqueue_pairs), 1);
	/* Byte-wise and unaligned reads, as a transport does them. */
	x->d->ops->config_read(x->d, 5, &b, 1);
	assert_int_equal(b, 0x56);
	x->d->ops->config_read(x->d, 6, &v, 2);
	assert_int_equal(le16toh(v), VIRTIO_NET_S_LINK_UP);
	/* Writes change nothing. */
	x->d->ops->config_write(x->d, 0, "\x01\x02\x03\x04\x05\x06", 6);
	x->d->ops->config_read(x->d, 0, &c, 6);
	assert_int_equal(c.mac[0], 0x52);

	assert_true(host & VIRTIO_BIT(VIRTIO_NET_F_MAC));
	assert_true(host & VIRTIO_BIT(VIRTIO_NET_F_STATUS));
	assert_true(host & VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	assert_true((host & offloads_all) == offloads_all);
	assert_false(host & VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ));
	assert_false(host & VIRTIO_BIT(VIRTIO_NET_F_MTU));
	assert_false(host & VIRTIO_BIT(VIRTIO_NET_F_HOST_UFO));
	fx_free(x);

	/* Without a vnet header (slirp), no offloads are offered. */
	x = fx_new(false, 0, 256);
	host = x->d->host_features;
	assert_int_equal(host & offloads_all, 0);
	assert_true(host & VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	fx_free(x);
}

static void test_features_ok_dependencies(void **state)
{
	struct fx *x = fx_new(true, 0, 256);
	uint8_t s;

	/* HOST_TSO4 without CSUM is refused at FEATURES_OK (5.1.3.1). */
	fx_set_status(x, 0);
	virtio_set_driver_features(x->d, 0, VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4));
	virtio_set_driver_features(x->d, 1, 1);   /* VERSION_1 */
	fx_set_status(x, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	s = fx_set_status(x, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	assert_false(s & VIRTIO_STATUS_FEATURES_OK);

	fx_set_status(x, 0);
	virtio_set_driver_features(x->d, 0, VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6));
	virtio_set_driver_features(x->d, 1, 1);
	fx_set_status(x, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	s = fx_set_status(x, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	assert_false(s & VIRTIO_STATUS_FEATURES_OK);

	/* With their checksum features they are fine, and reach the backend as offloads. */
	fx_set_status(x, 0);
	fx_program_queue(x->d, NET_RX_QUEUE, &x->rx);
	fx_program_queue(x->d, NET_TX_QUEUE, &x->tx);
	virtio_set_driver_features(x->d, 0, (uint32_t)offloads_all);
	virtio_set_driver_features(x->d, 1, 1);
	fx_set_status(x, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	s = fx_set_status(x, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	assert_true(s & VIRTIO_STATUS_FEATURES_OK);
	s = fx_set_status(x, s | VIRTIO_STATUS_DRIVER_OK);
	assert_true(s & VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(x->fb->offloads, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6);
	/* Reset takes them away again. */
	fx_set_status(x, 0);
	assert_int_equal(x->fb->offloads, 0);
	fx_free(x);
}

/* ---- transmit ---- */

static void test_tx_multi_descriptor(void **state)
{
	struct fx *x = fx_new(true, 0, 256);
	struct virtio_net_hdr h = { 0 };
	uint8_t f1[1000], f2[60];
	size_t cuts1[] = { 5, 12, 40, 500 }, cuts2[] = { 12 };
	uint16_t h1, h2;
	uint32_t id, len;

	pattern(f1, sizeof(f1), 1);
	pattern(f2, sizeof(f2), 2);
	h.num_buffers = htole16(7);   /* unused on transmit: the backend sees 0 */
	/* Header split across two descriptors, frame across three more. */
	h1 = fx_tx_chain(x, &h, f1, sizeof(f1), cuts1, 4);
	h2 = fx_tx_chain(x, &h, f2, sizeof(f2), cuts2, 1);
	fx_kick(x, NET_TX_QUEUE);

	assert_int_equal(x->fb->out_count, 2);
	assert_int_equal(x->fb->out[0].len, NET_VNET_HDR_LEN + sizeof(f1));
	assert_memory_equal(x->fb->out[0].data, "\0\0\0\0\0\0\0\0\0\0\0\0", NET_VNET_HDR_LEN);
	assert_memory_equal(x->fb->out[0].data + NET_VNET_HDR_LEN, f1, sizeof(f1));
	assert_int_equal(x->fb->out[1].len, NET_VNET_HDR_LEN + sizeof(f2));
	assert_memory_equal(x->fb->out[1].data + NET_VNET_HDR_LEN, f2, sizeof(f2));

	assert_true(vrd_get_used(&x->tx, &id, &len));
	assert_int_equal(id, h1);
	assert_int_equal(len, 0);
	assert_true(vrd_get_used(&x->tx, &id, &len));
	assert_int_equal(id, h2);
	assert_false(vrd_get_used(&x->tx, &id, &len));
	/* One interrupt for the batch. */
	assert_int_equal(x->notified[NET_TX_QUEUE], 1);
	assert_int_equal(fx_stats(x).tx_packets, 2);
	assert_int_equal(fx_stats(x).tx_bytes, sizeof(f1) + sizeof(f2));
	assert_int_equal(x->d->metrics.tx_packets, 2);
	assert_false(fx_failed(x));
	fx_free(x);
}

static void test_tx_header_stripped_without_vnet(void **state)
{
	struct fx *x = fx_new(false, 0, 256);
	struct virtio_net_hdr h = { 0 };
	uint8_t f[100];
	size_t cuts[] = { 3, 30 };

	pattern(f, sizeof(f), 3);
	fx_tx_chain(x, &h, f, sizeof(f), cuts, 2);
	fx_kick(x, NET_TX_QUEUE);
	assert_int_equal(x->fb->out_count, 1);
	assert_int_equal(x->fb->out[0].len, sizeof(f));
	assert_memory_equal(x->fb->out[0].data, f, sizeof(f));

	/* A partial checksum was never negotiated (and cannot be, on this backend): dropped. */
	h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h.csum_start = htole16(34);
	h.csum_offset = htole16(16);
	fx_tx_chain(x, &h, f, sizeof(f), NULL, 0);
	fx_kick(x, NET_TX_QUEUE);
	assert_int_equal(x->fb->out_count, 1);
	assert_int_equal(fx_stats(x).tx_dropped, 1);
	assert_false(fx_failed(x));
	fx_free(x);
}

static void test_tx_offload_header_forwarded(void **state)
{
	struct fx *x = fx_new(true, offloads_all, 256);
	struct virtio_net_hdr h = {
		.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID,
		.gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
		.hdr_len = htole16(54),
		.gso_size = htole16(1448),
		.csum_start = htole16(34),
		.csum_offset = htole16(16),
		.num_buffers = htole16(3),
	};
	struct virtio_net_hdr want = h, got;
	static uint8_t f[20000];

	pattern(f, sizeof(f), 4);
	want.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;   /* DATA_VALID means nothing on transmit */
	want.num_buffers = 0;
	fx_tx_chain(x, &h, f, sizeof(f), NULL, 0);
	/* UDP segmentation (UFO) was not offered: that one is dropped. */
	h.gso_type = VIRTIO_NET_HDR_GSO_UDP;
	fx_tx_chain(x, &h, f, sizeof(f), NULL, 0);
	fx_kick(x, NET_TX_QUEUE);
	assert_int_equal(x->fb->out_count, 1);
	memcpy(&got, x->fb->out[0].data, sizeof(got));
	assert_memory_equal(&got, &want, sizeof(got));
	assert_memory_equal(x->fb->out[0].data + NET_VNET_HDR_LEN, f, sizeof(f));
	assert_int_equal(fx_stats(x).tx_dropped, 1);
	fx_free(x);
}

static void test_tx_oversized_dropped(void **state)
{
	struct fx *x = fx_new(true, 0, 256);
	struct virtio_net_hdr h = { 0 };
	size_t big = NET_MAX_FRAME + 1;
	uint8_t *f = calloc(1, big);
	uint8_t small[64];
	size_t cuts[] = { 12, 30000, 60000 };
	uint32_t id, len;
	uint16_t head;

	pattern(small, sizeof(small), 5);
	head = fx_tx_chain(x, &h, f, big, cuts, 3);
	fx_tx_chain(x, &h, small, sizeof(small), NULL, 0);
	/* A frame shorter than an Ethernet header is dropped too. */
	fx_tx_chain(x, &h, small, 10, NULL, 0);
	fx_kick(x, NET_TX_QUEUE);
	/* Only the good frame went out; all three chains came back. */
	assert_int_equal(x->fb->out_count, 1);
	assert_int_equal(x->fb->out[0].len, NET_VNET_HDR_LEN + sizeof(small));
	assert_true(vrd_get_used(&x->tx, &id, &len));
	assert_int_equal(id, head);
	assert_true(vrd_get_used(&x->tx, &id, &len));
	assert_true(vrd_get_used(&x->tx, &id, &len));
	assert_int_equal(fx_stats(x).tx_dropped, 2);
	assert_int_equal(fx_stats(x).tx_errors, 2);
	assert_int_equal(x->d->metrics.errors, 2);
	assert_false(fx_failed(x));
	free(f);
	fx_free(x);
}

static void test_tx_writable_descriptor_fails(void **state)
{
	struct fx *x = fx_new(true, 0, 256);
	uint8_t frame[NET_VNET_HDR_LEN + 60] = { 0 };
	struct vrd_buf b[2] = {
		vrd_buf_data(&x->tx, frame, sizeof(frame), false),
		vrd_buf_data(&x->tx, NULL, 64, true),     /* a device-writable part on transmit */
	};
	struct virtio_net_hdr h = { 0 };

	vrd_publish(&x->tx, vrd_add_chain(&x->tx, b, 2));
	fx_kick(x, NET_TX_QUEUE);
	assert_int_equal(x->fb->out_count, 0);
	assert_true(fx_failed(x));
	assert_int_equal(x->config_irqs, 1);

	/* Stopped: later good frames are not processed until a reset. */
	fx_tx_chain(x, &h, frame, 60, NULL, 0);
	fx_kick(x, NET_TX_QUEUE);
	assert_int_equal(x->fb->out_count, 0);
	fx_free(x);
}

static void test_tx_short_header_fails(void **state)
{
	struct fx *x = fx_new(true, 0, 256);
	uint8_t hdr[8] = { 0 };
	struct vrd_buf b = vrd_buf_data(&x->tx, hdr, sizeof(hdr), false);

	vrd_publish(&x->tx, vrd_add_chain(&x->tx, &b, 1));
	fx_kick(x, NET_TX_QUEUE);
	assert_true(fx_failed(x));
	assert_int_equal(x->fb->out_count, 0);
	fx_free(x);
}

static void test_tx_backpressure_keeps_order(void **state)
{
	struct fx *x = fx_new(true, 0, 256);
	struct virtio_net_hdr h = { 0 };
	uint8_t f1[80], f2[90];
	uint32_t id = 0, len, first;

	pattern(f1, sizeof(f1), 6);
	pattern(f2, sizeof(f2), 7);
	fx_tx_chain(x, &h, f1, sizeof(f1), NULL, 0);
	fx_tx_chain(x, &h, f2, sizeof(f2), NULL, 0);
	x->fb->eagain = 1;
	fx_kick(x, NET_TX_QUEUE);
	/* The refused frame is kept by the device and its chain completed; the next waits. */
	assert_int_equal(x->fb->out_count, 0);
	assert_true(vrd_get_used(&x->tx, &id, &len));
	first = id;
	assert_false(vrd_get_used(&x->tx, &id, &len));
	/* The chain is the guest's again and may be rewritten: the device sends its copy. */
	memset(vrd_host(&x->tx, le64toh(*(uint64_t *)vrd_host(&x->tx, x->tx.desc_gpa + 16ull * first, 8)),
			NET_VNET_HDR_LEN + sizeof(f1)), 0xee, NET_VNET_HDR_LEN + sizeof(f1));
	vnet_poll(x->n);   /* what the backend fd turning writable does */
	assert_int_equal(x->fb->out_count, 2);
	assert_memory_equal(x->fb->out[0].data + NET_VNET_HDR_LEN, f1, sizeof(f1));
	assert_memory_equal(x->fb->out[1].data + NET_VNET_HDR_LEN, f2, sizeof(f2));
	assert_true(vrd_get_used(&x->tx, &id, &len));
	assert_int_equal(fx_stats(x).tx_packets, 2);
	fx_free(x);
}

static void test_tx_too_scattered_for_writev(void **state)
{
	/* 1024 frame buffers + our header = 1025 iovecs, over writev's limit: bounced. */
	struct fx *x = fx_new(true, VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC), 256);
	static struct vrd_buf b[VQ_MAX_SEGS];
	uint8_t first[NET_VNET_HDR_LEN + 1] = { 0 };
	uint8_t f[VQ_MAX_SEGS];

	pattern(f, sizeof(f), 9);
	first[NET_VNET_HDR_LEN] = f[0];
	b[0] = vrd_buf_data(&x->tx, first, sizeof(first), false);
	for (unsigned i = 1; i < VQ_MAX_SEGS; i++)
		b[i] = vrd_buf_data(&x->tx, &f[i], 1, false);
	vrd_publish(&x->tx, vrd_add_indirect(&x->tx, b, VQ_MAX_SEGS));
	fx_kick(x, NET_TX_QUEUE);
	assert_false(fx_failed(x));
	assert_int_equal(x->fb->out_count, 1);
	assert_int_equal(x->fb->out[0].len, NET_VNET_HDR_LEN + sizeof(f));
	assert_memory_equal(x->fb->out[0].data + NET_VNET_HDR_LEN, f, sizeof(f));
	assert_int_equal(fx_stats(x).tx_packets, 1);
	assert_true(x->fb->max_iovcnt <= 1024);   /* UIO_MAXIOV */
	fx_free(x);
}

static void test_tx_budget_bounded(void **state)
{
	struct fx *x = fx_new(false, 0, 512);
	struct virtio_net_hdr h = { 0 };
	uint8_t f[64];

	pattern(f, sizeof(f), 8);
	for (int i = 0; i < 300; i++)
		fx_tx_chain(x, &h, f, sizeof(f), NULL, 0);
	fx_kick(x, NET_TX_QUEUE);
	/* One kick does a bounded amount of work ... */
	assert_true(x->fb->out_count < 300);
	assert_true(x->fb->out_count >= 64);
	/* ... and the rest follows on the next round. */
	vnet_poll(x->n);
	assert_int_equal(x->fb->out_count, 300);
	fx_free(x);
}

/* ---- receive ---- */

static void check_rx_hdr(struct fx *x, uint64_t gpa, uint16_t num_buffers)
{
	struct virtio_net_hdr h;

	memcpy(&h, vrd_host(&x->rx, gpa, sizeof(h)), sizeof(h));
	assert_int_equal(h.flags, 0);
	assert_int_equal(h.gso_type, 0);
	assert_int_equal(le16toh(h.num_buffers), num_buffers);
}

static void test_rx_single_buffers(void **state)
{
	struct fx *x = fx_new(false, 0, 256);
	uint8_t f1[1514], f2[60];
	uint64_t g1, g2;
	uint16_t b1, b2;
	uint32_t id, len;

	pattern(f1, sizeof(f1), 9);
	pattern(f2, sizeof(f2), 10);
	b1 = fx_rx_buf(x, 1526, &g1);
	b2 = fx_rx_buf(x, 1526, &g2);
	fb_queue(x->fb, NULL, f1, sizeof(f1));
	fb_queue(x->fb, NULL, f2, sizeof(f2));
	vnet_poll(x->n);

	assert_true(vrd_get_used(&x->rx, &id, &len));
	assert_int_equal(id, b1);
	assert_int_equal(len, NET_VNET_HDR_LEN + sizeof(f1));
	check_rx_hdr(x, g1, 1);   /* num_buffers is 1 without MRG_RXBUF (5.1.6.4) */
	assert_memory_equal(vrd_host(&x->rx, g1 + NET_VNET_HDR_LEN, sizeof(f1)), f1, sizeof(f1));
	assert_true(vrd_get_used(&x->rx, &id, &len));
	assert_int_equal(id, b2);
	assert_int_equal(len, NET_VNET_HDR_LEN + sizeof(f2));
	assert_memory_equal(vrd_host(&x->rx, g2 + NET_VNET_HDR_LEN, sizeof(f2)), f2, sizeof(f2));
	assert_int_equal(x->notified[NET_RX_QUEUE], 1);
	assert_int_equal(fx_stats(x).rx_packets, 2);
	assert_int_equal(fx_stats(x).rx_bytes, sizeof(f1) + sizeof(f2));
	fx_free(x);
}

static void test_rx_chain_of_several_descriptors(void **state)
{
	/* Without MRG_RXBUF one chain holds a frame, but it may have several buffers. */
	struct fx *x = fx_new(false, 0, 256);
	struct vrd_buf b[3] = {
		vrd_buf_data(&x->rx, NULL, 10, true),     /* splits the header */
		vrd_buf_data(&x->rx, NULL, 100, true),
		vrd_buf_data(&x->rx, NULL, 2000, true),
	};
	uint8_t f[500], got[NET_VNET_HDR_LEN + 500];
	uint32_t id, len;

	pattern(f, sizeof(f), 11);
	vrd_publish(&x->rx, vrd_add_chain(&x->rx, b, 3));
	fb_queue(x->fb, NULL, f, sizeof(f));
	vnet_poll(x->n);
	assert_true(vrd_get_used(&x->rx, &id, &len));
	assert_int_equal(len, sizeof(got));
	memcpy(got, vrd_host(&x->rx, b[0].gpa, 10), 10);
	memcpy(got + 10, vrd_host(&x->rx, b[1].gpa, 100), 100);
	memcpy(got + 110, vrd_host(&x->rx, b[2].gpa, sizeof(got) - 110), sizeof(got) - 110);
	assert_int_equal(got[10], 1);
	assert_int_equal(got[11], 0);
	assert_memory_equal(got + NET_VNET_HDR_LEN, f, sizeof(f));
	fx_free(x);
}

static void test_rx_mergeable(void **state)
{
	struct fx *x = fx_new(false, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF), 256);
	uint8_t f[600], small[50], got[NET_VNET_HDR_LEN + 600];
	uint64_t g[5];
	uint16_t b[5];
	uint32_t id, len, want[3] = { 256, 256, NET_VNET_HDR_LEN + 600 - 512 };

	pattern(f, sizeof(f), 12);
	pattern(small, sizeof(small), 13);
	for (int i = 0; i < 5; i++)
		b[i] = fx_rx_buf(x, 256, &g[i]);
	fb_queue(x->fb, NULL, f, sizeof(f));
	fb_queue(x->fb, NULL, small, sizeof(small));
	vnet_poll(x->n);

	/* 612 bytes over three 256-byte buffers, num_buffers 3 in the first. */
	for (int i = 0; i < 3; i++) {
		assert_true(vrd_get_used(&x->rx, &id, &len));
		assert_int_equal(id, b[i]);
		assert_int_equal(len, want[i]);
		memcpy(got + 256 * i, vrd_host(&x->rx, g[i], len), len);
	}
	check_rx_hdr(x, g[0], 3);
	assert_memory_equal(got + NET_VNET_HDR_LEN, f, sizeof(f));
	/* The next frame starts in the next buffer, with its own header. */
	assert_true(vrd_get_used(&x->rx, &id, &len));
	assert_int_equal(id, b[3]);
	assert_int_equal(len, NET_VNET_HDR_LEN + sizeof(small));
	check_rx_hdr(x, g[3], 1);
	assert_memory_equal(vrd_host(&x->rx, g[3] + NET_VNET_HDR_LEN, sizeof(small)), small, sizeof(small));
	assert_false(vrd_get_used(&x->rx, &id, &len));
	assert_int_equal(fx_stats(x).rx_packets, 2);
	fx_free(x);
}

static void test_rx_mergeable_waits_for_more_buffers(void **state)
{
	struct fx *x = fx_new(false, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF), 256);
	uint8_t f[1000], got[NET_VNET_HDR_LEN + 1000];
	uint64_t g[3];
	uint32_t id, len;
	uint16_t used0;

	pattern(f, sizeof(f), 14);
	g[0] = 0;
	fx_rx_buf(x, 400, &g[0]);
	fx_rx_buf(x, 400, &g[1]);
	fb_queue(x->fb, NULL, f, sizeof(f));
	used0 = vrd_used_idx(&x->rx);
	vnet_poll(x->n);
	/* Two buffers are not enough: nothing may show in the used ring yet. */
	assert_int_equal(vrd_used_idx(&x->rx), used0);
	assert_int_equal(x->notified[NET_RX_QUEUE], 0);
	assert_int_equal(fx_stats(x).rx_dropped, 0);

	fx_rx_buf(x, 400, &g[2]);
	fx_kick(x, NET_RX_QUEUE);
	for (int i = 0; i < 3; i++) {
		assert_true(vrd_get_used(&x->rx, &id, &len));
		assert_int_equal(len, i < 2 ? 400 : sizeof(got) - 800);
		memcpy(got + 400 * i, vrd_host(&x->rx, g[i], len), len);
	}
	check_rx_hdr(x, g[0], 3);
	assert_memory_equal(got + NET_VNET_HDR_LEN, f, sizeof(f));
	assert_int_equal(x->notified[NET_RX_QUEUE], 1);
	fx_free(x);
}

static void test_rx_no_buffers_backend_not_read(void **state)
{
	struct fx *x = fx_new(false, 0, 256);
	uint8_t f[3][70];
	uint64_t g[3];
	uint32_t id, len;

	for (int i = 0; i < 3; i++) {
		pattern(f[i], sizeof(f[i]), 20 + (unsigned)i);
		fb_queue(x->fb, NULL, f[i], sizeof(f[i]));
	}
	vnet_poll(x->n);
	vnet_poll(x->n);
	/* No buffers: the backend keeps its frames, nothing is read or dropped. */
	assert_int_equal(x->fb->recv_calls, 0);
	assert_int_equal(x->fb->in_count, 3);
	assert_int_equal(fx_stats(x).rx_dropped, 0);

	/* One buffer: exactly one frame comes, the others stay queued. */
	fx_rx_buf(x, 1526, &g[0]);
	fx_kick(x, NET_RX_QUEUE);
	assert_int_equal(x->fb->in_count, 2);
	assert_true(vrd_get_used(&x->rx, &id, &len));
	assert_memory_equal(vrd_host(&x->rx, g[0] + NET_VNET_HDR_LEN, sizeof(f[0])), f[0], sizeof(f[0]));

	fx_rx_buf(x, 1526, &g[1]);
	fx_rx_buf(x, 1526, &g[2]);
	fx_kick(x, NET_RX_QUEUE);
	for (int i = 1; i < 3; i++) {
		assert_true(vrd_get_used(&x->rx, &id, &len));
		assert_int_equal(len, NET_VNET_HDR_LEN + sizeof(f[i]));
		assert_memory_equal(vrd_host(&x->rx, g[i] + NET_VNET_HDR_LEN, sizeof(f[i])), f[i], sizeof(f[i]));
	}
	assert_int_equal(fx_stats(x).rx_packets, 3);
	assert_int_equal(fx_stats(x).rx_dropped, 0);
	fx_free(x);
}

static void test_rx_no_buffers_with_loop(void **state)
{
	struct fx *x = fx_new(false, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF), 256);
	struct loop *l = loop_new();
	uint8_t f[100];
	uint64_t g;
	uint32_t id, len = 0;
	int ran = 0;

	assert_non_null(l);
	pattern(f, sizeof(f), 30);
	assert_int_equal(vnet_attach(x->n, l), 0);
	fb_queue(x->fb, NULL, f, sizeof(f));
	for (int i = 0; i < 5; i++)
		ran += loop_run_once(l, 0);
	assert_true(ran >= 1);   /* the initial work round */
	assert_int_equal(x->fb->in_count, 1);
	/* Blocked on buffers: the readable backend fd no longer wakes the loop. */
	assert_int_equal(loop_run_once(l, 0), 0);

	fx_rx_buf(x, 2048, &g);
	fx_kick(x, NET_RX_QUEUE);   /* the loop runs on this thread: handled inline */
	for (int i = 0; i < 5 && !vrd_get_used(&x->rx, &id, &len); i++)
		loop_run_once(l, 100);
	assert_int_equal(len, NET_VNET_HDR_LEN + sizeof(f));
	assert_memory_equal(vrd_host(&x->rx, g + NET_VNET_HDR_LEN, sizeof(f)), f, sizeof(f));
	assert_int_equal(x->fb->in_count, 0);

	vnet_detach(x->n);
	loop_free(l);
	fx_free(x);
}

static void test_rx_dead_backend_not_polled(void **state)
{
	struct fx *x = fx_new(false, 0, 256);
	struct loop *l = loop_new();
	uint8_t f[60];
	int ran = 0;

	assert_non_null(l);
	pattern(f, sizeof(f), 31);
	fx_rx_buf(x, 1526, NULL);
	assert_int_equal(vnet_attach(x->n, l), 0);
	x->fb->recv_error = -EIO;          /* e.g. the tap interface was deleted */
	fb_queue(x->fb, NULL, f, sizeof(f));   /* its fd stays readable for ever */
	for (int i = 0; i < 10; i++)
		ran += loop_run_once(l, 0);
	/* One failed read, then the fd is out of the poll set instead of spinning. */
	assert_int_equal(x->fb->recv_calls, 1);
	assert_true(ran <= 3);
	assert_int_equal(loop_run_once(l, 0), 0);
	assert_int_equal(fx_stats(x).rx_errors, 1);
	vnet_detach(x->n);
	loop_free(l);
	fx_free(x);
}

static void test_rx_buffer_too_small_dropped(void **state)
{
	struct fx *x = fx_new(false, 0, 256);
	uint8_t big[1514], ok[100];
	uint64_t g1, g2;
	uint16_t b1;
	uint32_t id, len;

	pattern(big, sizeof(big), 40);
	pattern(ok, sizeof(ok), 41);
	b1 = fx_rx_buf(x, 200, &g1);
	fx_rx_buf(x, 200, &g2);
	fb_queue(x->fb, NULL, big, sizeof(big));
	fb_queue(x->fb, NULL, ok, sizeof(ok));
	vnet_poll(x->n);
	/* The buffer comes back empty, counted as a drop; the next frame still arrives. */
	assert_true(vrd_get_used(&x->rx, &id, &len));
	assert_int_equal(id, b1);
	assert_int_equal(len, 0);
	assert_true(vrd_get_used(&x->rx, &id, &len));
	assert_int_equal(len, NET_VNET_HDR_LEN + sizeof(ok));
	assert_memory_equal(vrd_host(&x->rx, g2 + NET_VNET_HDR_LEN, sizeof(ok)), ok, sizeof(ok));
	assert_int_equal(fx_stats(x).rx_dropped, 1);
	assert_int_equal(fx_stats(x).rx_packets, 1);
	assert_false(fx_failed(x));
	fx_free(x);
}

static void test_rx_readonly_chain_fails(void **state)
{
	struct fx *x = fx_new(false, 0, 256);
	struct vrd_buf b = vrd_buf_data(&x->rx, NULL, 1526, false);   /* device-readable */
	uint8_t f[60];

	pattern(f, sizeof(f), 50);
	vrd_publish(&x->rx, vrd_add_chain(&x->rx, &b, 1));
	fb_queue(x->fb, NULL, f, sizeof(f));
	vnet_poll(x->n);
	assert_true(fx_failed(x));
	assert_int_equal(x->config_irqs, 1);
	/* Nothing was written into the read-only buffer. */
	assert_int_equal(*(uint8_t *)vrd_host(&x->rx, b.gpa, 1), 0);
	fx_free(x);
}

static void test_rx_mergeable_tiny_buffer_fails(void **state)
{
	struct fx *x = fx_new(false, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF), 256);
	uint8_t f[60];

	pattern(f, sizeof(f), 51);
	fx_rx_buf(x, 8, NULL);   /* smaller than the header: not allowed with MRG_RXBUF */
	fb_queue(x->fb, NULL, f, sizeof(f));
	vnet_poll(x->n);
	assert_true(fx_failed(x));
	fx_free(x);
}

static void test_rx_offload_header(void **state)
{
	/* A tap frame with a partial checksum reaches a guest that negotiated GUEST_CSUM ... */
	struct fx *x = fx_new(true, offloads_all | VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF), 256);
	struct virtio_net_hdr in = {
		.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
		.gso_type = VIRTIO_NET_HDR_GSO_TCPV6,
		.hdr_len = htole16(74),
		.gso_size = htole16(1440),
		.csum_start = htole16(54),
		.csum_offset = htole16(16),
		.num_buffers = htole16(0xbeef),   /* the tap leaves these bytes alone */
	}, got;
	uint8_t f[3000];
	uint64_t g[2];
	uint32_t id, len;

	pattern(f, sizeof(f), 60);
	fx_rx_buf(x, 4096, &g[0]);
	fb_queue(x->fb, &in, f, sizeof(f));
	vnet_poll(x->n);
	assert_true(vrd_get_used(&x->rx, &id, &len));
	memcpy(&got, vrd_host(&x->rx, g[0], sizeof(got)), sizeof(got));
	in.num_buffers = htole16(1);
	assert_memory_equal(&got, &in, sizeof(got));
	fx_free(x);

	/* ... but not one that did not: that frame cannot be delivered. */
	x = fx_new(true, 0, 256);
	in.num_buffers = 0;
	fx_rx_buf(x, 4096, &g[0]);
	fb_queue(x->fb, &in, f, sizeof(f));
	in.flags = VIRTIO_NET_HDR_F_DATA_VALID;   /* without GUEST_CSUM flags must read 0 */
	in.gso_type = 0;
	fb_queue(x->fb, &in, f, 100);
	vnet_poll(x->n);
	assert_true(vrd_get_used(&x->rx, &id, &len));
	assert_int_equal(len, NET_VNET_HDR_LEN + 100);
	memcpy(&got, vrd_host(&x->rx, g[0], sizeof(got)), sizeof(got));
	assert_int_equal(got.flags, 0);
	assert_int_equal(got.gso_type, 0);
	assert_int_equal(le16toh(got.num_buffers), 1);
	assert_int_equal(fx_stats(x).rx_dropped, 1);
	fx_free(x);
}

static void test_mtu(void **state)
{
	struct fx *x = fx_new_mtu(false, VIRTIO_BIT(VIRTIO_NET_F_MTU), 256, 1400);
	struct virtio_net_config c;
	uint8_t f[1500];
	uint64_t g;
	uint32_t id, len;

	assert_true(x->d->host_features & VIRTIO_BIT(VIRTIO_NET_F_MTU));
	x->d->ops->config_read(x->d, 0, &c, sizeof(c));
	assert_int_equal(le16toh(c.mtu), 1400);
	/* A frame beyond mtu + Ethernet header (+ VLAN tag) never reaches the driver. */
	pattern(f, sizeof(f), 90);
	fx_rx_buf(x, 2048, &g);
	fb_queue(x->fb, NULL, f, 1400 + 14 + 4 + 1);
	fb_queue(x->fb, NULL, f, 1400 + 14 + 4);
	vnet_poll(x->n);
	assert_true(vrd_get_used(&x->rx, &id, &len));
	assert_int_equal(len, NET_VNET_HDR_LEN + 1418);
	assert_int_equal(fx_stats(x).rx_dropped, 1);
	fx_free(x);
}

static void test_reset_clears_held_frame(void **state)
{
	/* Same device, reset and re-activated on the same rings: no stale chains pushed. */
	struct fx *x = fx_new(false, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF), 256);
	uint8_t f[1000], f2[80];
	uint64_t g;
	uint32_t id, len;
	uint8_t s;

	pattern(f, sizeof(f), 72);
	pattern(f2, sizeof(f2), 73);
	fx_rx_buf(x, 300, NULL);
	fb_queue(x->fb, NULL, f, sizeof(f));
	vnet_poll(x->n);
	fx_set_status(x, 0);

	memset(x->rx.ram, 0, (size_t)(x->rx.data_start - x->rx.ram_gpa));   /* fresh rings */
	x->rx.avail_idx = x->rx.last_used = 0;
	x->rx.next_desc = 0;
	fx_program_queue(x->d, NET_RX_QUEUE, &x->rx);
	fx_program_queue(x->d, NET_TX_QUEUE, &x->tx);
	virtio_set_driver_features(x->d, 0, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	virtio_set_driver_features(x->d, 1, 1);
	s = fx_set_status(x, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	s = fx_set_status(x, s | VIRTIO_STATUS_DRIVER_OK);
	assert_true(s & VIRTIO_STATUS_DRIVER_OK);
	fx_rx_buf(x, 2048, &g);
	fb_queue(x->fb, NULL, f2, sizeof(f2));
	vnet_poll(x->n);
	/* The half-delivered frame is gone with the reset; the new one arrives alone. */
	assert_true(vrd_get_used(&x->rx, &id, &len));
	assert_int_equal(len, NET_VNET_HDR_LEN + sizeof(f2));
	assert_memory_equal(vrd_host(&x->rx, g + NET_VNET_HDR_LEN, sizeof(f2)), f2, sizeof(f2));
	assert_false(vrd_get_used(&x->rx, &id, &len));
	fx_free(x);
}

static void *kick_thread(void *arg)
{
	struct fx *x = arg;

	fx_kick(x, NET_TX_QUEUE);
	return NULL;
}

static void test_kick_from_other_thread_is_deferred(void **state)
{
	struct fx *x = fx_new(false, 0, 256);
	struct loop *l = loop_new();
	struct virtio_net_hdr h = { 0 };
	uint8_t f[64];
	pthread_t t;

	assert_non_null(l);
	pattern(f, sizeof(f), 80);
	assert_int_equal(vnet_attach(x->n, l), 0);
	while (loop_run_once(l, 0) > 0)
		;   /* the I/O thread (this one) is now known */
	fx_tx_chain(x, &h, f, sizeof(f), NULL, 0);
	/* A vCPU thread's kick only schedules work ... */
	assert_int_equal(pthread_create(&t, NULL, kick_thread, x), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(x->fb->out_count, 0);
	/* ... which the I/O thread then does. */
	assert_true(loop_run_once(l, 1000) >= 1);
	assert_int_equal(x->fb->out_count, 1);
	assert_memory_equal(x->fb->out[0].data, f, sizeof(f));
	vnet_detach(x->n);
	loop_free(l);
	fx_free(x);
}

/* Device + real user-mode backend + loop: a guest's ARP request through the rings, the reply back. */
static void test_user_backend_end_to_end(void **state)
{
	struct fx *x = fx_new_user_or_mtu(true, false, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF), 256, 0);
	struct loop *l = loop_new();
	struct virtio_net_hdr h = { 0 };
	uint8_t arp[60] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06,
		0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
		10, 0, 2, 15, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2,
	};
	const uint8_t *r;
	uint64_t g;
	uint32_t id, len = 0;
	bool got = false;

	assert_non_null(l);
	/* Offloads are not offered: slirp wants finished frames. */
	assert_int_equal(x->d->host_features & offloads_all, 0);
	assert_int_equal(vnet_attach(x->n, l), 0);
	fx_rx_buf(x, 2048, &g);
	fx_tx_chain(x, &h, arp, sizeof(arp), NULL, 0);
	fx_kick(x, NET_TX_QUEUE);
	for (int i = 0; i < 100 && !(got = vrd_get_used(&x->rx, &id, &len)); i++)
		loop_run_once(l, 20);
	assert_true(got);
	check_rx_hdr(x, g, 1);
	r = vrd_host(&x->rx, g + NET_VNET_HDR_LEN, len - NET_VNET_HDR_LEN);
	assert_true(len >= NET_VNET_HDR_LEN + 42);
	assert_int_equal(r[12] << 8 | r[13], 0x0806);     /* ARP ... */
	assert_int_equal(r[20] << 8 | r[21], 2);          /* ... reply ... */
	assert_memory_equal(r + 28, ((uint8_t[]){ 10, 0, 2, 2 }), 4);   /* ... from 10.0.2.2 */
	assert_memory_equal(r, arp + 6, 6);               /* to the guest's MAC */
	assert_int_equal(fx_stats(x).tx_packets, 1);
	assert_int_equal(fx_stats(x).rx_packets, 1);
	vnet_detach(x->n);
	loop_free(l);
	fx_free(x);
}

/* ---- bulk traffic through the loop, with a driver that keeps to the notification rules ---- */

/*
 * The driver side of 2.7.7 and 2.7.10: it notifies only when the device
 * asked for it (avail_event with EVENT_IDX, else used->flags), and looks at
 * a used ring only when it was interrupted, or when it runs anyway (a
 * transmitting stack) and its ring is not full. A device that stops
 * without asking for a kick, or completes buffers without an interrupt
 * the driver asked for, leaves these drivers waiting: the tests see no
 * progress and fail instead of hanging.
 */
#define BULK_IDLE_LIMIT 100   /* rounds of 20 ms without progress: stalled */

static bool drv_need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1u) < (uint16_t)(new_idx - old_idx);
}

/* After making [old, avail_idx) available: must the driver notify? */
static bool drv_should_kick(struct vrd *r, bool event_idx, uint16_t old)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (event_idx)
		return drv_need_event(vrd_avail_event(r), r->avail_idx, old);
	return !(vrd_used_flags(r) & VRING_USED_F_NO_NOTIFY);
}

/* Ask for an interrupt when the next used entry is written (on), or for none (off). */
static void drv_irq(struct vrd *r, bool event_idx, bool on)
{
	if (event_idx) {
		/* Off: used_event stays behind, so the device's next check does not pass it. */
		if (on)
			vrd_set_used_event(r, r->last_used);
	} else {
		vrd_set_avail_flags(r, on ? 0 : VRING_AVAIL_F_NO_INTERRUPT);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* Chain of the buffers pool[next_desc...] (allocated on first use), placed `ahead` slots on. */
static uint16_t drv_place_chain(struct vrd *r, uint64_t *pool, uint32_t pool_len, const uint32_t *lens,
				const void *const *src, unsigned n, bool write, unsigned ahead)
{
	struct vrd_buf b[4];
	uint16_t head;

	assert_true(n <= 4);
	for (unsigned i = 0; i < n; i++) {
		unsigned idx = (r->next_desc + i) % r->size;

		if (!pool[idx])
			pool[idx] = vrd_alloc(r, pool_len);
		b[i] = (struct vrd_buf){ pool[idx], lens[i], write };
		if (src && src[i])
			memcpy(vrd_host(r, b[i].gpa, lens[i]), src[i], lens[i]);
	}
	head = vrd_add_chain(r, b, n);
	vrd_place(r, head, ahead);
	return head;
}

/* Frame number `seq` of a bulk test: its header (vnet backends) and bytes. */
static size_t bulk_frame(unsigned seq, bool big, struct virtio_net_hdr *h, uint8_t *f)
{
	size_t len = big ? 65000 : 60 + (seq * 97u) % 1455u;

	memset(h, 0, sizeof(*h));
	if (big) {
		h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		h->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
		h->hdr_len = htole16(66);
		h->gso_size = htole16(1448);
		h->csum_start = htole16(34);
		h->csum_offset = htole16(16);
	} else if (seq % 3 == 0) {
		h->flags = VIRTIO_NET_HDR_F_DATA_VALID;
	}
	pattern(f, len, seq);
	memcpy(f + 14, &seq, sizeof(seq));
	return len;
}

#define RX_BULK_FRAMES 3000
#define RX_BULK_BUF    1536

struct rx_bulk {
	struct fx *x;
	bool event_idx;
	uint64_t pool[VQ_MAX_SIZE];
	uint8_t *asm_buf, *want;
	size_t asm_len;
	unsigned asm_bufs, asm_want_bufs;
	unsigned received;
};

static void rx_bulk_post(struct rx_bulk *b, unsigned n)
{
	struct vrd *r = &b->x->rx;
	uint32_t len = RX_BULK_BUF;
	uint16_t old = r->avail_idx;

	for (unsigned i = 0; i < n; i++)
		drv_place_chain(r, b->pool, RX_BULK_BUF, &len, NULL, 1, true, i);
	vrd_set_avail_idx(r, (uint16_t)(old + n));
	if (drv_should_kick(r, b->event_idx, old))
		fx_kick(b->x, NET_RX_QUEUE);
}

/* One used entry: append it to the frame being assembled; check the frame once complete. */
static void rx_bulk_entry(struct rx_bulk *b, uint32_t id, uint32_t len)
{
	struct virtio_net_hdr want_h, got_h;
	size_t want_len;

	assert_true(id < b->x->rx.size && b->pool[id]);
	assert_true(len >= NET_VNET_HDR_LEN && len <= RX_BULK_BUF);
	assert_true(b->asm_len + len <= (NET_VNET_HDR_LEN + NET_MAX_FRAME));
	memcpy(b->asm_buf + b->asm_len, vrd_host(&b->x->rx, b->pool[id], len), len);
	if (b->asm_bufs++ == 0) {
		memcpy(&got_h, b->asm_buf, sizeof(got_h));
		b->asm_want_bufs = le16toh(got_h.num_buffers);
		assert_true(b->asm_want_bufs >= 1);
	}
	b->asm_len += len;
	if (b->asm_bufs < b->asm_want_bufs)
		return;

	want_len = bulk_frame(b->received, b->received % 37 == 5, &want_h, b->want);
	want_h.num_buffers = htole16((uint16_t)b->asm_bufs);
	memcpy(&got_h, b->asm_buf, sizeof(got_h));
	if (b->asm_len != NET_VNET_HDR_LEN + want_len)
		fail_msg("frame %u: %zu bytes, want %zu", b->received, b->asm_len, NET_VNET_HDR_LEN + want_len);
	assert_memory_equal(&got_h, &want_h, sizeof(got_h));
	assert_memory_equal(b->asm_buf + NET_VNET_HDR_LEN, b->want, want_len);
	b->received++;
	b->asm_len = 0;
	b->asm_bufs = 0;
}

/* The interrupt handler and poll routine: everything used, buffers back, interrupts on again. */
static bool rx_bulk_poll(struct rx_bulk *b)
{
	struct vrd *r = &b->x->rx;
	bool progress = false;
	uint32_t id, len;

	drv_irq(r, b->event_idx, false);
	for (;;) {
		unsigned n = 0;

		while (vrd_get_used(r, &id, &len)) {
			rx_bulk_entry(b, id, len);
			n++;
		}
		if (n) {
			progress = true;
			rx_bulk_post(b, n);
		}
		drv_irq(r, b->event_idx, true);
		/* Entries written before interrupts were back on would never interrupt. */
		if (vrd_used_idx(r) == r->last_used)
			return progress;
		drv_irq(r, b->event_idx, false);
	}
}

static void run_rx_bulk(bool event_idx, uint16_t qsize)
{
	uint64_t features = offloads_all | VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) |
			    (event_idx ? VIRTIO_BIT(VIRTIO_F_EVENT_IDX) : 0);
	struct rx_bulk *b = calloc(1, sizeof(*b));
	struct loop *l = loop_new();
	uint8_t *frame = malloc(NET_MAX_FRAME);
	struct virtio_net_hdr h;
	unsigned queued = 0, seen_irqs = 0, idle = 0;
	struct vnet_stats st;

	assert_non_null(b);
	assert_non_null(l);
	b->x = fx_new(true, features, qsize);
	b->event_idx = event_idx;
	b->asm_buf = malloc((NET_VNET_HDR_LEN + NET_MAX_FRAME));
	b->want = malloc(NET_MAX_FRAME);
	assert_int_equal(vnet_attach(b->x->n, l), 0);
	/* Probe: the driver fills the ring once and kicks. */
	drv_irq(&b->x->rx, event_idx, true);
	rx_bulk_post(b, b->x->rx.size);

	while (b->received < RX_BULK_FRAMES) {
		bool progress = false;
		int ran;

		/* The wire: more frames whenever the backend's queue runs low. */
		while (queued < RX_BULK_FRAMES && b->x->fb->in_count < FB_MAX - 12) {
			size_t len = bulk_frame(queued, queued % 37 == 5, &h, frame);

			fb_queue(b->x->fb, &h, frame, len);
			queued++;
			progress = true;
		}
		ran = loop_run_once(l, 20);
		if (b->x->notified[NET_RX_QUEUE] != seen_irqs) {
			seen_irqs = b->x->notified[NET_RX_QUEUE];
			progress |= rx_bulk_poll(b);
		}
		idle = progress || ran > 0 ? 0 : idle + 1;
		if (idle == BULK_IDLE_LIMIT)
			fail_msg("receive stalled after %u of %u frames (%u queued, %u in the backend)",
				 b->received, RX_BULK_FRAMES, queued, b->x->fb->in_count);
	}
	st = fx_stats(b->x);
	assert_int_equal(st.rx_packets, RX_BULK_FRAMES);
	assert_int_equal(st.rx_dropped, 0);
	assert_int_equal(st.rx_errors, 0);
	assert_int_equal(b->x->fb->in_count, 0);
	assert_false(fx_failed(b->x));
	vnet_detach(b->x->n);
	loop_free(l);
	fx_free(b->x);
	free(frame);
	free(b->asm_buf);
	free(b->want);
	free(b);
}

/*
 * 3000 frames (every 37th a 65000-byte GSO frame over 43 mergeable buffers):
 * more than a wake-up's budget waiting with buffers to spare (1024-entry
 * ring), and the ring running dry (256 entries).
 */
static void test_rx_bulk_event_idx(void **state)
{
	run_rx_bulk(true, 1024);
}

static void test_rx_bulk_flags(void **state)
{
	run_rx_bulk(false, 256);
}

static void test_rx_bulk_event_idx_small_ring(void **state)
{
	run_rx_bulk(true, 256);
}

static void test_rx_bulk_flags_large_ring(void **state)
{
	run_rx_bulk(false, 1024);
}

#define TX_BULK_FRAMES 3000
#define TX_BULK_BUF    2048

static void tx_bulk_check_out(struct fake_be *fb, unsigned *checked, uint8_t *want)
{
	struct virtio_net_hdr h;

	for (unsigned i = 0; i < fb->out_count; i++) {
		size_t len = bulk_frame(*checked, false, &h, want);

		h.flags = 0;   /* only NEEDS_CSUM survives on transmit */
		if (*checked % 2) {
			h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
			h.csum_start = htole16(34);
			h.csum_offset = htole16(16);
		}
		if (fb->out[i].len != NET_VNET_HDR_LEN + len)
			fail_msg("frame %u: %zu bytes, want %zu", *checked, fb->out[i].len, NET_VNET_HDR_LEN + len);
		assert_memory_equal(fb->out[i].data, &h, NET_VNET_HDR_LEN);
		assert_memory_equal(fb->out[i].data + NET_VNET_HDR_LEN, want, len);
		free(fb->out[i].data);
		(*checked)++;
	}
	fb->out_count = 0;
}

static void run_tx_bulk(bool event_idx)
{
	uint64_t features = offloads_all | (event_idx ? VIRTIO_BIT(VIRTIO_F_EVENT_IDX) : 0);
	struct fx *x = fx_new(true, features, 256);
	struct vrd *r = &x->tx;
	struct loop *l = loop_new();
	uint64_t *pool = calloc(VQ_MAX_SIZE, sizeof(*pool));
	uint8_t *frame = malloc(NET_MAX_FRAME), *want = malloc(NET_MAX_FRAME);
	unsigned posted = 0, completed = 0, checked = 0, seen_irqs = 0, idle = 0;
	bool stopped = false;
	uint32_t id, len;

	assert_non_null(l);
	assert_int_equal(vnet_attach(x->n, l), 0);
	drv_irq(r, event_idx, false);
	while (checked < TX_BULK_FRAMES || completed < TX_BULK_FRAMES) {
		bool progress = false;
		int ran;

		/* The stack keeps transmitting; a stopped queue waits for the interrupt. */
		if (!stopped || x->notified[NET_TX_QUEUE] != seen_irqs) {
			uint16_t old = r->avail_idx;
			unsigned n = 0;

			seen_irqs = x->notified[NET_TX_QUEUE];
			while (vrd_get_used(r, &id, &len)) {
				assert_int_equal(len, 0);
				completed++;
				progress = true;
			}
			/* Two descriptors a frame: the header, then the frame. */
			while (posted + n < TX_BULK_FRAMES && 2 * (posted + n - completed) + 2 <= r->size) {
				struct virtio_net_hdr h;
				size_t flen = bulk_frame(posted + n, false, &h, frame);
				uint32_t lens[2] = { NET_VNET_HDR_LEN, (uint32_t)flen };
				const void *src[2] = { &h, frame };

				memset(&h, 0, sizeof(h));
				if ((posted + n) % 2) {
					h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
					h.csum_start = htole16(34);
					h.csum_offset = htole16(16);
				}
				drv_place_chain(r, pool, TX_BULK_BUF, lens, src, 2, false, n);
				n++;
			}
			if (n) {
				posted += n;
				progress = true;
				vrd_set_avail_idx(r, (uint16_t)(old + n));
				/* Now and then the backend cannot take a frame: the device must come back to it. */
				if (posted % 7 == 0)
					x->fb->eagain = 2;
				if (drv_should_kick(r, event_idx, old))
					fx_kick(x, NET_TX_QUEUE);
			}
			stopped = false;
			if (posted < TX_BULK_FRAMES && 2 * (posted - completed) + 2 > r->size) {
				/* Full: stop the queue, interrupts on, and look once more. */
				drv_irq(r, event_idx, true);
				stopped = vrd_used_idx(r) == r->last_used;
				if (!stopped)
					drv_irq(r, event_idx, false);
			}
		}
		ran = loop_run_once(l, stopped || posted == TX_BULK_FRAMES ? 20 : 0);
		if (x->fb->out_count) {
			tx_bulk_check_out(x->fb, &checked, want);
			progress = true;
		}
		idle = progress || ran > 0 ? 0 : idle + 1;
		if (idle == BULK_IDLE_LIMIT)
			fail_msg("transmit stalled: %u posted, %u completed, %u sent of %u",
				 posted, completed, checked, TX_BULK_FRAMES);
	}
	assert_int_equal(checked, TX_BULK_FRAMES);
	assert_int_equal(fx_stats(x).tx_packets, TX_BULK_FRAMES);
	assert_int_equal(fx_stats(x).tx_dropped, 0);
	assert_false(fx_failed(x));
	vnet_detach(x->n);
	loop_free(l);
	free(pool);
	free(frame);
	free(want);
	fx_free(x);
}

/* 3000 frames with the ring full most of the time, budgets, and a backend that now and then says EAGAIN. */
static void test_tx_bulk_event_idx(void **state)
{
	run_tx_bulk(true);
}

static void test_tx_bulk_flags(void **state)
{
	run_tx_bulk(false);
}

/* ---- the largest frames: 64 KiB TSO both ways ---- */

static void test_tx_tso_largest_frame(void **state)
{
	/* As Linux sends one: the header, then the frame in page-sized pieces, through an indirect table. */
	struct fx *x = fx_new(true, offloads_all | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC), 256);
	struct virtio_net_hdr h = {
		.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
		.gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
		.hdr_len = htole16(66),
		.gso_size = htole16(1448),
		.csum_start = htole16(34),
		.csum_offset = htole16(16),
	};
	size_t flen = NET_MAX_FRAME;
	uint8_t *f = malloc(flen);
	struct vrd_buf b[18];
	unsigned nb = 0;
	uint32_t id, len;

	pattern(f, flen, 91);
	b[nb++] = vrd_buf_data(&x->tx, &h, NET_VNET_HDR_LEN, false);
	for (size_t off = 0; off < flen; off += 4096)
		b[nb++] = vrd_buf_data(&x->tx, f + off, (uint32_t)(flen - off < 4096 ? flen - off : 4096), false);
	assert_int_equal(nb, 18);
	vrd_publish(&x->tx, vrd_add_indirect(&x->tx, b, nb));
	fx_kick(x, NET_TX_QUEUE);
	assert_false(fx_failed(x));
	assert_int_equal(x->fb->out_count, 1);
	assert_int_equal(x->fb->out[0].len, NET_VNET_HDR_LEN + flen);
	assert_memory_equal(x->fb->out[0].data, &h, NET_VNET_HDR_LEN);
	assert_memory_equal(x->fb->out[0].data + NET_VNET_HDR_LEN, f, flen);
	assert_true(vrd_get_used(&x->tx, &id, &len));
	assert_int_equal(fx_stats(x).tx_packets, 1);
	assert_int_equal(fx_stats(x).tx_dropped, 0);
	free(f);
	fx_free(x);
}

static void test_rx_tso_largest_frame_mergeable(void **state)
{
	struct fx *x = fx_new(true, offloads_all | VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF), 256);
	struct virtio_net_hdr in = {
		.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
		.gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
		.hdr_len = htole16(66),
		.gso_size = htole16(1448),
		.csum_start = htole16(34),
		.csum_offset = htole16(16),
	}, got;
	size_t flen = NET_MAX_FRAME, total = NET_VNET_HDR_LEN + NET_MAX_FRAME, off = 0;
	unsigned want_bufs = (unsigned)((total + 1535) / 1536);
	uint8_t *f = malloc(flen), *all = malloc(total);
	uint64_t g[64];
	uint32_t id, len = 0;

	pattern(f, flen, 92);
	/* One buffer short first: nothing shows until the last one is there. */
	for (unsigned i = 0; i < want_bufs - 1; i++)
		fx_rx_buf(x, 1536, &g[i]);
	fb_queue(x->fb, &in, f, flen);
	vnet_poll(x->n);
	assert_false(vrd_get_used(&x->rx, &id, &len));
	fx_rx_buf(x, 1536, &g[want_bufs - 1]);
	fx_kick(x, NET_RX_QUEUE);
	for (unsigned i = 0; i < want_bufs; i++) {
		assert_true(vrd_get_used(&x->rx, &id, &len));
		assert_true(off + len <= total);
		memcpy(all + off, vrd_host(&x->rx, g[i], len), len);
		off += len;
	}
	assert_false(vrd_get_used(&x->rx, &id, &len));
	assert_int_equal(off, total);
	memcpy(&got, all, sizeof(got));
	in.num_buffers = htole16((uint16_t)want_bufs);
	assert_memory_equal(&got, &in, sizeof(got));
	assert_memory_equal(all + NET_VNET_HDR_LEN, f, flen);
	assert_int_equal(fx_stats(x).rx_packets, 1);
	assert_int_equal(fx_stats(x).rx_dropped, 0);
	free(f);
	free(all);
	fx_free(x);
}

/* ---- user-mode backend: frames slirp queued while the guest had no room still arrive ---- */

static void test_user_backend_queue_drains_without_traffic(void **state)
{
	/* 300 ARP requests at once: slirp answers each into its queue (256 frames), faster than 4 buffers take them. */
	struct fx *x = fx_new_user_or_mtu(true, false, VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) |
					  VIRTIO_BIT(VIRTIO_F_EVENT_IDX), 512, 0);
	struct loop *l = loop_new();
	struct virtio_net_hdr h = { 0 };
	uint8_t arp[60] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06,
		0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
		10, 0, 2, 15, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2,
	};
	uint64_t pool[VQ_MAX_SIZE] = { 0 };
	unsigned got = 0, seen_irqs = 0, idle = 0;
	struct vnet_stats st;
	uint32_t id, len;

	assert_non_null(l);
	assert_int_equal(vnet_attach(x->n, l), 0);
	drv_irq(&x->rx, true, true);
	for (unsigned i = 0; i < 4; i++) {
		uint32_t blen = 2048;

		drv_place_chain(&x->rx, pool, 2048, &blen, NULL, 1, true, i);
	}
	vrd_set_avail_idx(&x->rx, 4);
	for (int i = 0; i < 300; i++)
		fx_tx_chain(x, &h, arp, sizeof(arp), NULL, 0);
	fx_kick(x, NET_TX_QUEUE);

	for (;;) {
		bool progress = false;
		int ran = loop_run_once(l, 20);

		st = fx_stats(x);
		if (got + st.backend_dropped == 300 && st.tx_packets == 300)
			break;
		if (x->notified[NET_RX_QUEUE] != seen_irqs) {
			seen_irqs = x->notified[NET_RX_QUEUE];
			drv_irq(&x->rx, true, false);
			for (;;) {
				uint16_t old = x->rx.avail_idx;
				unsigned n = 0;

				while (vrd_get_used(&x->rx, &id, &len)) {
					const uint8_t *r = vrd_host(&x->rx, pool[id] + NET_VNET_HDR_LEN, 42);

					assert_true(len >= NET_VNET_HDR_LEN + 42);
					assert_int_equal(r[12] << 8 | r[13], 0x0806);
					assert_int_equal(r[20] << 8 | r[21], 2);
					got++;
					n++;
				}
				/* A slow guest: the same few buffers back, one kick if asked for. */
				for (unsigned i = 0; i < n; i++) {
					uint32_t blen = 2048;

					drv_place_chain(&x->rx, pool, 2048, &blen, NULL, 1, true, i);
				}
				vrd_set_avail_idx(&x->rx, (uint16_t)(old + n));
				if (n && drv_should_kick(&x->rx, true, old))
					fx_kick(x, NET_RX_QUEUE);
				progress |= n > 0;
				drv_irq(&x->rx, true, true);
				if (vrd_used_idx(&x->rx) == x->rx.last_used)
					break;
				drv_irq(&x->rx, true, false);
			}
		}
		/* Slirp's timers keep the loop busy: progress is replies arriving. */
		(void)ran;
		idle = progress ? 0 : idle + 1;
		if (idle == BULK_IDLE_LIMIT)
			fail_msg("stalled: %u replies received, %llu dropped by slirp's queue, %llu sent",
				 got, (unsigned long long)st.backend_dropped, (unsigned long long)st.tx_packets);
	}
	/* The queue held at least its 256 frames; only what overflowed it is lost. */
	assert_true(got >= 256);
	assert_int_equal(st.rx_packets, got);
	assert_int_equal(st.rx_dropped, 0);
	assert_false(fx_failed(x));
	vnet_detach(x->n);
	loop_free(l);
	fx_free(x);
}

/* ---- --net parsing ---- */

static void test_parse_spec(void **state)
{
	struct vnet_config c, c2;
	char err[256];

	assert_int_equal(vnet_parse_spec("tap=kestrel0", &c, err, sizeof(err)), 0);
	assert_int_equal(c.backend, NET_BACKEND_TAP);
	assert_string_equal(c.ifname, "kestrel0");
	assert_memory_equal(c.mac, ((uint8_t[]){ 0x52, 0x54, 0x00 }), 3);
	/* Deterministic, and different for a different backend. */
	assert_int_equal(vnet_parse_spec("tap=kestrel0", &c2, err, sizeof(err)), 0);
	assert_memory_equal(c.mac, c2.mac, 6);
	assert_int_equal(vnet_parse_spec("tap=kestrel1", &c2, err, sizeof(err)), 0);
	assert_memory_not_equal(c.mac, c2.mac, 6);

	assert_int_equal(vnet_parse_spec("tap=t0,mac=02:AB:cd:00:11:ff,mtu=9000", &c, err, sizeof(err)), 0);
	assert_memory_equal(c.mac, ((uint8_t[]){ 0x02, 0xab, 0xcd, 0x00, 0x11, 0xff }), 6);
	assert_int_equal(c.mtu, 9000);

	assert_int_equal(vnet_parse_spec("user", &c, err, sizeof(err)), 0);
	assert_int_equal(c.backend, NET_BACKEND_USER);
	assert_int_equal(c.nr_hostfwd, 0);
	assert_int_equal(vnet_parse_spec("user,hostfwd=tcp::2222-:22,hostfwd=udp:0.0.0.0:5353-10.0.2.16:53",
					&c, err, sizeof(err)), 0);
	assert_int_equal(c.nr_hostfwd, 2);
	assert_false(c.hostfwd[0].udp);
	assert_int_equal(c.hostfwd[0].host_port, 2222);
	assert_int_equal(c.hostfwd[0].guest_port, 22);
	assert_int_equal(ntohl(c.hostfwd[0].host_addr.s_addr), 0x7f000001);
	assert_int_equal(ntohl(c.hostfwd[0].guest_addr.s_addr), 0x0a00020f);
	assert_true(c.hostfwd[1].udp);
	assert_int_equal(c.hostfwd[1].host_addr.s_addr, 0);
	assert_int_equal(ntohl(c.hostfwd[1].guest_addr.s_addr), 0x0a000210);

	static const char *const bad[] = {
		"", "tap", "tap=", "bridge=br0", "usr", "user,", "tap=a/b", "tap=abcdefghijklmnopq",
		"tap=t0,mac=52:54:00:12:34", "tap=t0,mac=52:54:00:12:34:5g", "tap=t0,mac=01:00:5e:00:00:01",
		"tap=t0,mac=00:00:00:00:00:00", "tap=t0,mac=52-54-00-12-34-56", "tap=t0,speed=10",
		"tap=t0,hostfwd=tcp::1-:2", "user,mtu=20", "user,mtu=70000", "user,hostfwd=tcp::22",
		"user,mac", "tap=a:b", "tap=a b", "tap=\x01", "bad\nline", "user,hostfwd=tcp::1\n-:2",
		"tap=t0,mac=\n", "tap=t0,\r\n=1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (vnet_parse_spec(bad[i], &c, err, sizeof(err)) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		/* One line, naming the problem. */
		assert_true(err[0] != '\0');
		assert_null(strchr(err, '\n'));
	}
	assert_int_equal(vnet_parse_spec("tap=t0,foo=1", &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "foo=1"));
}

static void test_new_rejects_bad_config(void **state)
{
	struct vnet_config cfg = { .backend = NET_BACKEND_NONE };
	struct virtio_net *n = (void *)1;
	struct vrd r;
	char err[256] = "";

	assert_int_equal(vrd_init(&r, 16), 0);
	assert_int_equal(vnet_new(&n, &cfg, &r.gm, err, sizeof(err)), -EINVAL);
	assert_null(n);
	assert_true(err[0]);
	cfg.queue_size = 100;   /* not a power of two */
	cfg.custom = &fb_new(false)->be;
	assert_int_equal(vnet_new(&n, &cfg, &r.gm, err, sizeof(err)), -EINVAL);
	vnet_free(NULL);
	vrd_exit(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_and_features),
		cmocka_unit_test(test_features_ok_dependencies),
		cmocka_unit_test(test_tx_multi_descriptor),
		cmocka_unit_test(test_tx_header_stripped_without_vnet),
		cmocka_unit_test(test_tx_offload_header_forwarded),
		cmocka_unit_test(test_tx_oversized_dropped),
		cmocka_unit_test(test_tx_writable_descriptor_fails),
		cmocka_unit_test(test_tx_short_header_fails),
		cmocka_unit_test(test_tx_backpressure_keeps_order),
		cmocka_unit_test(test_tx_too_scattered_for_writev),
		cmocka_unit_test(test_tx_budget_bounded),
		cmocka_unit_test(test_rx_single_buffers),
		cmocka_unit_test(test_rx_chain_of_several_descriptors),
		cmocka_unit_test(test_rx_mergeable),
		cmocka_unit_test(test_rx_mergeable_waits_for_more_buffers),
		cmocka_unit_test(test_rx_no_buffers_backend_not_read),
		cmocka_unit_test(test_rx_no_buffers_with_loop),
		cmocka_unit_test(test_rx_dead_backend_not_polled),
		cmocka_unit_test(test_rx_buffer_too_small_dropped),
		cmocka_unit_test(test_rx_readonly_chain_fails),
		cmocka_unit_test(test_rx_mergeable_tiny_buffer_fails),
		cmocka_unit_test(test_rx_offload_header),
		cmocka_unit_test(test_mtu),
		cmocka_unit_test(test_reset_clears_held_frame),
		cmocka_unit_test(test_kick_from_other_thread_is_deferred),
		cmocka_unit_test(test_user_backend_end_to_end),
		cmocka_unit_test(test_rx_bulk_event_idx),
		cmocka_unit_test(test_rx_bulk_flags),
		cmocka_unit_test(test_rx_bulk_event_idx_small_ring),
		cmocka_unit_test(test_rx_bulk_flags_large_ring),
		cmocka_unit_test(test_tx_bulk_event_idx),
		cmocka_unit_test(test_tx_bulk_flags),
		cmocka_unit_test(test_tx_tso_largest_frame),
		cmocka_unit_test(test_rx_tso_largest_frame_mergeable),
		cmocka_unit_test(test_user_backend_queue_drains_without_traffic),
		cmocka_unit_test(test_parse_spec),
		cmocka_unit_test(test_new_rejects_bad_config),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

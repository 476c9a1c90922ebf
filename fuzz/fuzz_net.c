/*
 * Fuzz virtio-net: the input is a hostile driver's guest RAM (both rings and
 * every buffer they point at) plus the frames a backend hands the device.
 *
 * Layout: a 32-byte header, then an image of the start of a 64 KiB RAM.
 *   [0]      bit 0 backend with vnet header, 1 MRG_RXBUF, 2 CSUM + HOST_TSO4/6,
 *            3 GUEST_CSUM + GUEST_TSO4/6 (2 and 3 only with a vnet header),
 *            4 EVENT_IDX, 5 INDIRECT_DESC, 6 first send gets -EAGAIN,
 *            7 reset and re-activate half way
 *   [1], [2] receive / transmit queue size: 1 << (b % 7)
 *   [3]      number of frames waiting in the backend (b % 9)
 *   [4..19]  their lengths, little-endian u16 each (mod 65562+1)
 *   [20..31] the vnet header in front of each (vnet backends)
 * RAM (guest address 0x10000): receive descriptors at +0x000, available ring
 * +0x400, used ring +0x500; transmit at +0x800, +0xc00, +0xd00; anything the
 * descriptors point at, anywhere in RAM. The bytes at +0xf10..+0xfff, which
 * no ring uses, also go to vnet_parse_spec() as a --net argument.
 *
 * Besides the sanitizers the harness checks what the rest of the VMM relies
 * on: the backend never gets an oversized or headerless frame, and the
 * device never reports more frames delivered than the backend had.
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/virtio/net.h"
#include "util/log.h"
#include "mem/gm_test.h"

#include "fakes.h"

#define FN_GPA 0x10000ull
#define FN_RAM (64u << 10)
#define FN_HDR 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Frames for the device: a fixed pattern, the input's vnet header in front. */
static uint8_t fn_payload[NET_VNET_HDR_LEN + NET_MAX_FRAME];
static uint8_t fn_frame[NET_VNET_HDR_LEN + NET_MAX_FRAME];

static uint8_t *ram;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Guest-triggered warnings are expected by the thousand; keep the log readable. */
	log_set_level(LOG_ERROR);
	ram = malloc(FN_RAM);
	if (!ram)
		abort();
	for (size_t i = 0; i < sizeof(fn_payload); i++)
		fn_payload[i] = (uint8_t)(i * 13 + 7);
	memcpy(fn_frame, fn_payload, sizeof(fn_frame));
	return 0;
}

static void fn_notify_queue(struct virtio_dev *d, unsigned q)
{
}

static void fn_notify_config(struct virtio_dev *d)
{
}

static const struct virtio_transport_ops fn_tops = {
	.notify_queue = fn_notify_queue,
	.notify_config = fn_notify_config,
};

static void fn_program(struct virtio_dev *d, unsigned q, uint64_t base, uint8_t size_sel)
{
	struct virtq *vq = &d->queues[q];

	vq->size = (uint16_t)(1u << (size_sel % 7));
	vq->desc_gpa = FN_GPA + base;
	vq->avail_gpa = FN_GPA + base + 0x400;
	vq->used_gpa = FN_GPA + base + 0x500;
	vq->enabled = true;
}

static bool fn_start(struct virtio_dev *d, const uint8_t *h)
{
	uint64_t f = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_NET_F_MAC);
	uint8_t s = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	if (h[0] & 2)
		f |= VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF);
	if ((h[0] & 4) && (h[0] & 1))
		f |= VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) |
		     VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6);
	if ((h[0] & 8) && (h[0] & 1))
		f |= VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) |
		     VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6);
	if (h[0] & 16)
		f |= VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
	if (h[0] & 32)
		f |= VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
	fn_program(d, NET_RX_QUEUE, 0x000, h[1]);
	fn_program(d, NET_TX_QUEUE, 0x800, h[2]);
	virtio_set_driver_features(d, 0, (uint32_t)f);
	virtio_set_driver_features(d, 1, (uint32_t)(f >> 32));
	virtio_set_status(d, s);
	virtio_set_status(d, s | VIRTIO_STATUS_FEATURES_OK);
	virtio_set_status(d, s | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	return d->status & VIRTIO_STATUS_DRIVER_OK;
}

static void fn_run(struct virtio_net *n, struct virtio_dev *d)
{
	uint8_t cfg[8];

	/* Config space as a transport reads it: every in-bounds offset and size. */
	for (uint32_t off = 0; off < d->config_size; off++)
		for (uint32_t len = 1; len <= 4 && off + len <= d->config_size; len *= 2)
			d->ops->config_read(d, off, cfg, len);
	d->ops->queue_notify(d, NET_TX_QUEUE);
	vnet_poll(n);
	d->ops->queue_notify(d, NET_RX_QUEUE);
	vnet_poll(n);
	d->ops->queue_notify(d, NET_TX_QUEUE);
	d->ops->queue_notify(d, 7);    /* no such queue */
}

/* The --net parser: a failure comes with a one-line message, a success with a usable config. */
static void fn_parse(const uint8_t *p, size_t len)
{
	struct vnet_config cfg;
	char spec[256], err[256] = "";

	memcpy(spec, p, len);
	spec[len] = '\0';
	if (vnet_parse_spec(spec, &cfg, err, sizeof(err)) < 0) {
		if (!err[0] || strchr(err, '\n'))
			abort();
		return;
	}
	if (cfg.backend != NET_BACKEND_TAP && cfg.backend != NET_BACKEND_USER)
		abort();
	if ((cfg.mac[0] & 1) || cfg.nr_hostfwd > NET_MAX_HOSTFWD || memchr(cfg.ifname, 0, sizeof(cfg.ifname)) == NULL)
		abort();
	if (cfg.backend == NET_BACKEND_TAP && !cfg.ifname[0])
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vnet_config cfg = { .mac = { 0x52, 0x54, 0, 1, 2, 3 }, .queue_size = 64 };
	struct guest_mem gm;
	struct virtio_net *n;
	struct virtio_dev *d;
	struct vnet_stats st;
	struct fake_be *be;
	unsigned nframes;
	uint8_t h[FN_HDR] = { 0 };
	char err[256];

	memcpy(h, data, size < FN_HDR ? size : FN_HDR);
	memset(ram, 0, FN_RAM);
	if (size > FN_HDR)
		memcpy(ram, data + FN_HDR, size - FN_HDR < FN_RAM ? size - FN_HDR : FN_RAM);
	gm_init_fake(&gm, FN_GPA, ram, FN_RAM);
	fn_parse(ram + 0xf10, 0x1000 - 0xf10);

	be = fb_new(h[0] & 1);    /* the shared fake (tests/unit/fakes.c) */
	be->record = false;       /* count and touch every byte; no copies */
	be->strict = true;        /* sane frame sizes, 1..1025 iovecs */
	be->max_iov = 1025;
	be->oversize_ok = true;   /* a frame larger than the receive buffers is -EMSGSIZE */
	be->eagain = (h[0] & 64) ? 1 : 0;
	memcpy(fn_frame, be->be.vnet_hdr ? h + 20 : fn_payload, NET_VNET_HDR_LEN);
	nframes = h[3] % 9;
	for (unsigned i = 0; i < nframes; i++)
		fb_push(be, fn_frame, (size_t)(h[4 + 2 * i] | h[5 + 2 * i] << 8) % (NET_VNET_HDR_LEN + NET_MAX_FRAME + 1));
	cfg.custom = &be->be;
	if (vnet_new(&n, &cfg, &gm, err, sizeof(err)) < 0)
		abort();
	d = vnet_virtio(n);
	d->tops = &fn_tops;

	if (fn_start(d, h)) {
		fn_run(n, d);
		if (h[0] & 128) {
			/* A reset with whatever is in flight, then the same rings again. */
			virtio_set_status(d, 0);
			vnet_poll(n);
			if (fn_start(d, h))
				fn_run(n, d);
		}
	}
	vnet_get_stats(n, &st);
	if (st.rx_packets + st.rx_dropped > nframes)
		abort();
	vnet_free(n);
	return 0;
}

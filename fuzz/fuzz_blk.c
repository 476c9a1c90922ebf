/*
 * Fuzz the virtio-blk request path: the input is the guest's RAM (rings,
 * descriptors, request headers, segment lists and data buffers, all
 * guest-controlled) plus a few bytes choosing features and the queue size.
 * Each run builds a device on a small memfd image with the sync engine,
 * negotiates, kicks queue 0, lets the I/O side run, resets and frees it.
 *
 * Input layout:
 *   [0] flags: bit 0 read-only disk, bit 1 EVENT_IDX, bit 2 INDIRECT_DESC,
 *       bit 3 FLUSH, bit 4 DISCARD, bit 5 WRITE_ZEROES (negotiated),
 *       bits 6-7: extra kicks (0-3)
 *   [1] bits 0-2: log2 of the queue size (1 to 128 entries); bits 3-5: that
 *       many backend operations fail with EIO; bit 6: host transfers capped
 *       at 512 bytes (short reads and writes)
 *   [2...] guest RAM from address 0 (FUZZ_RAM bytes, zero-filled)
 * Ring addresses: descriptors at 0x0, available ring at 0x800, used ring at 0xa00.
 *
 * Besides ASan/UBSan, the harness checks that the device never returns more
 * chains than it took from the available ring.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "devices/virtio/blk.h"
#include "util/log.h"
#include "mem/gm_test.h"
#include "backends/block_test.h"

#define FUZZ_RAM   (64u << 10)
#define FUZZ_IMG   (64u << 10)
#define DESC_GPA   0x0
#define AVAIL_GPA  0x800
#define USED_GPA   0xa00

static char img_path[64];
static uint8_t *ram;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_notify_queue(struct virtio_dev *d, unsigned q)
{
}

static void fz_notify_config(struct virtio_dev *d)
{
}

static const struct virtio_transport_ops fz_tops = {
	.notify_queue = fz_notify_queue,
	.notify_config = fz_notify_config,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int fd = memfd_create("kestrel-fuzz-blk", MFD_CLOEXEC);

	(void)argc;
	(void)argv;
	if (fd < 0 || ftruncate(fd, FUZZ_IMG) < 0)
		abort();
	/* The image stays open for the whole run; each device opens it by path. */
	snprintf(img_path, sizeof(img_path), "/proc/self/fd/%d", fd);
	ram = malloc(FUZZ_RAM);
	if (!ram)
		abort();
	log_set_level(LOG_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct blk_config cfg;
	struct guest_mem gm;
	struct virtio_blk *b;
	struct virtio_dev *d;
	struct virtq *q;
	uint64_t feat;
	uint8_t flags, st;
	char err[256];
	unsigned kicks;

	if (size < 2)
		return 0;
	flags = data[0];
	memset(ram, 0, FUZZ_RAM);
	memcpy(ram, data + 2, size - 2 < FUZZ_RAM ? size - 2 : FUZZ_RAM);
	gm_init_fake(&gm, 0, ram, FUZZ_RAM);

	blk_config_init(&cfg);
	snprintf(cfg.path, sizeof(cfg.path), "%s", img_path);
	cfg.read_only = flags & 1;
	cfg.engine = BLOCK_ENGINE_SYNC;
	cfg.queue_size = 128;
	if (blk_new(&b, &cfg, &gm, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_blk: %s\n", err);
		abort();
	}
	d = blk_virtio(b);
	d->tops = &fz_tops;
	{
		struct block_fault f = {
			.fail_errno = EIO,
			.fail_count = (data[1] >> 3) & 7,
			.max_xfer = (data[1] & 0x40) ? 512 : 0,
		};

		block_set_fault(blk_backend(b), &f);
	}

	feat = VIRTIO_BIT(VIRTIO_F_VERSION_1);
	if (flags & 2)
		feat |= VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
	if (flags & 4)
		feat |= VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
	if (flags & 8)
		feat |= VIRTIO_BIT(9);
	if (flags & 16)
		feat |= VIRTIO_BIT(13);
	if (flags & 32)
		feat |= VIRTIO_BIT(14);
	feat &= d->host_features;
	st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
	virtio_set_status(d, st);
	virtio_set_driver_features(d, 0, (uint32_t)feat);
	virtio_set_driver_features(d, 1, (uint32_t)(feat >> 32));
	st |= VIRTIO_STATUS_FEATURES_OK;
	virtio_set_status(d, st);
	q = &d->queues[0];
	q->size = (uint16_t)(1u << (data[1] & 7));
	q->desc_gpa = DESC_GPA;
	q->avail_gpa = AVAIL_GPA;
	q->used_gpa = USED_GPA;
	q->enabled = true;
	virtio_set_status(d, st | VIRTIO_STATUS_DRIVER_OK);

	kicks = 1 + (flags >> 6);
	for (unsigned i = 0; i < kicks; i++) {
		if (d->status & VIRTIO_STATUS_DRIVER_OK)
			d->ops->queue_notify(d, 0);
		blk_process_completions(b);
		/* Only what was taken comes back, at most a ring's worth in flight. */
		if ((uint16_t)(q->last_avail - q->used_idx) > q->size)
			abort();
	}
	virtio_set_status(d, 0);
	blk_free(b);
	return 0;
}

/*
 * libFuzzer target: a hostile driver against the virtio-mmio transport and
 * the virtio core, with virtio-rng behind it. The input is
 *   u16 RAM length | guest RAM (rings and buffers) | program
 * and each program step is op (1 byte), offset (2), size (1), value (8):
 * register writes and reads anywhere in the 4 KiB window with any size,
 * event-loop turns (kicks reach the device there), and snapshot round
 * trips (what the transport saved must load back into it). After every
 * step the invariants a driver can never break are checked; a crash, a
 * sanitizer report or a broken invariant aborts.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz_common.h"
#include "devices/virtio/rng.h"
#include "loop/loop.h"
#include "snapshot/snap.h"
#include "virtio/mmio.h"
#include "mem/gm_test.h"

#define RAM_GPA  0x100000ull
#define RAM_SIZE 0x10000ull
#define MMIO_BASE 0xd0000000ull

/* Save the transport's state and load it back: kestrel must accept its own snapshot. */
static void round_trip(struct virtio_mmio *vm)
{
	static struct snap_reader r;
	struct snap_writer w;
	struct snap_sec s;
	char err[256];

	snap_writer_init(&w);
	snap_begin(&w, "vdev", 1);
	virtio_mmio_save(vm, &w);
	snap_end(&w);
	if (fz_reader_from_writer(&r, &w, err, sizeof(err)) < 0)
		abort();
	if (snap_find(&r, "vdev", &s) < 0 || virtio_mmio_load(vm, &s, false, err, sizeof(err)) < 0) {
		fprintf(stderr, "own state refused (check): %s\n", err);
		abort();
	}
	if (snap_find(&r, "vdev", &s) < 0 || virtio_mmio_load(vm, &s, true, err, sizeof(err)) < 0 ||
	    snap_sec_end(&s) < 0) {
		fprintf(stderr, "own state refused (apply): %s\n", err);
		abort();
	}
	snap_reader_free(&r);
	snap_writer_free(&w);
}

static void check(const struct virtio_mmio *vm)
{
	const struct virtio_dev *d = vm->vdev;

	if (vm->isr & ~3u)
		abort();
	if (vm->irq.level != (vm->isr != 0))
		abort();   /* the line follows the interrupt status */
	if ((d->status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_NEEDS_RESET)) {
		for (unsigned q = 0; q < d->num_queues; q++) {
			const struct virtq *vq = &d->queues[q];

			if (!vq->enabled || vq->broken)
				continue;
			/* An active queue was validated: a size the device offers, a power of two. */
			if (!vq->gm || !vq->size || vq->size > vq->max_size || (vq->size & (vq->size - 1)))
				abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned sizes[] = { 1, 2, 4, 8 };
	struct msi_host msi = { &fz_msi_ops, NULL };
	struct fz f = { data, size };
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	struct virtio_mmio *vm = calloc(1, sizeof(*vm));
	struct loop *loop = loop_new();
	uint8_t *ram = calloc(1, RAM_SIZE);
	struct guest_mem gm;
	const uint8_t *img;
	size_t ram_len;
	struct bus mmio;

	if (!rng || !vm || !loop || !ram)
		abort();
	fz_routes = 0;
	ram_len = fz_block(&f, &img, fz_take(&f, 2) % (RAM_SIZE + 1));
	memcpy(ram, img, ram_len);
	gm_init_fake(&gm, RAM_GPA, ram, RAM_SIZE);
	if (bus_init(&mmio, "mmio") < 0)
		abort();
	rng_init(rng, &gm);
	if (virtio_mmio_init(vm, &rng->vdev, &msi, loop, MMIO_BASE) < 0)
		abort();
	vm->irq.ops = &fz_irq_ops;
	if (bus_register(&mmio, MMIO_BASE, VMMIO_SIZE, BUS_SZ_ANY, &virtio_mmio_ops, vm, "virtio-mmio") < 0)
		abort();

	for (unsigned steps = 0; f.n >= 4 && steps < 512; steps++) {
		unsigned op = (unsigned)fz_take(&f, 1);
		unsigned off = (unsigned)fz_take(&f, 2) & 0xfff;
		unsigned sz = sizes[fz_take(&f, 1) & 3];
		uint64_t val = fz_take(&f, 8), v;

		switch (op % 5) {
		case 0:
		case 1: /* writes dominate: they are what drives the state machine */
			bus_write(&mmio, MMIO_BASE + off, sz, val);
			break;
		case 2:
			bus_read(&mmio, MMIO_BASE + off, sz, &v);
			if (sz == 4 && off == 0 && v != 0x74726976)
				abort();   /* the magic never changes */
			break;
		case 3: /* the I/O thread handles kicks */
			loop_run_once(loop, 0);
			break;
		case 4:
			round_trip(vm);
			break;
		}
		check(vm);
	}
	virtio_reset(&rng->vdev);
	virtio_mmio_exit(vm);
	loop_free(loop);
	bus_exit(&mmio);
	free(ram);
	free(vm);
	free(rng);
	return 0;
}

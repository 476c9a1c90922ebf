/*
 * libFuzzer target: virtio-console with hostile rings. The console sits
 * behind virtio-mmio as with --console virtio; the input is
 *   u16 RAM length | guest RAM (descriptor tables, rings, buffers) | program
 * and each program step is op (1 byte), offset (2), size (1), value (8):
 * register writes and reads (which set up and kick the queues), event-loop
 * turns (where transmit and receive run), host input of up to 4 KiB (taken
 * from the input), and snapshot round trips of the device. Whatever the
 * rings say, the device must stay inside guest RAM, within its input buffer
 * and account for every byte: output written to the chardev plus input
 * still buffered plus input delivered equals what came in.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz_common.h"
#include "backends/chardev.h"
#include "devices/virtio/console.h"
#include "loop/loop.h"
#include "snapshot/snap.h"
#include "virtio/mmio.h"
#include "mem/gm_test.h"

#define RAM_GPA   0x100000ull
#define RAM_SIZE  0x10000ull
#define MMIO_BASE 0xd0000000ull

static uint64_t out_bytes;

/* Touch every byte written out, so a bad iovec shows up under ASan. */
static void out_write(struct chardev *cd, const uint8_t *buf, size_t len)
{
	volatile uint8_t sink = 0;

	for (size_t i = 0; i < len; i++)
		sink ^= buf[i];
	(void)sink;
	out_bytes += len;
}

static const struct chardev_ops out_ops = { out_write };

static void round_trip(struct virtio_mmio *vm, struct virtio_console *c)
{
	static struct snap_reader r;
	struct snap_writer w;
	struct snap_sec s;
	char err[256];
	size_t rx_len = c->rx_len;

	snap_writer_init(&w);
	snap_begin(&w, "vdev", 1);
	virtio_mmio_save(vm, &w);
	snap_end(&w);
	if (fz_reader_from_writer(&r, &w, err, sizeof(err)) < 0)
		abort();
	if (snap_find(&r, "vdev", &s) < 0 || virtio_mmio_load(vm, &s, true, err, sizeof(err)) < 0 ||
	    snap_sec_end(&s) < 0) {
		fprintf(stderr, "own state refused: %s\n", err);
		abort();
	}
	if (c->rx_len != rx_len)
		abort();   /* buffered host input survives */
	snap_reader_free(&r);
	snap_writer_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned sizes[] = { 1, 2, 4, 8 };
	struct msi_host msi = { &fz_msi_ops, NULL };
	struct chardev out = { .ops = &out_ops, .out_fd = -1, .in_fd = -1 };
	struct fz f = { data, size };
	struct virtio_console *c = calloc(1, sizeof(*c));
	struct virtio_mmio *vm = calloc(1, sizeof(*vm));
	struct loop *loop = loop_new();
	uint8_t *ram = calloc(1, RAM_SIZE);
	uint64_t host_in = 0;
	struct guest_mem gm;
	const uint8_t *img;
	size_t ram_len;
	struct bus mmio;

	if (!c || !vm || !loop || !ram)
		abort();
	fz_routes = 0;
	out_bytes = 0;
	ram_len = fz_block(&f, &img, fz_take(&f, 2) % (RAM_SIZE + 1));
	memcpy(ram, img, ram_len);
	gm_init_fake(&gm, RAM_GPA, ram, RAM_SIZE);
	if (bus_init(&mmio, "mmio") < 0)
		abort();
	vcon_init(c, &gm, &out);
	if (vcon_attach(c, loop) < 0)
		abort();
	if (virtio_mmio_init(vm, &c->vdev, &msi, loop, MMIO_BASE) < 0)
		abort();
	vm->irq.ops = &fz_irq_ops;
	if (bus_register(&mmio, MMIO_BASE, VMMIO_SIZE, BUS_SZ_ANY, &virtio_mmio_ops, vm, "virtio-mmio") < 0)
		abort();

	for (unsigned steps = 0; f.n >= 4 && steps < 512; steps++) {
		unsigned op = (unsigned)fz_take(&f, 1);
		unsigned off = (unsigned)fz_take(&f, 2) & 0xfff;
		unsigned sz = sizes[fz_take(&f, 1) & 3];
		uint64_t val = fz_take(&f, 8), v;
		const uint8_t *in;
		size_t n, took;

		switch (op % 6) {
		case 0:
		case 1:
			bus_write(&mmio, MMIO_BASE + off, sz, val);
			break;
		case 2:
			bus_read(&mmio, MMIO_BASE + off, sz, &v);
			break;
		case 3:
			loop_run_once(loop, 0);
			break;
		case 4: /* host input: what the device cannot buffer must be refused, not lost */
			n = fz_block(&f, &in, val & 0x1fff);
			took = vcon_receive(c, in, n);
			if (took > n || c->rx_len > VCON_RX_BUF)
				abort();
			host_in += took;
			break;
		case 5:
			round_trip(vm, c);
			break;
		}
		if (c->rx_len > VCON_RX_BUF || c->rx_head >= VCON_RX_BUF || vm->isr & ~3u)
			abort();
		/* Input is either still buffered or was delivered to the guest. */
		if (c->rx_bytes + c->rx_len != host_in)
			abort();
		if (c->tx_bytes != out_bytes)
			abort();
	}
	virtio_reset(&c->vdev);
	virtio_mmio_exit(vm);
	vcon_detach(c);
	vcon_exit(c);
	loop_free(loop);
	bus_exit(&mmio);
	free(ram);
	free(vm);
	free(c);
	return 0;
}

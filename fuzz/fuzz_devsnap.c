/*
 * libFuzzer target: each device's snapshot section loader. fuzz_snap only
 * fuzzes the container; here the section payloads themselves are hostile
 * (a state file is user input: it may be damaged or forged). The input is
 *   kind (1 byte) | u16 payload length | payload | u16 RAM length | RAM | program
 * The payload goes to the loader of the device `kind` picks (uart, i8042,
 * rtc, ACPI PM, PCI host, virtio-pci and virtio-mmio with rng, console,
 * blk and net, e1000), set up as the machine sets it up (rig.h). A loader
 * must refuse (with a one-line reason where it gives one) or accept; an
 * accepted state must keep the device within its invariants while the
 * program then drives it (op (1 byte), where (2), size (1), value (8):
 * port and MMIO accesses, event-loop turns, host input, polls) and must
 * survive a save and load of its own.
 */
#include "rig.h"

static void check(struct rig *r)
{
	const struct virtio_dev *d = r->vdev;

	switch (r->kind) {
	case RIG_UART:
		if (r->uart.rx_count > UART_FIFO_SIZE || r->uart.rx_head >= UART_FIFO_SIZE)
			abort();
		break;
	case RIG_I8042:
		if (r->kbd.q_len > I8042_QUEUE || r->kbd.q_head >= I8042_QUEUE)
			abort();
		break;
	case RIG_RTC:
		if (r->rtc.index >= RTC_CMOS_SIZE)
			abort();
		break;
	case RIG_PCI_HOST:
		if (r->host.conf_addr & ~0x80fffffcu)
			abort();
		break;
	case RIG_VMMIO_CONSOLE:
		if (r->con.rx_len > VCON_RX_BUF || r->con.rx_head >= VCON_RX_BUF)
			abort();
		break;
	default:
		break;
	}
	if (!d)
		return;
	if (r->on_mmio && (r->vm.isr & ~3u))
		abort();
	if (r->on_pci) {
		if (r->vp.config_vector != VPCI_NO_VECTOR && r->vp.config_vector >= r->vp.nvectors)
			abort();
		for (unsigned q = 0; q < d->num_queues; q++) {
			uint16_t mv = d->queues[q].msix_vector;

			if (mv != VPCI_NO_VECTOR && mv >= r->vp.nvectors)
				abort();
		}
	}
	if ((d->status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_NEEDS_RESET)) {
		for (unsigned q = 0; q < d->num_queues; q++) {
			const struct virtq *vq = &d->queues[q];

			if (!vq->enabled || vq->broken)
				continue;
			if (!vq->gm || !vq->size || vq->size > vq->max_size || (vq->size & (vq->size - 1)) ||
			    (uint16_t)(vq->last_avail - vq->used_idx) > vq->size) {
				fprintf(stderr, "%s: queue %u active with gm %p size %u/%u last_avail %u used_idx %u\n",
					rig_names[r->kind], q, (void *)vq->gm, vq->size, vq->max_size,
					vq->last_avail, vq->used_idx);
				abort();
			}
		}
	}
}

/* What the device saves now must load back into it. */
static void round_trip(struct rig *r)
{
	static struct snap_reader rd;
	struct snap_writer w;
	struct snap_sec s;
	char err[256];

	snap_writer_init(&w);
	snap_begin(&w, "dev", rig_version(r->kind));
	rig_save(r, &w);
	snap_end(&w);
	if (fz_reader_from_writer(&rd, &w, err, sizeof(err)) < 0 || snap_find(&rd, "dev", &s) < 0)
		abort();
	if (rig_load(r, &s) < 0) {
		fprintf(stderr, "%s: the device refused its own state\n", rig_names[r->kind]);
		abort();
	}
	snap_reader_free(&rd);
	snap_writer_free(&w);
	if (r->kind == RIG_E1000)
		e1000_resume_work(r->e1000);
}

static const uint16_t ports[] = {
	0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe, 0x3ff, 0x60, 0x64, 0x70, 0x71,
	0x600, 0x601, 0xcf8, 0xcf9, 0xcfc, 0xcfd, 0xcfe, 0xcff, RIG_IOBAR, RIG_IOBAR + 4,
};

static void step(struct rig *r, struct fz *f)
{
	static const unsigned sizes[] = { 1, 2, 4, 8 };
	static const uint64_t regions[] = { RIG_MMIO_BASE, RIG_BAR0, RIG_BAR2, LAYOUT_ECAM_START };
	unsigned op = (unsigned)fz_take(f, 1);
	unsigned where = (unsigned)fz_take(f, 2);
	unsigned szb = (unsigned)fz_take(f, 1);
	unsigned sz = sizes[szb & 3];
	uint64_t val = fz_take(f, 8), v;
	unsigned port = where % 256 < sizeof(ports) / sizeof(ports[0]) ? ports[where % 256] : where;
	uint64_t addr = regions[(szb >> 2) & 3] + (where & 0x1ffff);
	uint8_t bytes[8];

	switch (op % 8) {
	case 0: bus_write(&r->pio, port, sz, val); break;
	case 1: bus_read(&r->pio, port, sz, &v); break;
	case 2: bus_write(&r->mmio, addr, sz, val); break;
	case 3: bus_read(&r->mmio, addr, sz, &v); break;
	case 4: loop_run_once(r->loop, 0); break;
	case 5: /* host input */
		memcpy(bytes, &val, 8);
		if (r->kind == RIG_UART)
			uart_receive(&r->uart, bytes, 1 + szb % 8);
		else if (r->kind == RIG_I8042)
			i8042_kbd_input(&r->kbd, bytes, 1 + szb % 8);
		else if (r->kind == RIG_VMMIO_CONSOLE)
			vcon_receive(&r->con, bytes, 1 + szb % 8);
		break;
	case 6:
		if (r->kind == RIG_E1000)
			e1000_poll(r->e1000);
		else
			loop_run_once(r->loop, 0);
		break;
	case 7:
		round_trip(r);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	enum rig_kind kind = (enum rig_kind)(fz_take(&f, 1) % RIG_KINDS);
	size_t want = (size_t)fz_take(&f, 2);
	struct rig *r = malloc(sizeof(*r));
	const uint8_t *payload;
	struct snap_sec s;
	size_t len;

	if (!r)
		abort();
	len = fz_block(&f, &payload, want);
	rig_init(r, kind);
	/* Guest RAM: the rings the restored queues point into. */
	{
		const uint8_t *img;
		size_t n = fz_block(&f, &img, fz_take(&f, 2));

		memcpy(r->ram, img, n);
	}
	s = (struct snap_sec){ .name = "fuzz", .version = rig_version(kind), .p = payload, .len = len };
	if (rig_load(r, &s) == 0) {
		if (r->kind == RIG_E1000)
			e1000_resume_work(r->e1000);
		check(r);
		for (unsigned n = 0; f.n >= 4 && n < 256; n++) {
			step(r, &f);
			check(r);
		}
	}
	rig_exit(r);
	free(r);
	return 0;
}

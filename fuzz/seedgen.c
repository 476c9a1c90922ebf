/*
 * Seed corpora for the fuzz targets: small valid inputs, so the fuzzer
 * starts past the magic checks: synthetic kernels, a state file, drivers
 * that bring virtio devices up (as harness programs), a tour of the legacy
 * ports, and each device's snapshot section as its own save function
 * writes it. Usage: fuzz_seedgen TARGET DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot_images.h"      /* tests/unit: synthetic bzImage and ELF builders */
#include "rig.h"

static int put(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		return -1;
	}
	return 0;
}

static int seeds_boot(const char *dir)
{
	struct ti_bz o = ti_bz_default();
	struct ti_seg segs[2] = {
		{ 0xffffffff81000000ull, 0x1000000, 0x100, 0x400 },
		{ 0xffffffff81100000ull, 0x1100000, 0x80, 0x80 },
	};
	uint8_t *img;
	size_t len = 0;
	int rc = 0;

	o.pm_len = 1024;
	o.init_size = 1u << 20;      /* fits the harness's 18 MiB RAM as well */
	img = ti_bz_build(&o, &len);
	rc |= !img || put(dir, "bzimage", img, len);
	free(img);

	o.initrd_addr_max = 0x11fffff;
	o.setup_sects = 0;
	img = ti_bz_build(&o, &len);
	rc |= !img || put(dir, "bzimage-lowmax", img, len);
	free(img);

	img = ti_elf_build(0xffffffff81000000ull, segs, 2, 1, 0x1000010, &len);
	rc |= !img || put(dir, "elf-pvh", img, len);
	free(img);

	img = ti_elf_build(0xffffffff81100010ull, segs, 2, 0, 0, &len);
	rc |= !img || put(dir, "elf64", img, len);
	free(img);
	return rc ? -1 : 0;
}

static int seeds_snap(const char *dir)
{
	struct snap_writer w;
	char path[4096], err[256];
	int rc;

	snap_writer_init(&w);
	snap_begin(&w, "machine", 1);
	snap_put_u32(&w, 2);
	snap_put_u64(&w, 256ull << 20);
	snap_put_str(&w, "disk.img,ro");
	snap_put_str(&w, NULL);
	snap_end(&w);
	snap_begin(&w, "uart.com1", 1);
	snap_put_u8(&w, 0x0f);
	snap_put_bool(&w, true);
	snap_end(&w);
	/* The memory section (snapshot/memfile.c): RAM, kind, complete, generation, SHA-256, pages. */
	snap_begin(&w, "memory", 2);
	snap_put_u64(&w, 256ull << 20);
	snap_put_u32(&w, 1);
	snap_put_bool(&w, true);
	for (unsigned i = 0; i < 16 + 32; i++)
		snap_put_u8(&w, (uint8_t)(i * 37));
	snap_put_u64(&w, 100);
	snap_end(&w);
	snprintf(path, sizeof(path), "%s/state", dir);
	rc = snap_writer_save(&w, path, err, sizeof(err));
	if (rc)
		fprintf(stderr, "%s\n", err);
	snap_writer_free(&w);
	return rc;
}

/* ---- virtio drivers, written once for the harness programs and the rig ---- */

/* A growing byte buffer. */
struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_le(struct buf *b, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t c = i < 8 ? (uint8_t)(v >> (8 * i)) : 0;

		buf_put(b, &c, 1);
	}
}

/*
 * Where a driver's accesses go: `emit` appends one step to a harness
 * program, or `rig` performs it on a rig. addr is absolute (MMIO), or a
 * config-space offset of slot RIG_SLOT when cfg is set.
 */
struct drv {
	struct buf *prog;            /* harness program, or NULL */
	void (*emit)(struct drv *d, bool cfg, uint64_t addr, unsigned size, uint64_t val);
	struct rig *rig;
	uint64_t base;               /* virtio-mmio window or BAR0 */
	bool pci;
};

static void drv_rig(struct drv *d, bool cfg, uint64_t addr, unsigned size, uint64_t val)
{
	if (cfg)
		pci_host_cfg_write(&d->rig->host, 0, RIG_SLOT, 0, (unsigned)addr, size, (uint32_t)val);
	else
		bus_write(&d->rig->mmio, addr, size, val);
}

static unsigned size_idx(unsigned size)
{
	return size == 1 ? 0 : size == 2 ? 1 : size == 4 ? 2 : 3;
}

/* fuzz_vmmio / fuzz_console step: op, offset (2), size index (1), value (8); op 0 writes. */
static void drv_vmmio(struct drv *d, bool cfg, uint64_t addr, unsigned size, uint64_t val)
{
	buf_le(d->prog, 0, 1);
	buf_le(d->prog, addr - d->base, 2);
	buf_le(d->prog, size_idx(size), 1);
	buf_le(d->prog, val, 8);
}

/* fuzz_vpci step: op (0 BAR0 write, 4 config write), size index, offset (2), value (8). */
static void drv_vpci(struct drv *d, bool cfg, uint64_t addr, unsigned size, uint64_t val)
{
	buf_le(d->prog, cfg ? 4 : 0, 1);
	buf_le(d->prog, size_idx(size), 1);
	buf_le(d->prog, cfg ? addr : addr - d->base, 2);
	buf_le(d->prog, val, 8);
}

#define QSTRIDE   0x3000ull   /* each queue's rings in guest RAM */
#define QSIZE     8
#define DATA_OFF  0xc000ull

/* Rings for queue q in a RAM image: one chain, a readable buffer then a writable one. */
static void rings(uint8_t *ram, unsigned q, const void *out, uint32_t out_len, uint32_t in_len)
{
	uint8_t *desc = ram + q * QSTRIDE, *avail = desc + 0x800;
	uint64_t data = RIG_RAM_GPA + DATA_OFF + q * 0x1000;
	uint16_t one = 1;

	memcpy(ram + DATA_OFF + q * 0x1000, out, out_len);
	/* desc 0: out, next 1; desc 1: in */
	memcpy(desc, &data, 8);
	memcpy(desc + 8, &out_len, 4);
	desc[12] = 1;   /* NEXT */
	desc[14] = 1;
	data += 0x400;
	memcpy(desc + 16, &data, 8);
	memcpy(desc + 24, &in_len, 4);
	desc[28] = 2;   /* WRITE */
	memcpy(avail + 2, &one, 2);   /* idx 1, ring[0] = 0 */
}

static void drv_setup(struct drv *d, unsigned nqueues)
{
	uint64_t b = d->base;

	if (d->pci) {
		d->emit(d, true, PCI_BAR0, 4, RIG_BAR0);
		d->emit(d, true, PCI_BAR0 + 4, 4, 0);
		d->emit(d, true, PCI_BAR0 + 8, 4, RIG_BAR2);
		d->emit(d, true, PCI_BAR0 + 12, 4, 0);
		d->emit(d, true, PCI_COMMAND, 2, PCI_CMD_MEM | PCI_CMD_MASTER);
		d->emit(d, false, b + 0x14, 1, 1);
		d->emit(d, false, b + 0x14, 1, 3);
		d->emit(d, false, b + 0x08, 4, 1);
		d->emit(d, false, b + 0x0c, 4, 1);          /* VERSION_1 */
		d->emit(d, false, b + 0x14, 1, 0xb);
		for (unsigned q = 0; q < nqueues; q++) {
			uint64_t ring = RIG_RAM_GPA + q * QSTRIDE;

			d->emit(d, false, b + 0x16, 2, q);
			d->emit(d, false, b + 0x18, 2, QSIZE);
			d->emit(d, false, b + 0x20, 8, ring);
			d->emit(d, false, b + 0x28, 8, ring + 0x800);
			d->emit(d, false, b + 0x30, 8, ring + 0xc00);
			d->emit(d, false, b + 0x1c, 2, 1);
		}
		d->emit(d, false, b + 0x14, 1, 0xf);
		for (unsigned q = 0; q < nqueues; q++)
			d->emit(d, false, b + VPCI_NOTIFY_OFF + q * VPCI_NOTIFY_MULT, 2, q);
		return;
	}
	d->emit(d, false, b + 0x70, 4, 1);
	d->emit(d, false, b + 0x70, 4, 3);
	d->emit(d, false, b + 0x24, 4, 1);
	d->emit(d, false, b + 0x20, 4, 1);                  /* VERSION_1 */
	d->emit(d, false, b + 0x70, 4, 0xb);
	for (unsigned q = 0; q < nqueues; q++) {
		uint64_t ring = RIG_RAM_GPA + q * QSTRIDE;

		d->emit(d, false, b + 0x30, 4, q);
		d->emit(d, false, b + 0x38, 4, QSIZE);
		d->emit(d, false, b + 0x80, 4, (uint32_t)ring);
		d->emit(d, false, b + 0x90, 4, (uint32_t)(ring + 0x800));
		d->emit(d, false, b + 0xa0, 4, (uint32_t)(ring + 0xc00));
		d->emit(d, false, b + 0x44, 4, 1);
	}
	d->emit(d, false, b + 0x70, 4, 0xf);
	for (unsigned q = 0; q < nqueues; q++)
		d->emit(d, false, b + 0x50, 4, q);
}

/* RAM with a chain on each of the first nqueues queues. */
static void ram_image(uint8_t *ram, unsigned nqueues)
{
	static const uint8_t out[64] = "hello, kestrel\n";

	for (unsigned q = 0; q < nqueues; q++)
		rings(ram, q, out, sizeof(out), 512);
}

/* A harness input: u16 RAM length | RAM | program (fuzz_vmmio, fuzz_console). */
static int seed_mmio_prog(const char *dir, const char *name, unsigned nqueues, bool host_input)
{
	uint8_t *ram = calloc(1, DATA_OFF + 0x4000);
	struct buf prog = { 0 }, out = { 0 };
	struct drv d = { .prog = &prog, .emit = drv_vmmio, .base = 0xd0000000ull };
	int rc;

	drv_setup(&d, nqueues);
	for (unsigned i = 0; i < 4; i++) {   /* loop turns: the kicks reach the device */
		buf_le(&prog, 3, 1);
		buf_le(&prog, 0, 11);
	}
	if (host_input) {                    /* console: 16 bytes of host input, then a turn */
		buf_le(&prog, 4, 1);
		buf_le(&prog, 0, 3);
		buf_le(&prog, 16, 8);
		buf_put(&prog, "typed on the host", 16);
		buf_le(&prog, 3, 1);
		buf_le(&prog, 0, 11);
	}
	ram_image(ram, nqueues);
	buf_le(&out, DATA_OFF + 0x4000, 2);
	buf_put(&out, ram, DATA_OFF + 0x4000);
	buf_put(&out, prog.p, prog.len);
	rc = put(dir, name, out.p, out.len);
	free(ram);
	free(prog.p);
	free(out.p);
	return rc;
}

/* fuzz_vpci: the RAM is the first half of the input, the program the second. */
static int seeds_vpci(const char *dir)
{
	uint8_t *ram;
	struct buf prog = { 0 }, out = { 0 };
	struct drv d = { .prog = &prog, .emit = drv_vpci, .base = 0xc0000000ull, .pci = true };
	size_t ram_len = DATA_OFF + 0x1000;
	int rc;

	drv_setup(&d, 1);
	while (prog.len < ram_len) {         /* loop turns pad the program to the RAM's length */
		buf_le(&prog, 6, 1);
		buf_le(&prog, 0, 11);
	}
	ram = calloc(1, prog.len);
	ram_image(ram, 1);
	buf_put(&out, ram, prog.len);
	buf_put(&out, prog.p, prog.len);
	rc = put(dir, "driver-ok", out.p, out.len);
	free(ram);
	free(prog.p);
	free(out.p);
	return rc;
}

/* fuzz_legacy step: op, where (2), size byte, value (4). */
static void leg(struct buf *b, unsigned op, unsigned where, unsigned szb, uint32_t val)
{
	buf_le(b, op, 1);
	buf_le(b, where, 2);
	buf_le(b, szb, 1);
	buf_le(b, val, 4);
}

static int seeds_legacy(const char *dir)
{
	struct buf b = { 0 };
	int rc;

	/* UART: 8N1 at 115200, FIFOs on, interrupts on; a byte out, host input, read it back. */
	leg(&b, 0, 3, 0, 0x80); leg(&b, 0, 0, 0, 1); leg(&b, 0, 1, 0, 0); leg(&b, 0, 3, 0, 3);
	leg(&b, 0, 2, 0, 0xc7); leg(&b, 0, 1, 0, 0xf); leg(&b, 0, 4, 0, 0xb); leg(&b, 0, 0, 0, 'k');
	leg(&b, 6, 0x4241, 3, 0x44434241); leg(&b, 1, 5, 0, 0); leg(&b, 1, 0, 0, 0); leg(&b, 1, 2, 0, 0);
	/* i8042: read and write the command byte, self test, keyboard echo and reset, input. */
	leg(&b, 0, 9, 0, 0x20); leg(&b, 1, 8, 0, 0); leg(&b, 0, 9, 0, 0x60); leg(&b, 0, 8, 0, 0x47);
	leg(&b, 0, 9, 0, 0xaa); leg(&b, 1, 8, 0, 0); leg(&b, 0, 8, 0, 0xee); leg(&b, 1, 8, 0, 0);
	leg(&b, 0, 8, 0, 0xff); leg(&b, 6, 0x1c, 4, 0x9c1c); leg(&b, 1, 9, 0, 0); leg(&b, 1, 8, 0, 0);
	/* RTC: read the clock, set binary mode and the year, read CMOS memory size. */
	leg(&b, 0, 10, 0, 0x00); leg(&b, 1, 11, 0, 0); leg(&b, 0, 10, 0, 0x0b); leg(&b, 0, 11, 0, 0x06);
	leg(&b, 0, 10, 0, 0x09); leg(&b, 0, 11, 0, 30); leg(&b, 1, 11, 0, 0); leg(&b, 0, 10, 0, 0x34);
	leg(&b, 1, 11, 0, 0);
	/* ACPI PM: status read, a sleep type that is not S5. */
	leg(&b, 1, 13, 0, 0); leg(&b, 0, 12, 0, 0x0c);
	/* Mechanism #1: vendor of slot 0..2, then the dummy's BARs and decoding. */
	leg(&b, 0, 14, 2, 0x80000000); leg(&b, 1, 18, 2, 0);
	leg(&b, 0, 14, 2, 0x80000800); leg(&b, 1, 18, 2, 0);
	leg(&b, 0, 14, 2, 0x80001010); leg(&b, 0, 18, 2, 0xffffffff); leg(&b, 1, 18, 2, 0);
	leg(&b, 0, 18, 2, 0xc100);
	leg(&b, 0, 14, 2, 0x80001014); leg(&b, 0, 18, 2, 0xc2000000);
	leg(&b, 0, 14, 2, 0x80001004); leg(&b, 0, 18, 1, 0x7);
	leg(&b, 1, 0xc104, 2, 0); leg(&b, 5, 0x10, 2, 0xc2000);
	/* ECAM: the virtio function's BARs over the dummy's, then decoding on. */
	leg(&b, 3, 0x8000, 2, 0); leg(&b, 2, 0x8010, 2, 0xc2000000); leg(&b, 2, 0x8014, 2, 0);
	leg(&b, 2, 0x8004, 1, 0x6); leg(&b, 3, 0x8010, 2, 0); leg(&b, 3, 0x0000, 2, 0);
	leg(&b, 2, 0x0010, 2, 0xffffffff); leg(&b, 3, 0xf000, 2, 0);
	rc = put(dir, "tour", b.p, b.len);
	free(b.p);
	return rc;
}

/* fuzz_devsnap: kind | u16 len | section payload | u16 RAM length | RAM | program. */
static int seeds_devsnap(const char *dir)
{
	int rc = 0;

	for (unsigned k = 0; k < RIG_KINDS; k++) {
		struct rig *r = malloc(sizeof(*r));
		struct snap_writer w;
		struct buf out = { 0 };
		static struct snap_reader rd;
		struct snap_sec s;
		char err[256];
		unsigned nq = 0;

		if (!r)
			return -1;
		rig_init(r, (enum rig_kind)k);
		if (r->vdev) {
			struct drv d = { .emit = drv_rig, .rig = r, .pci = r->on_pci,
					 .base = r->on_pci ? RIG_BAR0 : RIG_MMIO_BASE };

			nq = r->vdev->num_queues < 3 ? r->vdev->num_queues : 2;
			ram_image(r->ram, nq);
			if (k == RIG_VPCI_NET || k == RIG_VMMIO_NET)
				r->ram[1 * QSTRIDE + 12] = 0;   /* transmit: the readable buffer alone */
			drv_setup(&d, nq);
			for (unsigned i = 0; i < 4; i++)
				loop_run_once(r->loop, 0);
		} else if (k == RIG_UART) {
			uart_receive(&r->uart, (const uint8_t *)"abc", 3);
		} else if (k == RIG_I8042) {
			i8042_kbd_input(&r->kbd, (const uint8_t *)"\x1c\x9c", 2);
		} else if (k == RIG_E1000) {
			pci_host_cfg_write(&r->host, 0, RIG_SLOT, 0, PCI_BAR0, 4, RIG_BAR0);
			pci_host_cfg_write(&r->host, 0, RIG_SLOT, 0, PCI_BAR0 + 4, 4, RIG_IOBAR);
			pci_host_cfg_write(&r->host, 0, RIG_SLOT, 0, PCI_COMMAND, 2, 7);
		}
		snap_writer_init(&w);
		snap_begin(&w, "dev", rig_version((enum rig_kind)k));
		rig_save(r, &w);
		snap_end(&w);
		if (fz_reader_from_writer(&rd, &w, err, sizeof(err)) < 0 ||
		    snap_find(&rd, "dev", &s) < 0) {
			fprintf(stderr, "%s: %s\n", rig_names[k], w.oom ? "out of memory" : err);
			abort();
		}
		buf_le(&out, k, 1);
		buf_le(&out, s.len, 2);
		buf_put(&out, s.p, s.len);
		buf_le(&out, nq ? DATA_OFF + 0x3000 : 0, 2);
		buf_put(&out, r->ram, nq ? DATA_OFF + 0x3000 : 0);
		for (unsigned i = 0; i < 4; i++) {   /* loop turns, then a save and load of its own */
			buf_le(&out, 4, 1);
			buf_le(&out, 0, 11);
		}
		buf_le(&out, 7, 1);
		buf_le(&out, 0, 11);
		rc |= put(dir, rig_names[k], out.p, out.len);
		free(out.p);
		snap_reader_free(&rd);
		snap_writer_free(&w);
		rig_exit(r);
		free(r);
	}
	return rc ? -1 : 0;
}

int main(int argc, char **argv)
{
	log_set_level(LOG_ERROR);   /* the devices' notes on the seeds' drivers are not news */
	if (argc != 3) {
		fprintf(stderr, "usage: %s TARGET DIR\n", argv[0]);
		return 2;
	}
	if (strcmp(argv[1], "boot") == 0)
		return seeds_boot(argv[2]) ? 1 : 0;
	if (strcmp(argv[1], "snap") == 0)
		return seeds_snap(argv[2]) ? 1 : 0;
	if (strcmp(argv[1], "vmmio") == 0)
		return seed_mmio_prog(argv[2], "driver-ok", 1, false) ? 1 : 0;
	if (strcmp(argv[1], "console") == 0)
		return seed_mmio_prog(argv[2], "driver-ok", 2, true) ? 1 : 0;
	if (strcmp(argv[1], "vpci") == 0)
		return seeds_vpci(argv[2]) ? 1 : 0;
	if (strcmp(argv[1], "legacy") == 0)
		return seeds_legacy(argv[2]) ? 1 : 0;
	if (strcmp(argv[1], "devsnap") == 0)
		return seeds_devsnap(argv[2]) ? 1 : 0;
	/* A target without generated seeds starts from fuzz/corpus/<name> or nothing. */
	return 0;
}

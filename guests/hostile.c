/* SPDX-License-Identifier: MIT */
/*
 * guest-hostile: a guest that throws garbage at every port and at a sample
 * of the physical address space, to show that the VMM survives it. The
 * sweeps run at CPL3 (native speed on the development host; every access is
 * still one exit) with the TSS I/O bitmap allowing all ports.
 *
 * What it leaves alone, because those accesses legitimately end a VM:
 * port 0x501 (debug exit), 0x64 (i8042 command: 0xFE resets), 0x92 (port A:
 * bit 0 resets a PC), 0x600..0x60F (ACPI PM / sleep control), 0xCF9 (reset
 * control) - no write whose bytes overlap them; nor 0x78..0x7F, for the
 * development host's sake (below). Reads go everywhere. RAM (memmap types
 * 1, 3, 4) is never written.
 *
 * What it tames so that it survives its own garbage: every IOAPIC
 * redirection entry it writes gets the mask bit, and the LAPIC task
 * priority blocks fixed interrupts (cpu.c); NMIs are ignored; the PIT and
 * the RTC are reprogrammed to quiet settings right after their ports.
 *
 * Last, the PCI functions (pci=0 skips this): every BAR of every function
 * is programmed through config mechanism #1 with absurd values (all-ones,
 * RAM, ECAM, IOAPIC, LAPIC, wrapping 64-bit addresses, another function's
 * BAR) with decoding on, and only read where it lands; then each virtio-pci
 * function gets its BARs assigned and its registers attacked through ECAM
 * by a driver that does everything out of order (virtio_rounds=N accesses,
 * default 4000): random status, features, queue sizes and vectors, ring
 * addresses that are misaligned or not RAM, garbage rings, kicks for queues
 * that do not exist, MSI-X entries always masked; then every page of the
 * ECAM window (all 256 functions of bus 0) is read and written.
 * What a device can be made to write is confined to a scratch buffer (see
 * `scratch`), so the guest survives its own attack.
 *
 * Cmdline: seed=N (default 1), pio=fast|full|off (default fast),
 * mmio=fast|full|off (default fast), port_first=/port_last= (limit the port
 * sweep), cpl=0 (run the sweeps at CPL0 instead), pci=0, virtio_rounds=N.
 *   pio=fast: every port written once with a random size (1/2/4) and read
 *             once, the size cycling from port to port; all three sizes
 *             written and read on ports 0..0x3FF.
 *   pio=full: every port written with sizes 1, 2 and 4 and read with all
 *             three (six exits per port).
 *   mmio=fast: per 64 KiB page of 0xC0000000..0xFFFFFFFF one dword written
 *             at +0 and one read at +4; mmio=full: four dwords written and
 *             read. Both also sweep the first ECAM page (0xE0000000), the
 *             IOAPIC registers, unaligned/8-byte/string/locked accesses and
 *             addresses above RAM.
 * Ends with "kestrel-guest: hostile survived" and exit status 0.
 */
#include "lib/cpu.h"
#include "lib/pci.h"
#include "lib/virtio.h"

enum level { LEVEL_OFF, LEVEL_FAST, LEVEL_FULL };
static const char *const level_names[] = { "off", "fast", "full" };

#define MAX_RAM_RANGES 32

struct hostile {
	uint64_t rng;
	enum level pio, mmio;
	bool pci;
	unsigned virtio_rounds;
	uint32_t port_first, port_last;
	/* memory-backed ranges from the memmap: never written */
	uint64_t ram_lo[MAX_RAM_RANGES], ram_hi[MAX_RAM_RANGES]; /* [lo, hi) */
	uint32_t n_ram;
	uint64_t ram_top_below_4g;
	bool have_memmap; /* else RAM size is unknown: no probes above it */
	/* results, written at CPL3 */
	uint64_t pio_writes, pio_reads, mmio_writes, mmio_reads, skipped;
	uint64_t tsc_pio, tsc_string, tsc_mmio, tsc_ioapic, tsc_odd, tsc_high, tsc_pci;
	unsigned pci_functions, virtio_attacked, ecam_pages;
	uint64_t sink;
};

static struct hostile h;
static uint8_t string_buf[4096] __attribute__((aligned(64)));

static uint64_t rnd(struct hostile *s)
{
	uint64_t x = s->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return s->rng = x;
}

/* --- ports -------------------------------------------------------------------- */

static const struct {
	uint16_t lo, hi;
} reserved_ports[] = {
	{ 0x064, 0x064 }, /* i8042 command */
	{ 0x092, 0x092 }, /* port A fast reset */
	{ 0x501, 0x501 }, /* debug exit */
	{ 0x600, 0x60f }, /* ACPI PM1 / sleep control */
	{ 0xcf9, 0xcf9 }, /* reset control */
	/* Not for the VMM's sake: on the development host (kvm_pvm) mixed-size
	 * writes here make KVM's own instruction emulation fail (RIP corrupted,
	 * KVM_EXIT_INTERNAL_ERROR), depending on the guest's code layout. */
	{ 0x078, 0x07f },
};

static bool port_reserved(uint32_t port, uint32_t size)
{
	for (size_t i = 0; i < sizeof(reserved_ports) / sizeof(reserved_ports[0]); i++)
		if (port <= reserved_ports[i].hi && port + size - 1 >= reserved_ports[i].lo)
			return true;
	return false;
}

static void pio_write(struct hostile *s, uint32_t port, uint32_t size)
{
	if (port_reserved(port, size)) {
		s->skipped++;
		return;
	}
	uint32_t v = (uint32_t)rnd(s);
	if (size == 1)
		outb((uint16_t)port, (uint8_t)v);
	else if (size == 2)
		outw((uint16_t)port, (uint16_t)v);
	else
		outl((uint16_t)port, v);
	s->pio_writes++;
}

static void pio_read(struct hostile *s, uint32_t port, uint32_t size)
{
	if (size == 1)
		s->sink += inb((uint16_t)port);
	else if (size == 2)
		s->sink += inw((uint16_t)port);
	else
		s->sink += inl((uint16_t)port);
	s->pio_reads++;
}

/* Timers the sweep may have programmed with garbage: a tiny PIT divisor
 * makes KVM's in-kernel PIT fire at up to ~1 MHz, and although the
 * interrupt is masked everywhere, that slowed every exit on the development
 * host about 200-fold (measured: 5 ms instead of 27 us with divisor 1, and
 * a default run then took minutes instead of seconds).
 * Put them back to something quiet right after their ports are done. */
static void tame_timers(uint32_t port)
{
	if (port == 0x43) {
		outb(0x43, 0x30); /* channel 0, lobyte/hibyte, mode 0 (one shot) */
		outb(0x40, 0xff);
		outb(0x40, 0xff);
	} else if (port == 0x71) {
		outb(0x70, 0x0b); /* RTC register B: 24h, no interrupts */
		outb(0x71, 0x02);
		outb(0x70, 0x0a); /* register A: default divider and rate */
		outb(0x71, 0x26);
	}
}

static void sweep_ports(struct hostile *s)
{
	static const uint32_t sizes[3] = { 1, 2, 4 };

	for (uint32_t port = s->port_first; port <= s->port_last; port++) {
		if (s->pio == LEVEL_FULL || port < 0x400) {
			for (int i = 0; i < 3; i++)
				pio_write(s, port, sizes[i]);
			for (int i = 0; i < 3; i++)
				pio_read(s, port, sizes[i]);
		} else {
			pio_write(s, port, sizes[(port + s->rng) % 3]);
			pio_read(s, port, sizes[(port + 1) % 3]);
		}
		tame_timers(port);
	}
}

/* rep outs / rep ins: one instruction, many transfers (kvm_run io.count > 1
 * where KVM batches them), both directions of DF. */
static void string_io(struct hostile *s)
{
	static const uint16_t ports[] = { 0x80, 0x3ff, 0x3f8, 0x70, 0xcfc, 0x1234, 0xfffe };

	for (size_t i = 0; i < sizeof(string_buf); i++)
		string_buf[i] = (uint8_t)rnd(s);
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		uint16_t port = ports[i];
		uint64_t n;
		const void *src;
		void *dst;

		n = 64, src = string_buf;
		__asm__ volatile("cld; rep outsb" : "+c"(n), "+S"(src) : "d"(port) : "memory");
		n = 32, src = string_buf;
		__asm__ volatile("cld; rep outsw" : "+c"(n), "+S"(src) : "d"(port) : "memory");
		n = 16, src = string_buf;
		__asm__ volatile("cld; rep outsl" : "+c"(n), "+S"(src) : "d"(port) : "memory");
		n = 16, src = string_buf + 1024;
		__asm__ volatile("std; rep outsb; cld" : "+c"(n), "+S"(src) : "d"(port) : "memory");
		n = 64, dst = string_buf + 2048;
		__asm__ volatile("cld; rep insb" : "+c"(n), "+D"(dst) : "d"(port) : "memory");
		n = 32, dst = string_buf + 2048;
		__asm__ volatile("cld; rep insw" : "+c"(n), "+D"(dst) : "d"(port) : "memory");
		n = 16, dst = string_buf + 2048;
		__asm__ volatile("cld; rep insl" : "+c"(n), "+D"(dst) : "d"(port) : "memory");
		n = 16, dst = string_buf + 3072;
		__asm__ volatile("std; rep insb; cld" : "+c"(n), "+D"(dst) : "d"(port) : "memory");
		s->pio_writes += 4;
		s->pio_reads += 4;
	}
}

/* --- memory ------------------------------------------------------------------- */

static bool hits_ram(const struct hostile *s, uint64_t a, uint64_t len)
{
	for (uint32_t i = 0; i < s->n_ram; i++)
		if (a < s->ram_hi[i] && a + len > s->ram_lo[i])
			return true;
	return a + len > GUEST_MAPPED_END;
}

/* 0xFEE00000..0xFEEFFFFF: the LAPIC page, and in QEMU the rest of that MiB
 * turns a CPU write into an MSI with the written data - garbage there can
 * send this CPU an INIT or SMI it cannot survive. Only reads go there,
 * except to reserved LAPIC registers (see odd_accesses). */
static bool in_msi_window(uint64_t a, uint64_t len)
{
	return a < 0xfef00000 && a + len > 0xfee00000;
}

static void mw(struct hostile *s, uint64_t a, unsigned size)
{
	if (hits_ram(s, a, size) || in_msi_window(a, size)) {
		s->skipped++;
		return;
	}
	uint64_t v = rnd(s);
	switch (size) {
	case 1: mmio_write8(a, (uint8_t)v); break;
	case 2: mmio_write16(a, (uint16_t)v); break;
	case 4: mmio_write32(a, (uint32_t)v); break;
	default: mmio_write64(a, v); break;
	}
	s->mmio_writes++;
}

static void mr(struct hostile *s, uint64_t a, unsigned size)
{
	if (a + size > GUEST_MAPPED_END)
		return;
	switch (size) {
	case 1: s->sink += mmio_read8(a); break;
	case 2: s->sink += mmio_read16(a); break;
	case 4: s->sink += mmio_read32(a); break;
	default: s->sink += mmio_read64(a); break;
	}
	s->mmio_reads++;
}

static void sweep_device_window(struct hostile *s)
{
	for (uint64_t page = 0xc0000000; page < 0x100000000; page += 0x10000) {
		if (s->mmio == LEVEL_FULL) {
			for (unsigned off = 0; off < 16; off += 4)
				mw(s, page + off, 4);
			for (unsigned off = 0; off < 16; off += 4)
				mr(s, page + off, 4);
		} else {
			mw(s, page, 4);
			mr(s, page + 4, 4);
		}
	}
	/* The first ECAM page: configuration space of bus 0, device 0. */
	for (uint64_t a = 0xe0000000; a < 0xe0001000; a += 4) {
		mw(s, a, 4);
		mr(s, a, 4);
	}
}

#define IOREGSEL (IOAPIC_BASE + 0x00)
#define IOWIN    (IOAPIC_BASE + 0x10)

/* Every IOAPIC register index, garbage in, read back. Redirection entries
 * (0x10..0x3f and beyond, low dwords) always get the mask bit so that no
 * device interrupt, NMI, SMI or INIT can be routed to this CPU. */
static void ioapic(struct hostile *s)
{
	for (uint32_t reg = 0; reg < 0x100; reg++) {
		uint32_t v = (uint32_t)rnd(s);
		if (reg >= 0x10 && !(reg & 1))
			v |= 1u << 16;
		mmio_write32(IOREGSEL, reg);
		mmio_write32(IOWIN, v);
		s->sink += mmio_read32(IOWIN);
		s->mmio_writes += 2;
		s->mmio_reads++;
	}
	/* Garbage selectors, only ever followed by reads. */
	for (int i = 0; i < 64; i++) {
		mmio_write32(IOREGSEL, (uint32_t)rnd(s));
		s->sink += mmio_read32(IOWIN);
		s->sink += mmio_read32(IOAPIC_BASE + 4 * (rnd(s) % 16));
		s->mmio_writes++;
		s->mmio_reads += 2;
	}
	mmio_write32(IOREGSEL, 1); /* version: read-only */
}

/* Unaligned, page-crossing, 8-byte, string and locked accesses. */
static void odd_accesses(struct hostile *s)
{
	static const uint64_t spots[] = { 0xd0000000, 0xe0000000, 0xfec00000, 0xfee00000,
					  0xc0000000, 0xfed00000, 0xffff0000 };

	/* Reserved LAPIC registers 0x10..0x1f (not offset 0: QEMU takes a write
	 * at LAPIC register index 0 for an MSI): unaligned, short and long. */
	mmio_write32(LAPIC_BASE + 0x10, (uint32_t)rnd(s));
	mmio_write16(LAPIC_BASE + 0x13, (uint16_t)rnd(s));
	mmio_write8(LAPIC_BASE + 0x1f, (uint8_t)rnd(s));
	mmio_write64(LAPIC_BASE + 0x10, rnd(s));
	s->mmio_writes += 4;

	for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
		uint64_t b = spots[i];
		bool careful = b == 0xfec00000 || b == 0xfee00000; /* IOAPIC, LAPIC */

		/* reads: every size at every alignment 0..7, and across 4 KiB */
		for (unsigned off = 0; off < 8; off++) {
			mr(s, b + off, 1);
			mr(s, b + off, 2);
			mr(s, b + off, 4);
			mr(s, b + off, 8);
		}
		mr(s, b + 0xffe, 4);
		mr(s, b + 0xffc, 8);
		if (careful) {
			/* Only offsets 0x0..0xf: IOREGSEL and reserved words on the
			 * IOAPIC (the LAPIC page is read-only here, see mw()). */
			mw(s, b + 1, 2);
			mw(s, b + 4, 8);
			mw(s, b + 3, 4);
			mw(s, b + 9, 4);
			continue;
		}
		for (unsigned off = 0; off < 8; off++) {
			mw(s, b + off, 1);
			mw(s, b + off, 2);
			mw(s, b + off, 4);
			mw(s, b + off, 8);
		}
		mw(s, b + 0xffe, 4);
		mw(s, b + 0xffc, 8);
		mw(s, b + 0xfff, 2);
	}
	mmio_write32(IOREGSEL, 1);

	/* The last dword below 4 GiB and an access straddling 4 GiB. */
	mr(s, 0xfffffffc, 4);
	mr(s, 0xfffffffc, 8);
	mw(s, 0xfffffff8, 8);
	mw(s, 0xfffffffc, 8);

	/* String moves between RAM and MMIO (never MMIO to MMIO). */
	uint64_t n;
	const void *src;
	void *dst;
	n = 16, src = string_buf, dst = (void *)0xd0001000;
	__asm__ volatile("cld; rep movsl" : "+c"(n), "+S"(src), "+D"(dst) : : "memory");
	n = 64, src = string_buf, dst = (void *)0xd0002001;
	__asm__ volatile("cld; rep movsb" : "+c"(n), "+S"(src), "+D"(dst) : : "memory");
	n = 16, src = (const void *)0xd0003000, dst = string_buf;
	__asm__ volatile("cld; rep movsb" : "+c"(n), "+S"(src), "+D"(dst) : : "memory");
	n = 8, dst = (void *)0xd0004000;
	__asm__ volatile("cld; rep stosq" : "+c"(n), "+D"(dst) : "a"(rnd(s)) : "memory");
	n = 8, src = (const void *)0xd0005000;
	__asm__ volatile("cld; rep lodsl" : "+c"(n), "+S"(src) : : "rax", "memory");
	s->mmio_writes += 16 + 64 + 8;
	s->mmio_reads += 16 + 8;

	/* Locked read-modify-writes on MMIO (cmpxchg16b is not emulated here;
	 * the rest must be). */
	volatile uint32_t *m32 = (volatile uint32_t *)0xd0006000;
	volatile uint64_t *m64 = (volatile uint64_t *)0xd0006008;
	uint32_t v32 = (uint32_t)rnd(s);
	uint64_t v64 = rnd(s);
	__asm__ volatile("lock xaddl %0, %1" : "+r"(v32), "+m"(*m32) : : "memory");
	__asm__ volatile("xchgq %0, %1" : "+r"(v64), "+m"(*m64) : : "memory");
	__asm__ volatile("lock orl $0x55, %0" : "+m"(*m32) : : "memory");
	__asm__ volatile("lock incq %0" : "+m"(*m64) : : "memory");
	uint32_t expect = 0, desired = (uint32_t)rnd(s);
	__asm__ volatile("lock cmpxchgl %2, %1" : "+a"(expect), "+m"(*m32) : "r"(desired)
			 : "memory");
	s->mmio_writes += 5;
	s->sink += v32 + v64 + expect;
}

/* Guest-physical addresses that no memmap entry claims: between the top of
 * RAM and the device window, and from 4 GiB up to the end of the map. */
static void above_ram(struct hostile *s)
{
	uint64_t start = (s->ram_top_below_4g + 0xffffff) & ~0xffffffull;

	if (!s->have_memmap)
		return;

	for (uint64_t a = start; a < 0xc0000000; a += 0x1000000) {
		mw(s, a, 4);
		mr(s, a, 4);
	}
	for (uint64_t a = 0x100000000; a < GUEST_MAPPED_END; a += 0x400000) {
		mw(s, a, 4);
		mw(s, a + 0xff8, 8);
		mr(s, a, 8);
	}
	mw(s, GUEST_MAPPED_END - 8, 8);
	mr(s, GUEST_MAPPED_END - 4, 4);
}

/* --- PCI: BARs the guest assigns itself, virtio registers, every ECAM page --- */

#define ECAM_BASE    0xe0000000ull   /* kestrel's ECAM window: bus 0, 1 MiB */
#define ECAM_FNS     256             /* 32 devices x 8 functions, one 4 KiB page each */
#define BAR_LO       0xc0000000ull   /* kestrel's PCI BAR window */
#define BAR_HI       0xd0000000ull

#define C_DFSELECT   0x00
#define C_DF         0x04
#define C_GFSELECT   0x08
#define C_GF         0x0c
#define C_MSIX_CFG   0x10
#define C_NUM_QUEUES 0x12
#define C_STATUS     0x14
#define C_Q_SELECT   0x16
#define C_Q_SIZE     0x18
#define C_Q_MSIX     0x1a
#define C_Q_ENABLE   0x1c
#define C_Q_DESC     0x20
#define C_Q_AVAIL    0x28
#define C_Q_USED     0x30
#define C_Q_RESET    0x3a

/*
 * The only guest RAM a device under attack can be made to write: every
 * ring address the guest programs is in here or outside RAM, and every
 * descriptor in here points into its buffer area or outside RAM, never
 * indirect. Layout (offsets): descriptor tables 0..0x5000 (start < 0x1000,
 * up to 1024 entries; the device never writes there), available rings
 * from 0x5000..0x6000, used rings from 0x7000..0x8000 (up to 0xa006),
 * buffers from 0xc000..0xe000 (at most 8 KiB long, so below 0x10000).
 */
#define SCRATCH_SIZE 0x10000
static uint8_t scratch[SCRATCH_SIZE] __attribute__((aligned(4096)));

static uint64_t scratch_gpa(uint64_t off)
{
	return (uint64_t)(uintptr_t)scratch + off;
}

/* An address that is not guest RAM: the device must refuse whatever points there. */
static uint64_t not_ram(struct hostile *s)
{
	static const uint64_t spots[] = { 0xfffffffffffff000ull, 0xc0000000, 0xd0000800, 0xe0000000,
					  0xfec00000, 0x8000000000000000ull, 0xfffffffffffffff0ull };
	uint64_t a = spots[rnd(s) % (sizeof(spots) / sizeof(spots[0]))];

	return hits_ram(s, a, 16) ? 0xfffffffffffff000ull : a;
}

/* which: 0 descriptor table, 1 available ring, 2 used ring. */
static uint64_t ring_addr(struct hostile *s, unsigned which)
{
	static const uint64_t base[3] = { 0x0000, 0x5000, 0x7000 };
	uint64_t r = rnd(s);

	if (r % 8 == 0)
		return not_ram(s);
	if (which == 0)                          /* descriptors are parsed 16 bytes at a time */
		return scratch_gpa((r >> 8) % 0x1000 & ~0xfull);
	/* Sometimes misaligned on purpose (the device must refuse those). */
	return scratch_gpa(base[which] + ((r >> 8) % 0x1000 & (r % 8 == 1 ? ~0x0ull : ~0xfull)));
}

/* Fill the descriptor tables and available rings with garbage that stays inside the rules above. */
static void scratch_fill(struct hostile *s)
{
	volatile uint64_t *d = (volatile uint64_t *)scratch;

	for (unsigned i = 0; i < 0x5000 / 16; i++) {
		uint64_t r = rnd(s);
		uint64_t addr = (r & 7) == 0 ? not_ram(s) : scratch_gpa(0xc000 + (r >> 3) % 0x2000);
		uint32_t len = (uint32_t)(rnd(s) % 0x2001);
		uint16_t flags = (uint16_t)(r >> 40) & 3;     /* NEXT, WRITE; never INDIRECT */
		uint16_t next = (uint16_t)(r >> 48) % ((r & 0x100) ? 0x10000 : 1024);

		d[2 * i] = addr;
		d[2 * i + 1] = len | (uint64_t)flags << 32 | (uint64_t)next << 48;
	}
	for (unsigned off = 0x5000; off < 0x6000; off += 8)
		*(volatile uint64_t *)(scratch + off) = rnd(s);
}

static void attack_msix(struct hostile *s, const struct virtio_pci *v)
{
	uint32_t tbl, bir;
	uint64_t base;

	if (!v->msix_cap)
		return;
	tbl = pci_read32(v->bdf, v->msix_cap + 4);
	bir = tbl & 7;
	if (bir >= PCI_NUM_BARS || !v->bars[bir].addr || v->bars[bir].io)
		return;
	base = v->bars[bir].addr + (tbl & ~7u);
	/* Garbage addresses and data, always masked: no message may reach this CPU. */
	for (unsigned e = 0; e < 8; e++) {
		mmio_write32(base + 16 * e + 12, 1);
		mmio_write32(base + 16 * e + 0, (uint32_t)rnd(s));
		mmio_write32(base + 16 * e + 4, (uint32_t)rnd(s));
		mmio_write32(base + 16 * e + 8, (uint32_t)rnd(s));
		mmio_write32(base + 16 * e + 12, (uint32_t)rnd(s) | 1);
		s->sink += mmio_read32(base + 16 * e + 12);
		s->mmio_writes += 5;
		s->mmio_reads++;
	}
	/* The function may switch MSI-X on only with every vector masked. */
	pci_write16(v->bdf, v->msix_cap + 2, (rnd(s) & 1) ? 0xc000 : 0);
	s->sink += pci_read32(v->bdf, v->msix_cap);
}

/* The status a driver starting properly writes next (Virtio 1.2, 3.1.1). */
static uint8_t next_status(uint8_t st)
{
	static const uint8_t order[] = { 0x01, 0x02, 0x08, 0x04 };

	for (unsigned i = 0; i < sizeof(order); i++)
		if (!(st & order[i]))
			return st | order[i];
	return st;
}

/* A driver that does everything in the wrong order, with the wrong values. */
static void attack_virtio(struct hostile *s, const struct virtio_pci *v, unsigned rounds)
{
	uint64_t c = v->common;
	uint16_t nq = mmio_read16(c + C_NUM_QUEUES);

	scratch_fill(s);
	for (unsigned i = 0; i < rounds; i++) {
		uint64_t r = rnd(s);
		uint16_t q = (uint16_t)((r >> 8) % (nq + 2u));
		unsigned off;
		uint64_t a;

		switch (r % 17) {
		case 0: /* status: the next step of a proper start, a reset, or garbage */
			if ((r >> 8) % 8 == 0)
				mmio_write8(c + C_STATUS, 0);
			else if ((r >> 8) % 8 == 1)
				mmio_write8(c + C_STATUS, (uint8_t)(r >> 16));
			else
				mmio_write8(c + C_STATUS, next_status(mmio_read8(c + C_STATUS)));
			break;
		case 1:
			mmio_write32(c + C_DFSELECT, (uint32_t)(r >> 16) % 3);
			s->sink += mmio_read32(c + C_DF);
			break;
		case 2: /* garbage, or a subset of what the device offers */
			off = (unsigned)(r >> 16) % 3;
			mmio_write32(c + C_DFSELECT, off);
			mmio_write32(c + C_GFSELECT, off);
			mmio_write32(c + C_GF, (r & 0x100) ? (uint32_t)(r >> 24)
							  : mmio_read32(c + C_DF) & (uint32_t)(r >> 24 | (off == 1)));
			break;
		case 3:
			mmio_write16(c + C_Q_SELECT, (r & 0x100) ? q : (uint16_t)(r >> 16));
			break;
		case 4: /* powers of two, zero, and nonsense */
			mmio_write16(c + C_Q_SIZE, (r & 0x100) ? (uint16_t)(1u << ((r >> 16) % 12)) : (uint16_t)(r >> 16));
			break;
		case 5:
			mmio_write64(c + C_Q_DESC, ring_addr(s, 0));
			break;
		case 6:
			mmio_write64(c + C_Q_AVAIL, ring_addr(s, 1));
			break;
		case 7: /* in halves, the high one last */
			a = ring_addr(s, 2);
			mmio_write32(c + C_Q_USED, (uint32_t)a);
			mmio_write32(c + C_Q_USED + 4, (uint32_t)(a >> 32));
			break;
		case 8: /* enable: the rings are (re)programmed first, so no queue runs on what a reset left */
			if (r & 0x400)   /* a queue that exists, usually */
				mmio_write16(c + C_Q_SELECT, (uint16_t)((r >> 32) % nq));
			if (r & 0x200)   /* a size the device takes, usually */
				mmio_write16(c + C_Q_SIZE, (uint16_t)(1u << ((r >> 24) % 9)));
			mmio_write64(c + C_Q_DESC, ring_addr(s, 0));
			mmio_write64(c + C_Q_AVAIL, ring_addr(s, 1));
			mmio_write64(c + C_Q_USED, ring_addr(s, 2));
			mmio_write16(c + C_Q_ENABLE, (r & 0x100) ? 1 : (uint16_t)(r >> 16));
			break;
		case 9:
			mmio_write16(c + ((r & 0x100) ? C_MSIX_CFG : C_Q_MSIX), (uint16_t)(r >> 16) % 80);
			break;
		case 10: /* kicks, for queues that exist and that do not */
			mmio_write16(v->notify + (uint64_t)q * v->notify_mult, (r & 0x100) ? q : (uint16_t)(r >> 16));
			break;
		case 11:
			s->sink += mmio_read8(v->isr);
			break;
		case 12: /* device configuration, in and past its bounds, every size */
			off = (unsigned)(r >> 16) % (v->device_len + 8);
			if (v->device) {
				if (r & 0x100)
					mw(s, v->device + off, 1u << ((r >> 40) % 4));
				else
					mr(s, v->device + off, 1u << ((r >> 40) % 4));
			}
			break;
		case 13:
			scratch_fill(s);
			break;
		case 14:
			for (off = 0; off < 0x40; off += 4)
				s->sink += mmio_read32(c + off);
			break;
		case 15: /* any size, any alignment, outside the queue address and enable registers */
			off = (unsigned)(r >> 16) % 0x3c;
			if (off + 8 <= C_Q_ENABLE || off >= 0x38)
				mw(s, c + off, 1u << ((r >> 40) % 4));
			break;
		case 16:
			mmio_write16(c + C_Q_RESET, (uint16_t)(r >> 16) & 1);
			s->sink += mmio_read16(c + C_Q_RESET);
			break;
		}
		s->mmio_writes++;
	}
	attack_msix(s, v);
	/* Reset, and wait until it took: nothing may touch scratch afterwards. */
	mmio_write8(c + C_STATUS, 0);
	for (unsigned n = 0; n < 100000 && mmio_read8(c + C_STATUS); n++)
		;
	if (v->msix_cap)
		pci_write16(v->bdf, v->msix_cap + 2, 0);
}

/* Addresses a BAR should never be given. 0: the other function's BAR (overlap). */
static const uint32_t absurd_lo[] = {
	0xffffffff, 0, 0x00100000, (uint32_t)ECAM_BASE, (uint32_t)IOAPIC_BASE, (uint32_t)LAPIC_BASE,
	0xfffff000, 0xfffffff0, 0xc0000001, 0xd0000000, 0xbffff000, 0x00000003, 0x3f8, 0xcf8,
};
static const uint32_t absurd_hi[] = { 0, 0xffffffff, 0x80000000, 0x1, 0xfffffffe };

/* Only reads at a BAR in a strange place: whatever is there may be another device's register. */
static void peek_bar(struct hostile *s, unsigned bdf, unsigned idx, bool io)
{
	uint32_t lo = pci_read32(bdf, PCI_BAR0 + 4 * idx);

	if (io) {
		uint16_t port = (uint16_t)(lo & ~3u);

		s->sink += inb(port) + inw(port) + inl(port);
		s->pio_reads += 3;
	} else if ((lo & ~0xfu) >= 0xc0000000u && (lo & ~0xfu) < 0xfec00000u) {
		mr(s, lo & ~0xfu, 4);
		mr(s, (lo & ~0xfu) + 2, 2);
	}
}

/* Program every BAR of bdf through config space with absurd and overlapping values, decoding on. */
static void absurd_bars(struct hostile *s, unsigned bdf, uint32_t overlap)
{
	uint16_t cmd = pci_read16(bdf, PCI_COMMAND);

	for (unsigned idx = 0; idx < PCI_NUM_BARS; idx++) {
		uint32_t orig = pci_read32(bdf, PCI_BAR0 + 4 * idx);
		uint32_t orig_hi = idx + 1 < PCI_NUM_BARS ? pci_read32(bdf, PCI_BAR0 + 4 * idx + 4) : 0;
		bool io = orig & 1, mem64 = !io && (orig & 6) == 4;

		for (unsigned i = 0; i < sizeof(absurd_lo) / sizeof(absurd_lo[0]); i++) {
			uint32_t lo = absurd_lo[i] ? absurd_lo[i] : overlap;

			pci_write16(bdf, PCI_COMMAND, 0);
			pci_write32(bdf, PCI_BAR0 + 4 * idx, lo);
			if (mem64)
				pci_write32(bdf, PCI_BAR0 + 4 * idx + 4, absurd_hi[(i + rnd(s)) % 5]);
			pci_write16(bdf, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_IO | (uint16_t)(rnd(s) & PCI_CMD_MASTER));
			peek_bar(s, bdf, idx, io);
			/* Move it while decoding stays on. */
			pci_write32(bdf, PCI_BAR0 + 4 * idx, (uint32_t)rnd(s));
			peek_bar(s, bdf, idx, io);
			s->pio_writes += 4;
		}
		pci_write16(bdf, PCI_COMMAND, 0);
		pci_write32(bdf, PCI_BAR0 + 4 * idx, orig);
		if (mem64)
			pci_write32(bdf, PCI_BAR0 + 4 * idx + 4, orig_hi);
	}
	pci_write16(bdf, PCI_COMMAND, cmd);
}

static bool fn_present(unsigned bdf)
{
	uint16_t vendor = pci_read16(bdf, PCI_VENDOR_ID);

	return vendor != 0xffff && vendor != 0;
}

static void pci_bars(struct hostile *s)
{
	uint32_t overlap = 0xc0000000;

	pci_init("auto", ECAM_BASE);
	for (unsigned bdf = 0; bdf < ECAM_FNS; bdf++) {
		if (!fn_present(bdf))
			continue;
		absurd_bars(s, bdf, overlap);
		s->pci_functions++;
	}
	/* Now assign them properly, then overlap one virtio function's BARs with another's. */
	for (unsigned bdf = 0; bdf < ECAM_FNS; bdf++) {
		struct virtio_pci v;
		char err[128];

		if (!fn_present(bdf) || pci_read16(bdf, PCI_VENDOR_ID) != VIRTIO_PCI_VENDOR)
			continue;
		if (!virtio_pci_open(bdf, BAR_LO, BAR_HI, &v, err, sizeof(err))) {
			uart_init();
			guest_printf("kestrel-guest: hostile: %02x.%x: %s\n", PCI_BDF_DEV(bdf), PCI_BDF_FN(bdf), err);
			continue;
		}
		if (overlap != 0xc0000000)
			absurd_bars(s, bdf, overlap);
		overlap = (uint32_t)v.bars[0].addr;
	}
}

static void virtio_regs(struct hostile *s)
{
	pci_init("ecam", ECAM_BASE);   /* config mechanism #1 did the BAR phase */
	for (unsigned bdf = 0; bdf < ECAM_FNS; bdf++) {
		struct virtio_pci v;
		char err[128];

		if (!fn_present(bdf) || pci_read16(bdf, PCI_VENDOR_ID) != VIRTIO_PCI_VENDOR)
			continue;
		if (!virtio_pci_open(bdf, BAR_LO, BAR_HI, &v, err, sizeof(err)))
			continue;
		attack_virtio(s, &v, s->virtio_rounds);
		s->virtio_attacked++;
		pci_write16(bdf, PCI_COMMAND, 0);
	}
}

/*
 * Every page of the ECAM window: each of the 256 functions on bus 0,
 * present or not. Reads of the header and of random registers at every
 * size and alignment; writes of garbage to every header register and to
 * extended configuration space. A present function's capability list
 * (0x40..0xff) only gets reads: garbage in MSI/MSI-X control and address
 * would send this CPU messages it cannot survive.
 */
static void ecam_walk(struct hostile *s)
{
	static const unsigned hdr_regs[] = { 0x04, 0x0c, 0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30, 0x3c };

	for (unsigned bdf = 0; bdf < ECAM_FNS; bdf++) {
		uint64_t page = ECAM_BASE + ((uint64_t)bdf << 12);
		bool present = fn_present(bdf);
		uint32_t saved[sizeof(hdr_regs) / sizeof(hdr_regs[0])];

		for (unsigned off = 0; off < 0x100; off += 4)
			mr(s, page + off, 4);
		for (unsigned i = 0; i < 16; i++) {
			uint64_t r = rnd(s);

			mr(s, page + (r >> 8) % 0x1000, 1u << (r % 4));
		}
		for (unsigned i = 0; i < sizeof(hdr_regs) / sizeof(hdr_regs[0]); i++)
			saved[i] = mmio_read32(page + hdr_regs[i]);
		for (unsigned i = 0; i < sizeof(hdr_regs) / sizeof(hdr_regs[0]); i++) {
			mw(s, page + hdr_regs[i], 4);
			mw(s, page + hdr_regs[i] + (rnd(s) % 4), 1);
		}
		for (unsigned i = 0; i < 24; i++) {
			uint64_t r = rnd(s);
			unsigned off = (unsigned)(r >> 8) % 0x1000;

			if (present && off >= 0x40 && off < 0x108)
				off += 0x100;
			mw(s, page + off, 1u << (r % 4));
		}
		for (unsigned off = 0; off < 0x40; off += 4)
			mr(s, page + off, 4);
		/* Decoding off before the BARs go back, then the rest of the header. */
		mmio_write16(page + PCI_COMMAND, 0);
		for (unsigned i = sizeof(hdr_regs) / sizeof(hdr_regs[0]); i-- > 0;)
			mmio_write32(page + hdr_regs[i], hdr_regs[i] == 0x04 ? saved[i] & 0xffff : saved[i]);
		s->ecam_pages++;
	}
}

/* Ends a phase: marker for a VMM's trace, then a progress line (the UART is
 * re-initialised first, the sweeps scribble on it) so a hang shows where. */
static void phase_done(uint8_t marker, const char *name, uint64_t t0, uint64_t *tsc)
{
	*tsc = rdtsc() - t0;
	outb(PORT_MARKER, marker);
	uart_init();
	guest_printf("kestrel-guest: hostile phase %s done\n", name);
}

/* Runs at CPL3 (or at CPL0 with cpl=0). */
static uint64_t user_hostile(uint64_t arg)
{
	struct hostile *s = (struct hostile *)(uintptr_t)arg;
	uint64_t t;

	if (s->pio != LEVEL_OFF) {
		t = rdtsc();
		sweep_ports(s);
		phase_done(0x21, "ports", t, &s->tsc_pio);
		t = rdtsc();
		string_io(s);
		phase_done(0x22, "string-io", t, &s->tsc_string);
	}
	if (s->mmio != LEVEL_OFF) {
		t = rdtsc();
		sweep_device_window(s);
		phase_done(0x23, "device-window", t, &s->tsc_mmio);
		t = rdtsc();
		ioapic(s);
		phase_done(0x24, "ioapic", t, &s->tsc_ioapic);
		t = rdtsc();
		odd_accesses(s);
		phase_done(0x25, "odd-accesses", t, &s->tsc_odd);
		t = rdtsc();
		above_ram(s);
		phase_done(0x26, "above-ram", t, &s->tsc_high);
	}
	if (s->pci) {
		/* Last: the sweeps above must not meet BARs this phase assigned. */
		t = rdtsc();
		pci_bars(s);
		phase_done(0x27, "pci-bars", t, &s->tsc_pci);
		virtio_regs(s);
		phase_done(0x28, "virtio-registers", t, &s->tsc_pci);
		ecam_walk(s);
		phase_done(0x29, "ecam-walk", t, &s->tsc_pci);
	}
	return 0;
}

static enum level parse_level(const char *key)
{
	char buf[16];

	if (!cmdline_get(key, buf, sizeof(buf)) || !strcmp(buf, "fast"))
		return LEVEL_FAST;
	if (!strcmp(buf, "full"))
		return LEVEL_FULL;
	if (!strcmp(buf, "off") || !strcmp(buf, "0"))
		return LEVEL_OFF;
	guest_printf("kestrel-guest: %s=%s unknown, using fast\n", key, buf);
	return LEVEL_FAST;
}

static void collect_ram(const struct hvm_start_info *si)
{
	/* The image and its stacks are RAM even without a memmap. */
	h.ram_lo[0] = 0;
	h.ram_hi[0] = 0x100000 + 16 * 0x100000;
	h.n_ram = 1;
	h.ram_top_below_4g = h.ram_hi[0];
	if (!si || si->version < 1 || !si->memmap_paddr || si->memmap_paddr >= GUEST_MAPPED_END)
		return;
	const struct hvm_memmap_table_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
	h.have_memmap = si->memmap_entries > 0;
	for (uint32_t i = 0; i < si->memmap_entries && i < 1024 && h.n_ram < MAX_RAM_RANGES; i++) {
		if (e[i].type != 1 && e[i].type != 3 && e[i].type != 4)
			continue;
		if (!e[i].size || e[i].addr + e[i].size < e[i].addr)
			continue;
		h.ram_lo[h.n_ram] = e[i].addr;
		h.ram_hi[h.n_ram] = e[i].addr + e[i].size;
		if (h.ram_hi[h.n_ram] <= 0xc0000000 && h.ram_hi[h.n_ram] > h.ram_top_below_4g)
			h.ram_top_below_4g = h.ram_hi[h.n_ram];
		h.n_ram++;
	}
}

static uint64_t ms(uint64_t tsc)
{
	uint64_t khz = tsc_hz() / 1000;

	return khz ? tsc / khz : 0;
}

int guest_main(const struct hvm_start_info *si)
{
	h.rng = cmdline_u64("seed", 1);
	if (!h.rng)
		h.rng = 0x9e3779b97f4a7c15ull; /* xorshift must not start at 0 */
	h.pio = parse_level("pio");
	h.mmio = parse_level("mmio");
	h.port_first = (uint32_t)cmdline_u64("port_first", 0) & 0xffff;
	h.port_last = (uint32_t)cmdline_u64("port_last", 0xffff) & 0xffff;
	h.pci = cmdline_u64("pci", 1) != 0;
	h.virtio_rounds = (unsigned)cmdline_u64("virtio_rounds", 4000);
	collect_ram(si);
	guest_printf("kestrel-guest: hostile seed=%lu pio=%s mmio=%s ram_top=0x%lx\n",
		     cmdline_u64("seed", 1), level_names[h.pio], level_names[h.mmio],
		     h.ram_top_below_4g);
	(void)tsc_hz(); /* CPUID and MSRs at CPL0, before user mode needs it */

	cpu_setup_traps();
	outb(PORT_MARKER, 0x20);
	if (cmdline_u64("cpl", 3) == 0)
		user_hostile((uint64_t)(uintptr_t)&h);
	else
		run_user(user_hostile, (uint64_t)(uintptr_t)&h);

	uart_init(); /* the sweep scribbled over every UART register */
	guest_printf("kestrel-guest: hostile pio writes=%lu reads=%lu, mmio writes=%lu "
		     "reads=%lu, skipped=%lu, interrupts=%lu\n",
		     h.pio_writes, h.pio_reads, h.mmio_writes, h.mmio_reads, h.skipped,
		     stray_interrupts);
	guest_printf("kestrel-guest: hostile ms: ports=%lu string=%lu window=%lu ioapic=%lu "
		     "odd=%lu high=%lu pci=%lu\n",
		     ms(h.tsc_pio), ms(h.tsc_string), ms(h.tsc_mmio), ms(h.tsc_ioapic),
		     ms(h.tsc_odd), ms(h.tsc_high), ms(h.tsc_pci));
	if (h.pci)
		guest_printf("kestrel-guest: hostile pci functions=%u virtio-attacked=%u ecam-pages=%u\n",
			     h.pci_functions, h.virtio_attacked, h.ecam_pages);
	guest_puts("kestrel-guest: hostile survived\n");
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * guest-cpl3: exit-cost benchmark. Runs its loops at CPL3 (native speed on
 * the development host, where CPL0 is emulated) with IOPL=3, so every `out`
 * and every MMIO store is one exit to the VMM and nothing else is.
 *
 * Cmdline: n=COUNT (100000) pio=PORT (0x3ff, UART scratch) mmio=ADDR
 * (0xd0000000, unbacked in the device window) mode=pio|mmio|both|spin;
 * cpl=0 runs the same loops at CPL0 instead, for comparison.
 *
 * Phase markers (outb of the phase number to port 0x502) let a VMM or a
 * bench timestamp the loops from outside:
 *   1 before the PIO loop, 2 after it (= before the MMIO loop), 3 after the
 *   MMIO loop; mode=spin writes 0x10 before and 0x11 after its loop.
 */
#include "lib/cpu.h"

enum mode { MODE_BOTH, MODE_PIO, MODE_MMIO, MODE_SPIN };

struct bench {
	uint64_t n;
	uint64_t mmio;
	uint16_t port;
	enum mode mode;
	uint64_t tsc_pio, tsc_mmio, tsc_spin; /* written at CPL3 */
};

static struct bench bench;

static void marker(uint8_t phase)
{
	outb(PORT_MARKER, phase);
}

static void pio_loop(uint16_t port, uint64_t n)
{
	if (!n)
		return;
	__asm__ volatile("1: outb %%al, %%dx\n\t"
			 "dec %%rcx\n\t"
			 "jnz 1b"
			 : "+c"(n)
			 : "a"(0x5a), "d"(port)
			 : "memory");
}

static void mmio_loop(uint64_t addr, uint64_t n)
{
	if (!n)
		return;
	__asm__ volatile("1: movl %%eax, (%%rdi)\n\t"
			 "dec %%rcx\n\t"
			 "jnz 1b"
			 : "+c"(n)
			 : "a"(0xa5a5a5a5u), "D"(addr)
			 : "memory");
}

static void spin_loop(uint64_t n)
{
	if (!n)
		return;
	__asm__ volatile("1: dec %%rcx\n\t"
			 "jnz 1b"
			 : "+c"(n)
			 :
			 : "memory");
}

/* Runs at CPL3 (or at CPL0 with cpl=0). */
static uint64_t user_bench(uint64_t arg)
{
	struct bench *b = (struct bench *)(uintptr_t)arg;
	uint64_t t;

	if (b->mode == MODE_SPIN) {
		marker(0x10);
		t = rdtsc();
		spin_loop(b->n);
		b->tsc_spin = rdtsc() - t;
		marker(0x11);
		return 0;
	}
	if (b->mode == MODE_BOTH || b->mode == MODE_PIO) {
		marker(1);
		t = rdtsc();
		pio_loop(b->port, b->n);
		b->tsc_pio = rdtsc() - t;
	}
	marker(2);
	if (b->mode == MODE_BOTH || b->mode == MODE_MMIO) {
		t = rdtsc();
		mmio_loop(b->mmio, b->n);
		b->tsc_mmio = rdtsc() - t;
		marker(3);
	}
	return 0;
}

static void report(const char *what, uint64_t tsc, uint64_t n)
{
	uint64_t mhz = tsc_hz() / 1000000;
	uint64_t ns = mhz ? tsc * 1000 / mhz : 0;

	guest_printf("kestrel-guest: cpl3 %s n=%lu tsc=%lu ns/op=%lu (tsc %lu MHz)\n", what, n,
		     tsc, n ? ns / n : 0, mhz);
}

int guest_main(const struct hvm_start_info *si)
{
	char mode[16] = "both";

	(void)si;
	bench.n = cmdline_u64("n", 100000);
	bench.port = (uint16_t)cmdline_u64("pio", 0x3ff);
	bench.mmio = cmdline_u64("mmio", 0xd0000000);
	cmdline_get("mode", mode, sizeof(mode));
	if (!strcmp(mode, "pio"))
		bench.mode = MODE_PIO;
	else if (!strcmp(mode, "mmio"))
		bench.mode = MODE_MMIO;
	else if (!strcmp(mode, "spin"))
		bench.mode = MODE_SPIN;
	else if (!strcmp(mode, "both"))
		bench.mode = MODE_BOTH;
	else {
		guest_printf("kestrel-guest: unknown mode=%s\n", mode);
		return 2;
	}
	if (bench.mmio > GUEST_MAPPED_END - 4) {
		guest_printf("kestrel-guest: mmio=0x%lx is not mapped\n", bench.mmio);
		return 2;
	}

	guest_printf("kestrel-guest: cpl3 mode=%s n=%lu pio=0x%x mmio=0x%lx cpl=%lu\n", mode,
		     bench.n, bench.port, bench.mmio, cmdline_u64("cpl", 3));
	cpu_setup_traps();
	if (cmdline_u64("cpl", 3) == 0)
		user_bench((uint64_t)(uintptr_t)&bench); /* for comparison: emulated */
	else
		run_user(user_bench, (uint64_t)(uintptr_t)&bench);

	if (bench.mode == MODE_SPIN)
		report("spin", bench.tsc_spin, bench.n);
	if (bench.mode == MODE_BOTH || bench.mode == MODE_PIO)
		report("pio", bench.tsc_pio, bench.n);
	if (bench.mode == MODE_BOTH || bench.mode == MODE_MMIO)
		report("mmio", bench.tsc_mmio, bench.n);
	guest_printf("kestrel-guest: cpl3 done n=%lu\n", bench.n);
	return 0;
}

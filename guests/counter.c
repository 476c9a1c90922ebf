/* SPDX-License-Identifier: MIT */
/*
 * guest-counter: prints "kestrel-guest: count N" on COM1 forever, N from 0,
 * for pause, snapshot and restore tests. The counter lives in guest RAM, so a
 * VM restored from a snapshot continues the sequence where it stopped.
 *
 *   mode=poll (default)  busy-waits delay_ms between lines (TSC, CPL0; no
 *                        interrupts, IF stays 0)
 *   mode=irq             LAPIC timer, periodic every delay_ms, vector 0x40;
 *                        the CPU sleeps in `sti; hlt` and the main loop prints
 *                        one line per tick counted by the interrupt handler.
 *                        Exercises the LAPIC (timer) and vCPU event state
 *                        across a restore.
 *   delay_ms=N (15)      time between lines
 *   limit=N (0)          exit with status 0 after printing count N-1
 *                        (0: never)
 *   touch=MIB (0)        first write every 4 KiB page of MIB MiB of RAM from
 *                        64 MiB up (clipped to the RAM the memory map shows),
 *                        so snapshots have that much memory to carry
 */
#include "lib/cpu.h"
#include "lib/guest.h"

#define LAPIC_TPR       0x080
#define LAPIC_SVR       0x0f0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_ICR 0x380
#define LAPIC_TIMER_CCR 0x390
#define LAPIC_TIMER_DCR 0x3e0
#define LVT_MASKED      (1u << 16)
#define LVT_PERIODIC    (1u << 17)
#define TIMER_VECTOR    0x40

/* In .data, not on the stack: what a restored VM must find again. */
static volatile uint64_t count;

static void lapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(LAPIC_BASE + reg, v);
}

static uint32_t lapic_read(uint32_t reg)
{
	return mmio_read32(LAPIC_BASE + reg);
}

static void print_count(uint64_t limit)
{
	guest_printf("kestrel-guest: count %lu\n", count);
	count++;
	if (limit && count >= limit)
		guest_exit(0);
}

static noreturn_fn void run_poll(uint64_t delay_ms, uint64_t limit)
{
	for (;;) {
		print_count(limit);
		udelay(delay_ms * 1000);
	}
}

/* LAPIC timer ticks per millisecond, measured against the TSC over 2 ms. */
static uint32_t lapic_ticks_per_ms(void)
{
	uint32_t start = 0xffffffffu, left;

	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | TIMER_VECTOR);
	lapic_write(LAPIC_TIMER_ICR, start);
	udelay(2000);
	left = lapic_read(LAPIC_TIMER_CCR);
	lapic_write(LAPIC_TIMER_ICR, 0);
	return (start - left) / 2;
}

static noreturn_fn void run_irq(uint64_t delay_ms, uint64_t limit)
{
	uint64_t seen, per_ms;

	/* IDT and TSS; every LVT masked and TPR 0xff until we open them below. */
	cpu_setup_traps();
	lapic_write(LAPIC_SVR, 0x100 | 0xff);        /* software-enable, spurious 0xff */
	lapic_write(LAPIC_TIMER_DCR, 0x3);           /* divide by 16 */
	per_ms = lapic_ticks_per_ms();
	if (!per_ms) {
		guest_printf("kestrel-guest: counter: the LAPIC timer does not count\n");
		guest_exit(1);
	}
	guest_printf("kestrel-guest: counter lapic timer %lu ticks/ms\n", per_ms);
	lapic_write(LAPIC_LVT_TIMER, LVT_PERIODIC | TIMER_VECTOR);
	lapic_write(LAPIC_TIMER_ICR, (uint32_t)(per_ms * delay_ms));
	lapic_write(LAPIC_TPR, 0);
	/* The handler (cpu.c) counts vectors >= 32 in stray_interrupts and EOIs them. */
	seen = stray_interrupts;
	for (;;) {
		__asm__ volatile("sti; hlt; cli" : : : "memory");
		while (seen != stray_interrupts) {
			seen++;
			print_count(limit);
		}
	}
}

/* Write one word in every page of [64 MiB, 64 MiB + mib MiB) that is RAM. */
static void touch_ram(const struct hvm_start_info *si, uint64_t mib)
{
	const uint64_t start = 64ull << 20;
	uint64_t end = start + (mib << 20), top = 0, pages = 0;

	if (si && si->version >= 1 && si->memmap_paddr && si->memmap_paddr < GUEST_MAPPED_END) {
		const struct hvm_memmap_table_entry *e =
			(const struct hvm_memmap_table_entry *)(uintptr_t)si->memmap_paddr;

		for (uint32_t i = 0; i < si->memmap_entries; i++)
			if (e[i].type == HVM_MEMMAP_TYPE_RAM && e[i].addr <= start &&
			    e[i].addr + e[i].size > top)
				top = e[i].addr + e[i].size;
	}
	if (end > top)
		end = top;
	for (uint64_t a = start; a + 8 <= end; a += 4096, pages++)
		*(volatile uint64_t *)(uintptr_t)a = a ^ 0x6b657374ull;
	guest_printf("kestrel-guest: counter touched %lu pages\n", pages);
}

int guest_main(const struct hvm_start_info *si)
{
	uint64_t delay_ms = cmdline_u64("delay_ms", 15);
	uint64_t limit = cmdline_u64("limit", 0);
	bool irq = cmdline_is("mode", "irq");

	if (cmdline_u64("touch", 0))
		touch_ram(si, cmdline_u64("touch", 0));
	if (delay_ms == 0 || delay_ms > 10000)
		delay_ms = 15;
	guest_printf("kestrel-guest: counter mode=%s delay_ms=%lu\n", irq ? "irq" : "poll", delay_ms);
	if (irq)
		run_irq(delay_ms, limit);
	run_poll(delay_ms, limit);
}

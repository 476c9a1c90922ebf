/* SPDX-License-Identifier: MIT */
/*
 * guest-hello: the smallest useful guest. Prints what it was booted with
 * and ends the way its command line asks:
 *   exit=N          exit status N through port 0x501 (default 0)
 *   exit=reset      i8042 reset (0xFE to port 0x64)
 *   mode=triplefault  empty IDT + exception -> triple fault (VMM SHUTDOWN)
 *   mode=hlt        cli; hlt forever (VMM HLT handling / timeouts)
 */
#include "lib/guest.h"

static void print_memmap(const struct hvm_start_info *si)
{
	uint64_t ram = 0;
	uint32_t n = 0;

	if (si && si->version >= 1 && si->memmap_paddr && si->memmap_paddr < GUEST_MAPPED_END)
		n = si->memmap_entries;
	const struct hvm_memmap_table_entry *e =
		n ? (const struct hvm_memmap_table_entry *)(uintptr_t)si->memmap_paddr : NULL;

	for (uint32_t i = 0; i < n; i++) {
		guest_printf("kestrel-guest: memmap[%u] addr 0x%lx size 0x%lx type %u\n", i,
			     e[i].addr, e[i].size, e[i].type);
		if (e[i].type == HVM_MEMMAP_TYPE_RAM)
			ram += e[i].size;
	}
	guest_printf("kestrel-guest: memmap %u entries, ram %lu bytes (%lu MiB)\n", n, ram,
		     ram >> 20);
}

static noreturn_fn void triple_fault(void)
{
	/* An empty IDT makes every exception escalate: #GP -> #DF -> shutdown.
	 * The trigger is a divide by zero: the CPL0 instruction emulator here
	 * implements div, while some (int3, ud2) end in emulation failures. */
	struct __attribute__((packed)) {
		uint16_t limit;
		uint64_t base;
	} empty = { 0, 0 };
	volatile uint32_t zero = 0;

	guest_puts("kestrel-guest: triple fault\n");
	__asm__ volatile("lidt %0" : : "m"(empty));
	__asm__ volatile("divl %1" : : "a"(1), "r"(zero), "d"(0));
	guest_halt();
}

int guest_main(const struct hvm_start_info *si)
{
	char buf[32];

	guest_puts("kestrel-guest: hello\n");
	guest_printf("kestrel-guest: cmdline \"%s\"\n", guest_cmdline());
	if (si)
		guest_printf("kestrel-guest: start_info version %u rsdp 0x%lx\n", si->version,
			     si->rsdp_paddr);
	print_memmap(si);

	if (cmdline_is("mode", "triplefault"))
		triple_fault();
	if (cmdline_is("mode", "hlt")) {
		guest_puts("kestrel-guest: halting\n");
		guest_halt();
	}
	if (cmdline_get("exit", buf, sizeof(buf)) && !strcmp(buf, "reset")) {
		guest_puts("kestrel-guest: reset\n");
		guest_reset();
	}
	int status = (int)cmdline_u64("exit", 0);
	guest_printf("kestrel-guest: exit %d\n", status);
	return status;
}

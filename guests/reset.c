/* SPDX-License-Identifier: MIT */
/*
 * guest-reset: resets the machine the way Linux's reboot code does, one
 * path per run (via=...):
 *   via=acpi    the FADT reset register: RSDP -> XSDT -> FACP, RESET_REG_SUP,
 *               then reset_value written to the I/O port RESET_REG names
 *   via=kbd     the i8042: wait for an empty input buffer, pulse 0xFE (x10)
 *   via=cf9     PCI reset control: read 0xCF9, write |2, then |6
 *   via=triple  empty IDT + exception -> triple fault (KVM_EXIT_SHUTDOWN)
 *   via=vector  leave long mode for real mode and jump to F000:FFF0, as
 *               Linux's "BIOS" reboot does (its default after EFI on a
 *               HW-reduced ACPI platform)
 * Every path that returns ends with exit status 99 on the debug-exit port,
 * so a reset the VMM missed never looks like a success.
 */
#include "lib/guest.h"

#define MISSED_RESET 99
#define PORT_CF9     0xcf9
#define VECTOR_TRAMPOLINE 0x8000u  /* below 64 KiB: 16-bit code with base 0 */

struct __attribute__((packed)) sdt_hdr {
	char sig[4];
	uint32_t len;
	uint8_t rev;
	uint8_t csum;
	char oem[6], oem_table[8];
	uint32_t oem_rev, creator, creator_rev;
};

static uint8_t checksum(const void *p, uint32_t n)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	while (n--)
		s += *b++;
	return s;
}

static const struct sdt_hdr *find_fadt(const struct hvm_start_info *si)
{
	const uint8_t *rsdp;
	const struct sdt_hdr *x;

	if (!si || !si->rsdp_paddr || si->rsdp_paddr >= GUEST_MAPPED_END)
		return NULL;
	rsdp = (const uint8_t *)(uintptr_t)si->rsdp_paddr;
	if (memcmp(rsdp, "RSD PTR ", 8) || rsdp[15] < 2)
		return NULL;
	x = (const struct sdt_hdr *)(uintptr_t)*(const uint64_t *)(rsdp + 24);
	if (memcmp(x->sig, "XSDT", 4) || checksum(x, x->len))
		return NULL;
	for (uint32_t off = sizeof(*x); off + 8 <= x->len; off += 8) {
		const struct sdt_hdr *t;
		uint64_t a;

		memcpy(&a, (const uint8_t *)x + off, 8);
		t = (const struct sdt_hdr *)(uintptr_t)a;
		if (!memcmp(t->sig, "FACP", 4))
			return checksum(t, t->len) ? NULL : t;
	}
	return NULL;
}

/* What Linux's acpi_reboot() checks before it writes the register. */
static void reset_acpi(const struct hvm_start_info *si)
{
	const struct sdt_hdr *f = find_fadt(si);
	const uint8_t *b = (const uint8_t *)f;
	uint32_t flags;
	uint64_t addr;

	if (!f || f->rev < 2 || f->len < 129) {
		guest_puts("kestrel-guest: no FADT with a reset register field\n");
		return;
	}
	memcpy(&flags, b + 112, 4);
	memcpy(&addr, b + 116 + 4, 8);
	if (!(flags & (1u << 10))) {
		guest_puts("kestrel-guest: FADT without RESET_REG_SUP\n");
		return;
	}
	if (b[116] != 1 || b[117] != 8 || b[118] != 0 || addr > 0xffff) {
		guest_printf("kestrel-guest: RESET_REG is not an 8-bit I/O port (space %u width %u)\n",
			     b[116], b[117]);
		return;
	}
	guest_printf("kestrel-guest: ACPI reset: 0x%x to port 0x%lx\n", b[128], addr);
	outb((uint16_t)addr, b[128]);
}

static void reset_kbd(void)
{
	for (int i = 0; i < 10; i++) {
		for (int j = 0; j < 0x10000 && (inb(PORT_I8042_CMD) & 0x02); j++)
			cpu_relax();
		outb(PORT_I8042_CMD, 0xfe);
	}
}

static void reset_cf9(void)
{
	uint8_t cf9 = inb(PORT_CF9) & (uint8_t)~0x06;

	outb(PORT_CF9, cf9 | 0x02);   /* request a hard reset */
	outb(PORT_CF9, cf9 | 0x06);   /* and do it */
}

static void reset_triple(void)
{
	struct __attribute__((packed)) {
		uint16_t limit;
		uint64_t base;
	} empty = { 0, 0 };
	volatile uint32_t zero = 0;

	/* A divide: this host's CPL0 emulator implements it (int3 is an emulation failure). */
	__asm__ volatile("lidt %0" : : "m"(empty));
	__asm__ volatile("divl %1" : : "a"(1), "r"(zero), "d"(0));
}

/*
 * Long mode -> compatibility mode -> paging off, LME off -> 16-bit
 * protected mode -> real mode -> F000:FFF0. Position independent: copied
 * to VECTOR_TRAMPOLINE, where its own GDT lives; entered with the copy's
 * address in %rdi.
 */
extern const uint8_t vector_tramp_start[], vector_tramp_end[];
__asm__(
	".section .rodata.vector_tramp, \"a\"\n"
	".globl vector_tramp_start, vector_tramp_end\n"
	".balign 16\n"
	"vector_tramp_start:\n"
	".code64\n"
	"	cli\n"
	"	lea (vt_gdtr - vector_tramp_start)(%rdi), %rax\n"
	"	lea (vt_gdt - vector_tramp_start)(%rdi), %rcx\n"
	"	mov %rcx, 2(%rax)\n"
	"	lgdt (%rax)\n"
	"	lea (vt_compat - vector_tramp_start)(%rdi), %rax\n"
	"	pushq $0x08\n"
	"	push %rax\n"
	"	lretq\n"
	".code32\n"
	"vt_compat:\n"
	"	mov $0x10, %eax\n"
	"	mov %eax, %ds\n"
	"	mov %eax, %ss\n"
	"	mov %cr0, %eax\n"
	"	and $0x7fffffff, %eax\n"   /* paging off: leaves IA-32e mode */
	"	mov %eax, %cr0\n"
	"	mov $0xc0000080, %ecx\n"
	"	rdmsr\n"
	"	and $0xfffffeff, %eax\n"   /* EFER.LME off */
	"	wrmsr\n"
	"	lea (vt_pm16 - vector_tramp_start)(%edi), %eax\n"
	"	pushl $0x18\n"
	"	push %eax\n"
	"	lret\n"
	".code16\n"
	"vt_pm16:\n"
	"	mov $0x20, %ax\n"
	"	mov %ax, %ds\n"
	"	mov %ax, %es\n"
	"	mov %ax, %ss\n"
	"	mov %cr0, %eax\n"
	"	and $0xfffffffe, %eax\n"   /* PE off: real mode */
	"	mov %eax, %cr0\n"
	"	ljmp $0xf000, $0xfff0\n"
	".code64\n"
	".balign 8\n"
	"vt_gdt:\n"
	"	.quad 0\n"
	"	.quad 0x00cf9b000000ffff\n"   /* 0x08: 32-bit code, flat */
	"	.quad 0x00cf93000000ffff\n"   /* 0x10: 32-bit data, flat */
	"	.quad 0x00009b000000ffff\n"   /* 0x18: 16-bit code, base 0, 64 KiB */
	"	.quad 0x000093000000ffff\n"   /* 0x20: 16-bit data, base 0, 64 KiB */
	"vt_gdt_end:\n"
	"vt_gdtr:\n"
	"	.word vt_gdt_end - vt_gdt - 1\n"
	"	.quad 0\n"
	"vector_tramp_end:\n"
	".text\n");

static void reset_vector(void)
{
	size_t n = (size_t)(vector_tramp_end - vector_tramp_start);
	uint8_t *dst = (uint8_t *)(uintptr_t)VECTOR_TRAMPOLINE;

	memcpy(dst, vector_tramp_start, n);
	__asm__ volatile("jmp *%0" : : "r"(dst), "D"(dst) : "memory");
}

int guest_main(const struct hvm_start_info *si)
{
	char via[16] = "";

	cmdline_get("via", via, sizeof(via));
	guest_printf("kestrel-guest: reset via %s\n", via[0] ? via : "(none)");
	if (!strcmp(via, "acpi"))
		reset_acpi(si);
	else if (!strcmp(via, "kbd"))
		reset_kbd();
	else if (!strcmp(via, "cf9"))
		reset_cf9();
	else if (!strcmp(via, "triple"))
		reset_triple();
	else if (!strcmp(via, "vector"))
		reset_vector();
	else
		guest_puts("kestrel-guest: via= must be acpi, kbd, cf9, triple or vector\n");
	/* The VMM ends the VM on the reset; an I/O exit may still let a few instructions run. */
	for (volatile int i = 0; i < 100000; i++)
		cpu_relax();
	guest_puts("kestrel-guest: still running after the reset\n");
	return MISSED_RESET;
}

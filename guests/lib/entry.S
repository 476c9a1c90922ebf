/* SPDX-License-Identifier: MIT */
/*
 * PVH entry for the test guests.
 *
 * Entered in 32-bit protected mode with flat segments and paging off,
 * EBX = guest-physical address of struct hvm_start_info. Every instruction
 * here runs at CPL0, which the development host emulates (~0.7 us each), so
 * the page tables are built by the assembler (static data) rather than by a
 * loop at run time, and the path to C is a couple of dozen instructions.
 *
 * Application processors enter at ap_trampoline_start (real mode, copied
 * below 1 MiB by the guest that starts them), switch to protected mode and
 * join the same path at ap_start32 with EBP = 1.
 */

#define PTE_P    0x001
#define PTE_W    0x002
#define PTE_U    0x004  /* all of memory is user accessible: CPL3 guests */
#define PTE_PWT  0x008
#define PTE_PCD  0x010
#define PTE_PS   0x080

#define SEL_KCODE   0x08
#define SEL_KDATA   0x10
#define SEL_KCODE32 0x28

#define AP_STACK_SIZE 8192
#define MAX_APS       63

/* --- XEN_ELFNOTE_PHYS32_ENTRY (type 18, name "Xen") ------------------------
 * The descriptor is 8 bytes like Linux's; QEMU reads a 64-bit value on ELF64
 * and pads the name to the PT_NOTE alignment, so keep that alignment at 4. */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4                 /* namesz: "Xen\0" */
	.long 8                 /* descsz */
	.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad pvh_start32

/* --- 32-bit entry ---------------------------------------------------------- */
	.section .text.entry, "ax"
	.code32
	.globl pvh_start32
pvh_start32:
	mov %ebx, %esi          /* start info -> first C argument later */
	xor %ebp, %ebp          /* 0: boot CPU */
	lgdt gdt_ptr
enter_long_mode:
	mov $pml4, %eax
	mov %eax, %cr3
	mov $0x20, %eax         /* CR4.PAE */
	mov %eax, %cr4
	mov $0xc0000080, %ecx   /* IA32_EFER */
	rdmsr
	or $0x100, %eax         /* LME */
	wrmsr
	mov $0x80000031, %eax   /* PG | NE | ET | PE */
	mov %eax, %cr0
	ljmp $SEL_KCODE, $start64

	.globl ap_start32
ap_start32:
	/* DS still caches the real-mode segment of the trampoline. */
	mov $SEL_KDATA, %eax
	mov %eax, %ds
	mov $1, %ebp
	jmp enter_long_mode

/* --- 64-bit ------------------------------------------------------------------ */
	.code64
start64:
	mov $SEL_KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	test %ebp, %ebp
	jnz ap64
	lea boot_stack_top(%rip), %rsp
	mov %esi, %edi
	call guest_start        /* does not return */
	jmp park

ap64:
	mov $1, %eax
	lock xaddl %eax, ap_next(%rip)
	cmp $MAX_APS, %eax
	jae park                /* more CPUs than stacks: stay parked */
	mov %eax, %edi          /* cpu_index */
	inc %eax
	imul $AP_STACK_SIZE, %eax, %eax
	lea ap_stacks(%rip), %rsp
	add %rax, %rsp
	call ap_main
park:
	cli
	hlt
	jmp park

/* --- AP trampoline: real mode, copied to a 4 KiB page below 1 MiB ----------
 * Position independent within its page: CS = page >> 4, IP = 0. It only
 * loads the GDT and jumps to 32-bit code in the image at its link address. */
	.section .rodata.trampoline, "a"
	.code16
	.globl ap_trampoline_start, ap_trampoline_end
ap_trampoline_start:
	cli
	mov %cs, %ax
	mov %ax, %ds
	lgdtl tramp_gdt_ptr - ap_trampoline_start
	mov %cr0, %eax
	or $1, %eax             /* PE */
	mov %eax, %cr0
	ljmpl $SEL_KCODE32, $ap_start32
	.balign 2
tramp_gdt_ptr:
	.word guest_gdt_end - guest_gdt - 1
	.long guest_gdt
ap_trampoline_end:
	.code64

/* --- GDT ---------------------------------------------------------------------
 * Accessed bits preset so the CPU (the emulator) never writes them back. */
	.section .data.gdt, "aw"
	.balign 16
	.globl guest_gdt, guest_gdt_end
guest_gdt:
	.quad 0
	.quad 0x00af9b000000ffff        /* 0x08 kernel code, 64-bit */
	.quad 0x00cf93000000ffff        /* 0x10 kernel data */
	.quad 0x00cff3000000ffff        /* 0x18 user data (DPL3) */
	.quad 0x00affb000000ffff        /* 0x20 user code, 64-bit (DPL3) */
	.quad 0x00cf9b000000ffff        /* 0x28 kernel code, 32-bit (APs) */
	.quad 0, 0                      /* 0x30 TSS, filled in by cpu.c */
guest_gdt_end:
gdt_ptr:                                /* 32-bit lgdt reads limit + base32 */
	.word guest_gdt_end - guest_gdt - 1
	.quad guest_gdt

/* --- identity-mapped page tables, 2 MiB pages ---------------------------------
 * 0..3 GiB write-back; 3..4 GiB (device window: MMIO, IOAPIC, LAPIC) and
 * 4..5 GiB (above-RAM probes) uncached. */
	.section .data.pagetables, "aw"
	.balign 4096
	.globl pml4
pml4:
	.quad pdpt + PTE_P + PTE_W + PTE_U
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x0000 + PTE_P + PTE_W + PTE_U
	.quad pd + 0x1000 + PTE_P + PTE_W + PTE_U
	.quad pd + 0x2000 + PTE_P + PTE_W + PTE_U
	.quad pd + 0x3000 + PTE_P + PTE_W + PTE_U
	.quad pd + 0x4000 + PTE_P + PTE_W + PTE_U
	.fill 507, 8, 0
pd:
	.set pde_index, 0
	.rept 5 * 512
	.if pde_index >= 3 * 512
	.quad (pde_index << 21) + PTE_P + PTE_W + PTE_U + PTE_PS + PTE_PWT + PTE_PCD
	.else
	.quad (pde_index << 21) + PTE_P + PTE_W + PTE_U + PTE_PS
	.endif
	.set pde_index, pde_index + 1
	.endr

	.data
	.balign 4
ap_next:
	.long 0

/* --- stacks ------------------------------------------------------------------ */
	.section .bss.stacks, "aw", @nobits
	.balign 4096
boot_stack:
	.skip 32768
boot_stack_top:
	.balign 4096
ap_stacks:
	.skip AP_STACK_SIZE * MAX_APS

	.section .note.GNU-stack, "", @progbits

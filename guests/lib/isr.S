/* SPDX-License-Identifier: MIT */
/* Exception stubs and the CPL0 <-> CPL3 switch. */

#define SEL_KDATA 0x10
#define SEL_UDATA 0x1b
#define SEL_UCODE 0x23
#define RFLAGS_USER 0x3002      /* IOPL=3, reserved bit 1, IF=0 (see cpu.h) */

	.text
	.code64

/* One 16-byte stub per vector: push a dummy error code where the CPU
 * pushes none, push the vector, join trap_common. */
	.globl isr_stubs
	.balign 16
isr_stubs:
	.set vec, 0
	.rept 256
	.balign 16
	.if vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30
	.else
	pushq $0
	.endif
	pushq $vec
	jmp trap_common
	.set vec, vec + 1
	.endr

trap_common:
	push %rax
	push %rbx
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %rbp
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, %rdi
	mov %rsp, %rbx
	and $-16, %rsp
	call trap_dispatch      /* returns only for events that resume */
	mov %rbx, %rsp
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rbp
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rbx
	pop %rax
	add $16, %rsp
	iretq

/* uint64_t run_user_asm(fn, arg, user_stack_top)
 * Saves the callee-saved registers and the stack pointer, then iretq to
 * user_thunk at CPL3 with rdi = arg, rsi = fn. user_thunk calls fn and
 * passes its return value to int 0x80, whose handler restores the saved
 * state and returns it from here. */
	.globl run_user_asm
run_user_asm:
	push %rbx
	push %rbp
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, kernel_saved_rsp(%rip)
	mov %rdi, %rax
	mov %rsi, %rdi          /* arg */
	mov %rax, %rsi          /* fn */
	pushq $SEL_UDATA        /* ss */
	pushq %rdx              /* rsp */
	pushq $RFLAGS_USER      /* rflags */
	pushq $SEL_UCODE        /* cs */
	lea user_thunk(%rip), %rax
	pushq %rax              /* rip */
	iretq

/* Back to CPL0 with rdi = return value: int 0x80 through a DPL3 gate. The
 * development host's KVM (kvm_pvm) raises #UD for `int n` at CPL3 instead
 * of delivering it, so trap_dispatch also accepts a #UD or #GP at either of
 * the two instructions below as the same request. */
	.globl user_thunk, user_exit_int, user_exit_ud2
user_thunk:                     /* CPL3 */
	call *%rsi
	mov %rax, %rdi
user_exit_int:
	int $0x80
user_exit_ud2:
	ud2

	.globl syscall_entry, return_to_kernel
syscall_entry:                  /* int 0x80 from CPL3: back to run_user_asm's caller */
return_to_kernel:               /* (uint64_t value), from trap_dispatch */
	mov $SEL_KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov kernel_saved_rsp(%rip), %rsp
	mov %rdi, %rax
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbp
	pop %rbx
	ret

	.bss
	.balign 8
kernel_saved_rsp:
	.quad 0

	.section .note.GNU-stack, "", @progbits

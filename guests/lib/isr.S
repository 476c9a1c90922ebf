/* SPDX-License-Identifier: MIT */
/* Exception stubs and the CPL0 <-> CPL3 switch. */

#define SEL_KDATA 0x10
#define SEL_UDATA 0x1b
#define SEL_UCODE 0x23
#define RFLAGS_USER 0x3002      /* IOPL=3, reserved bit 1, IF=0 */

	.text
	.code64

/* Stubs for vectors 0..31: push a dummy error code where the CPU pushes
 * none, push the vector, join trap_common. */
.macro isr_noerr vec
	.balign 16
	pushq $0
	pushq $\vec
	jmp trap_common
.endm
.macro isr_err vec
	.balign 16
	pushq $\vec
	jmp trap_common
.endm

	.globl isr_stubs
	.balign 16
isr_stubs:
	isr_noerr 0
	isr_noerr 1
	isr_noerr 2
	isr_noerr 3
	isr_noerr 4
	isr_noerr 5
	isr_noerr 6
	isr_noerr 7
	isr_err   8
	isr_noerr 9
	isr_err   10
	isr_err   11
	isr_err   12
	isr_err   13
	isr_err   14
	isr_noerr 15
	isr_noerr 16
	isr_err   17
	isr_noerr 18
	isr_noerr 19
	isr_noerr 20
	isr_err   21
	isr_noerr 22
	isr_noerr 23
	isr_noerr 24
	isr_noerr 25
	isr_noerr 26
	isr_noerr 27
	isr_noerr 28
	isr_err   29
	isr_err   30
	isr_noerr 31

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

user_thunk:                     /* CPL3 */
	call *%rsi
	mov %rax, %rdi
	int $0x80
	ud2                     /* not reached */

	.globl syscall_entry
syscall_entry:                  /* int 0x80 from CPL3: back to run_user_asm's caller */
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

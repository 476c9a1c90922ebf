/* SPDX-License-Identifier: MIT */
/*
 * Interrupt descriptor table, TSS and running code at CPL3.
 *
 * On the development host CPL3 code runs natively while CPL0 code is
 * emulated, so loops that must be fast (benchmarks, sweeps) run in user
 * mode. All of memory is mapped user-accessible, and `in`/`out` at CPL3
 * exit to the VMM instead of faulting: user mode is entered with IOPL=3
 * and the TSS carries an all-zero I/O permission bitmap. Both are needed:
 * kvm_pvm (the development host) runs user mode with IOPL forced to 0 and
 * IF forced to 1, but honours the TSS bitmap.
 */
#ifndef KESTREL_GUEST_CPU_H
#define KESTREL_GUEST_CPU_H

#include "guest.h"

#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA 0x1b /* 0x18 | RPL3 */
#define SEL_UCODE 0x23 /* 0x20 | RPL3 */
#define SEL_TSS   0x30

#define VEC_SYSCALL 0x80

/* Register state pushed by the exception stubs (isr.S). */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

/* Loads the IDT (all 256 vectors, DPL3 gate for int 0x80) and the TSS with
 * an I/O bitmap that allows every port, and masks the 8259s and the LAPIC
 * (TPR). An exception prints vector, error code, RIP and CR2 and exits with
 * status 3; NMIs and device interrupts are ignored. */
void cpu_setup_traps(void);

/* Runs fn(arg) at CPL3 (IOPL=3, IF=0 asked for) on a private user stack and
 * returns its return value, passed back to CPL0 through int 0x80. fn must
 * not use privileged instructions (hlt) and so must not call guest_exit(). */
uint64_t run_user(uint64_t (*fn)(uint64_t), uint64_t arg);

/* Device interrupts taken (and ignored) since cpu_setup_traps(). */
extern volatile uint64_t stray_interrupts;

/* Status used when an unexpected exception ends a guest. */
#define EXIT_TRAP 3

#endif

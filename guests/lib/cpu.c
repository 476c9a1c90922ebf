/* SPDX-License-Identifier: MIT */
/* IDT, TSS and the switch to CPL3 (see cpu.h). */
#include "cpu.h"

struct idt_gate {
	uint16_t off_lo;
	uint16_t sel;
	uint8_t ist;
	uint8_t type_attr;
	uint16_t off_mid;
	uint32_t off_hi;
	uint32_t zero;
};
_Static_assert(sizeof(struct idt_gate) == 16, "IDT gate layout");

struct tss64 {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
	/* I/O permission bitmap: all ports allowed, plus the byte after it. */
	uint8_t iomap[8192 + 1];
} __attribute__((packed));
_Static_assert(offsetof(struct tss64, iomap) == 104, "TSS layout");

struct desc_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

#define GATE_INTR_DPL0 0x8e
#define GATE_INTR_DPL3 0xee
#define ISR_STUB_SIZE  16
#define LAPIC_TPR      0x080
#define LAPIC_EOI      0x0b0
#define LAPIC_LVT_TIMER 0x320 /* then thermal, perf, LINT0, LINT1, error */
#define LAPIC_LVT_ERROR 0x370
#define LVT_MASKED     0x10000

extern uint64_t guest_gdt[];
extern const char isr_stubs[];
void syscall_entry(void);
noreturn_fn void return_to_kernel(uint64_t value);
extern const char user_exit_int[], user_exit_ud2[];
uint64_t run_user_asm(uint64_t (*fn)(uint64_t), uint64_t arg, uint64_t user_rsp);
void trap_dispatch(struct trap_frame *f);

static struct idt_gate idt[256] __attribute__((aligned(16)));
static struct tss64 tss __attribute__((aligned(16)));
static uint8_t kernel_trap_stack[16384] __attribute__((aligned(16)));
static uint8_t user_stack[65536] __attribute__((aligned(16)));

static void set_gate(unsigned vec, uint64_t handler, uint8_t type_attr)
{
	idt[vec] = (struct idt_gate){
		.off_lo = (uint16_t)handler,
		.sel = SEL_KCODE,
		.type_attr = type_attr,
		.off_mid = (uint16_t)(handler >> 16),
		.off_hi = (uint32_t)(handler >> 32),
	};
}

/* On the development host user mode always runs with IF=1 (kvm_pvm forces
 * it), so stray device interrupts must be kept out: mask both 8259s (a BIOS
 * may have left the timer running) and raise the LAPIC task priority to
 * block every fixed interrupt. What still arrives is acknowledged and
 * ignored by trap_dispatch. */
static void quiesce_interrupts(void)
{
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	mmio_write32(LAPIC_BASE + LAPIC_TPR, 0xff);
	/* ExtINT (the 8259 through LINT0) ignores the TPR: mask the LVTs. */
	for (uint32_t lvt = LAPIC_LVT_TIMER; lvt <= LAPIC_LVT_ERROR; lvt += 0x10)
		mmio_write32(LAPIC_BASE + lvt, LVT_MASKED);
}

void cpu_setup_traps(void)
{
	for (unsigned v = 0; v < 256; v++)
		set_gate(v, (uint64_t)(uintptr_t)isr_stubs + v * ISR_STUB_SIZE,
			 GATE_INTR_DPL0);
	set_gate(VEC_SYSCALL, (uint64_t)(uintptr_t)syscall_entry, GATE_INTR_DPL3);

	struct desc_ptr idtr = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };
	__asm__ volatile("lidt %0" : : "m"(idtr));

	tss.rsp[0] = (uint64_t)(uintptr_t)(kernel_trap_stack + sizeof(kernel_trap_stack));
	tss.iomap_base = offsetof(struct tss64, iomap);
	/* The byte after the bitmap covers the bits of ports 0x10000.. that a
	 * 2- or 4-byte access at 0xfffd..0xffff also checks. Architecturally it
	 * is 0xff; left 0 those accesses reach the VMM instead of faulting. */
	tss.iomap[8192] = 0;

	uint64_t base = (uint64_t)(uintptr_t)&tss, limit = sizeof(tss) - 1;
	guest_gdt[SEL_TSS / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) |
				 (0x89ull << 40) /* present, 64-bit TSS available */ |
				 (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	guest_gdt[SEL_TSS / 8 + 1] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(SEL_TSS));
	quiesce_interrupts();
}

uint64_t run_user(uint64_t (*fn)(uint64_t), uint64_t arg)
{
	return run_user_asm(fn, arg, (uint64_t)(uintptr_t)(user_stack + sizeof(user_stack)));
}

volatile uint64_t stray_interrupts;

static const char *const vec_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP",
	"#SS", "#GP", "#PF", "?15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "?22", "?23",
	"?24", "?25", "?26", "?27", "?28", "?29", "?30", "?31",
};

void trap_dispatch(struct trap_frame *f)
{
	if (f->vector == 2) /* NMI: a hostile guest may route one here; ignore */
		return;
	if (f->vector >= 32) { /* a device interrupt that got through */
		stray_interrupts++;
		mmio_write32(LAPIC_BASE + LAPIC_EOI, 0);
		return;
	}
	if ((f->vector == 6 || f->vector == 13) && (f->cs & 3) == 3 &&
	    (f->rip == (uintptr_t)user_exit_int || f->rip == (uintptr_t)user_exit_ud2))
		return_to_kernel(f->rdi);

	uint64_t cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	console_break_lock();
	uart_init();
	guest_printf("kestrel-guest: exception %lu %s error=0x%lx rip=0x%lx cs=0x%lx "
		     "rsp=0x%lx cr2=0x%lx\n",
		     f->vector, vec_names[f->vector & 31], f->error, f->rip, f->cs, f->rsp, cr2);
	guest_exit(EXIT_TRAP);
}

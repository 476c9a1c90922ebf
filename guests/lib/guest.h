/* SPDX-License-Identifier: MIT */
/*
 * Runtime for kestrel's freestanding test guests.
 *
 * The guests are entered through the PVH ABI (32-bit protected mode, paging
 * off, EBX = struct hvm_start_info), switch to long mode with identity-mapped
 * page tables for 0..5 GiB, and run C with a small library: port and MMIO
 * accessors, a polled 16550 console, command-line parsing and ways to end.
 *
 * On the development host every CPL0 instruction is emulated by KVM, so the
 * library keeps CPL0 paths short; fast loops drop to CPL3 (see cpu.h).
 */
#ifndef KESTREL_GUEST_H
#define KESTREL_GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define noreturn_fn __attribute__((noreturn))

/* --- PVH boot ABI (Xen public/arch-x86/hvm/start_info.h) ----------------- */

#define HVM_START_MAGIC 0x336ec578u

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	/* version >= 1 */
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

#define HVM_MEMMAP_TYPE_RAM 1

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info layout");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "memmap entry layout");

/* --- fixed ports and addresses ------------------------------------------ */

#define PORT_COM1        0x3f8
#define PORT_DEBUG_EXIT  0x501   /* kestrel / QEMU isa-debug-exit */
#define PORT_MARKER      0x502   /* unused port: phase markers for benches */
#define PORT_I8042_CMD   0x64
#define LAPIC_BASE       0xfee00000ull
#define IOAPIC_BASE      0xfec00000ull

/* Identity map built by entry.S: 0..5 GiB, 3..5 GiB uncached. */
#define GUEST_MAPPED_END 0x140000000ull

/* --- port I/O ------------------------------------------------------------- */

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

/* --- MMIO (identity mapped, so an address is a guest-physical address) --- */

static inline void mmio_write8(uint64_t a, uint8_t v)   { *(volatile uint8_t *)a = v; }
static inline void mmio_write16(uint64_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline void mmio_write64(uint64_t a, uint64_t v) { *(volatile uint64_t *)a = v; }
static inline uint8_t  mmio_read8(uint64_t a)  { return *(volatile uint8_t *)a; }
static inline uint16_t mmio_read16(uint64_t a) { return *(volatile uint16_t *)a; }
static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline uint64_t mmio_read64(uint64_t a) { return *(volatile uint64_t *)a; }

/* --- CPU helpers ---------------------------------------------------------- */

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" : : : "memory");
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))
			 : "memory");
}

/* lock xadd: returns the old value. */
static inline uint32_t atomic_fetch_add32(volatile uint32_t *p, uint32_t v)
{
	__asm__ volatile("lock xaddl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
	return v;
}

static inline uint32_t atomic_load32(const volatile uint32_t *p)
{
	return *p;
}

/* Spinlock from xchg (implicitly locked); cmpxchg16b is not emulated here. */
struct spinlock {
	volatile uint32_t locked;
};

static inline void spin_lock(struct spinlock *l)
{
	for (;;) {
		uint32_t v = 1;
		__asm__ volatile("xchgl %0, %1" : "+r"(v), "+m"(l->locked) : : "memory");
		if (v == 0)
			return;
		while (l->locked)
			cpu_relax();
	}
}

static inline void spin_unlock(struct spinlock *l)
{
	__asm__ volatile("" : : : "memory");
	l->locked = 0;
}

/* --- libc subset (the compiler may emit calls to the first four) ---------- */

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* --- console (16550 on COM1, polled) ------------------------------------- */

void uart_init(void);
void uart_putc(char c);
void guest_puts(const char *s); /* no newline added */
int guest_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int guest_snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Formats into a buffer, then writes it under the console lock (SMP safe). */
int guest_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Drops the console lock; for fatal paths that may interrupt a holder. */
void console_break_lock(void);

/* --- boot info and command line ------------------------------------------ */

/* Valid start info (magic checked) or NULL. */
const struct hvm_start_info *guest_start_info(void);
const char *guest_cmdline(void);
/* Value of `key=value` into out (NUL terminated); false if absent. A bare
 * `key` token yields an empty value. */
bool cmdline_get(const char *key, char *out, size_t outlen);
/* Numeric value (decimal or 0x hex); def if absent or malformed. */
uint64_t cmdline_u64(const char *key, uint64_t def);
bool cmdline_is(const char *key, const char *value);
/* Parse decimal or 0x-prefixed hex; false if malformed. */
bool parse_u64(const char *s, uint64_t *out);

/* --- timing -------------------------------------------------------------- */

/* TSC frequency from CPUID (0x15, 0x16, 0x40000010), else a 2.5 GHz guess. */
uint64_t tsc_hz(void);
void udelay(uint64_t us);

/* --- ending -------------------------------------------------------------- */

/* Status byte to port 0x501; if the VMM ignores it, halts forever. */
noreturn_fn void guest_exit(int status);
/* 0xFE to the i8042 command port (pulse reset); halts if ignored. */
noreturn_fn void guest_reset(void);
/* cli; hlt forever. */
noreturn_fn void guest_halt(void);

/* --- provided by each guest ------------------------------------------------ */

/* Called on the boot CPU; the return value becomes the exit status. */
int guest_main(const struct hvm_start_info *si);
/* Called on each application processor (weak default: halt). cpu_index
 * counts APs from 0 in the order they reached long mode. */
void ap_main(uint32_t cpu_index);

/* Trampoline for APs (entry.S): real-mode code copied below 1 MiB. */
extern const uint8_t ap_trampoline_start[], ap_trampoline_end[];

#endif

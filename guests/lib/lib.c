/* SPDX-License-Identifier: MIT */
/* Start of C, the libc subset, the command line, timing and the ways out. */
#include "guest.h"

static const struct hvm_start_info *start_info;

/* Called by entry.S on the boot CPU with the stack set up. */
noreturn_fn void guest_start(uint32_t start_info_paddr);

noreturn_fn void guest_start(uint32_t start_info_paddr)
{
	const struct hvm_start_info *si =
		(const struct hvm_start_info *)(uintptr_t)start_info_paddr;

	uart_init();
	if (si && si->magic == HVM_START_MAGIC)
		start_info = si;
	else
		guest_printf("kestrel-guest: bad start info at 0x%x (magic 0x%x)\n",
			     start_info_paddr, si ? si->magic : 0);
	guest_exit(guest_main(start_info));
}

__attribute__((weak)) void ap_main(uint32_t cpu_index)
{
	(void)cpu_index;
	guest_halt();
}

/* --- libc subset ---------------------------------------------------------- */

void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;

	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *dp = d;
	const unsigned char *sp = s;

	while (n--)
		*dp++ = *sp++;
	return d;
}

void *memmove(void *d, const void *s, size_t n)
{
	unsigned char *dp = d;
	const unsigned char *sp = s;

	if (dp <= sp || dp >= sp + n)
		return memcpy(d, s, n);
	while (n--)
		dp[n] = sp[n];
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return (unsigned char)*a - (unsigned char)*b;
		if (!*a)
			return 0;
	}
	return 0;
}

/* --- command line ------------------------------------------------------------ */

const struct hvm_start_info *guest_start_info(void)
{
	return start_info;
}

const char *guest_cmdline(void)
{
	if (!start_info || !start_info->cmdline_paddr ||
	    start_info->cmdline_paddr >= GUEST_MAPPED_END)
		return "";
	return (const char *)(uintptr_t)start_info->cmdline_paddr;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool cmdline_get(const char *key, char *out, size_t outlen)
{
	const char *p = guest_cmdline();
	size_t klen = strlen(key);
	bool found = false;

	/* Later tokens win, as on a kernel command line. */
	while (*p) {
		while (is_space(*p))
			p++;
		const char *tok = p;
		while (*p && !is_space(*p))
			p++;
		size_t tlen = (size_t)(p - tok);
		if (tlen < klen || strncmp(tok, key, klen))
			continue;
		if (tlen == klen || tok[klen] == '=') {
			const char *v = tlen == klen ? tok + klen : tok + klen + 1;
			size_t vlen = (size_t)(p - v), i;

			for (i = 0; outlen && i < vlen && i + 1 < outlen; i++)
				out[i] = v[i];
			if (outlen)
				out[i] = 0;
			found = true;
		}
	}
	return found;
}

bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned base = 10;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return false;
		if (v > (UINT64_MAX - d) / base)
			return false;
		v = v * base + d;
	}
	*out = v;
	return true;
}

uint64_t cmdline_u64(const char *key, uint64_t def)
{
	char buf[32];
	uint64_t v;

	if (!cmdline_get(key, buf, sizeof(buf)) || !parse_u64(buf, &v))
		return def;
	return v;
}

bool cmdline_is(const char *key, const char *value)
{
	char buf[64];

	return cmdline_get(key, buf, sizeof(buf)) && !strcmp(buf, value);
}

/* --- timing -------------------------------------------------------------------- */

/* pvclock_vcpu_time_info, filled in by KVM (Documentation/virt/kvm/x86/msr.rst). */
struct pvclock_time {
	uint32_t version;
	uint32_t pad0;
	uint64_t tsc_timestamp;
	uint64_t system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags;
	uint8_t pad[2];
};
_Static_assert(sizeof(struct pvclock_time) == 32, "pvclock layout");

#define KVM_FEATURE_CLOCKSOURCE  (1u << 0)
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)
#define MSR_KVM_SYSTEM_TIME      0x12
#define MSR_KVM_SYSTEM_TIME_NEW  0x4b564d01

/* The TSC rate KVM scales kvmclock with: ns = (tsc << shift) * mul >> 32.
 * Enabled for one read, then switched off again. */
static uint64_t kvmclock_tsc_hz(void)
{
	static struct pvclock_time pvti __attribute__((aligned(64)));
	uint32_t r[4], msr;

	cpuid(0x40000001, 0, r);
	if (r[0] & KVM_FEATURE_CLOCKSOURCE2)
		msr = MSR_KVM_SYSTEM_TIME_NEW;
	else if (r[0] & KVM_FEATURE_CLOCKSOURCE)
		msr = MSR_KVM_SYSTEM_TIME;
	else
		return 0;
	wrmsr(msr, (uint64_t)(uintptr_t)&pvti | 1);
	uint32_t mul = pvti.tsc_to_system_mul;
	int shift = pvti.tsc_shift;
	wrmsr(msr, 0);
	if (!mul)
		return 0;
	uint64_t hz = (1000000000ull << 32) / mul;
	return shift >= 0 ? hz >> shift : hz << -shift;
}

uint64_t tsc_hz(void)
{
	static uint64_t cached;
	uint32_t r[4];

	if (cached)
		return cached;
	cpuid(0, 0, r);
	uint32_t max = r[0];
	if (max >= 0x15) {
		cpuid(0x15, 0, r);
		if (r[0] && r[1] && r[2])
			cached = (uint64_t)r[2] * r[1] / r[0];
	}
	if (!cached && max >= 0x16) {
		cpuid(0x16, 0, r);
		if (r[0] & 0xffff)
			cached = (uint64_t)(r[0] & 0xffff) * 1000000;
	}
	if (!cached) {
		cpuid(1, 0, r);
		if (r[2] & (1u << 31)) { /* hypervisor present */
			cpuid(0x40000000, 0, r);
			uint32_t hv_max = r[0];
			bool kvm = r[1] == 0x4b4d564b && r[2] == 0x564b4d56 && r[3] == 0x4d;
			if (hv_max >= 0x40000010) {
				cpuid(0x40000010, 0, r);
				if (r[0])
					cached = (uint64_t)r[0] * 1000;
			}
			if (!cached && kvm)
				cached = kvmclock_tsc_hz();
		}
	}
	if (!cached)
		cached = 2500000000ull;
	return cached;
}

void udelay(uint64_t us)
{
	uint64_t end = rdtsc() + us * (tsc_hz() / 1000000);

	while ((int64_t)(rdtsc() - end) < 0)
		cpu_relax();
}

/* --- ending -------------------------------------------------------------------- */

noreturn_fn void guest_halt(void)
{
	for (;;)
		__asm__ volatile("cli; hlt" : : : "memory");
}

noreturn_fn void guest_exit(int status)
{
	outb(PORT_DEBUG_EXIT, (uint8_t)status);
	guest_halt();
}

noreturn_fn void guest_reset(void)
{
	outb(PORT_I8042_CMD, 0xfe);
	guest_halt();
}

/* SPDX-License-Identifier: MIT */
/*
 * guest-smp: finds the CPUs in the ACPI MADT and starts every application
 * processor with INIT-SIPI-SIPI through the xAPIC (x2APIC when an APIC ID
 * does not fit in 8 bits). Each AP comes up in real mode at the trampoline,
 * reaches long mode on the boot CPU's page tables, says hello and halts.
 * Exit status 0 when all came up within the time limit, 1 otherwise.
 * Cmdline: timeout_ms=N (default 5000); rsdp=scan ignores rsdp_paddr and
 * scans 0xE0000..0xFFFFF for the RSDP, as a VMM without it would need.
 */
#include "lib/guest.h"

#define TRAMPOLINE_PADDR 0x8000u /* SIPI vector 0x08: CS:IP = 0800:0000 */
#define MAX_CPUS 64

#define LAPIC_ID    0x020
#define LAPIC_SVR   0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_INIT    0x00000500u
#define ICR_SIPI    0x00000600u
#define ICR_ASSERT  0x00004000u
#define ICR_BUSY    0x00001000u
#define MSR_APIC_BASE 0x1b
#define APIC_BASE_X2  (1u << 10)
#define APIC_BASE_EN  (1u << 11)
#define MSR_X2APIC_ICR 0x830

struct acpi_header {
	char sig[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	uint32_t creator_id;
	uint32_t creator_revision;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_header) == 36, "ACPI SDT header");

struct acpi_rsdp {
	char sig[8];
	uint8_t checksum;
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt;
	uint32_t length; /* revision >= 2 */
	uint64_t xsdt;
	uint8_t ext_checksum;
	uint8_t reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP layout");

static uint32_t cpu_ids[MAX_CPUS];
static uint32_t n_cpus;
static volatile uint32_t aps_up;
static bool use_x2apic;

static bool checksum_ok(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum = (uint8_t)(sum + *b++);
	return sum == 0;
}

static bool addr_ok(uint64_t paddr, uint64_t len)
{
	return paddr && len <= GUEST_MAPPED_END && paddr <= GUEST_MAPPED_END - len;
}

static const struct acpi_rsdp *find_rsdp(const struct hvm_start_info *si)
{
	if (si && !cmdline_is("rsdp", "scan") && addr_ok(si->rsdp_paddr, 20)) {
		const struct acpi_rsdp *r = (const void *)(uintptr_t)si->rsdp_paddr;
		if (!memcmp(r->sig, "RSD PTR ", 8) && checksum_ok(r, 20))
			return r;
		guest_printf("kestrel-guest: rsdp_paddr 0x%lx has no valid RSDP\n",
			     si->rsdp_paddr);
	}
	for (uintptr_t a = 0xe0000; a < 0x100000; a += 16) {
		const struct acpi_rsdp *r = (const void *)a;
		if (!memcmp(r->sig, "RSD PTR ", 8) && checksum_ok(r, 20)) {
			guest_printf("kestrel-guest: rsdp found by scan at 0x%lx\n", a);
			return r;
		}
	}
	return NULL;
}

static const struct acpi_header *map_table(uint64_t paddr)
{
	if (!addr_ok(paddr, sizeof(struct acpi_header)))
		return NULL;
	const struct acpi_header *h = (const void *)(uintptr_t)paddr;
	if (h->length < sizeof(*h) || !addr_ok(paddr, h->length) || !checksum_ok(h, h->length))
		return NULL;
	return h;
}

static const struct acpi_header *find_madt(const struct acpi_rsdp *rsdp)
{
	const struct acpi_header *root = NULL;
	unsigned esize = 4;

	if (rsdp->revision >= 2 && rsdp->xsdt && checksum_ok(rsdp, sizeof(*rsdp))) {
		root = map_table(rsdp->xsdt);
		esize = 8;
	}
	if (!root) {
		root = map_table(rsdp->rsdt);
		esize = 4;
	}
	if (!root)
		return NULL;
	const uint8_t *ent = (const uint8_t *)(root + 1);
	size_t n = (root->length - sizeof(*root)) / esize;
	for (size_t i = 0; i < n; i++) {
		uint64_t pa = 0;
		memcpy(&pa, ent + i * esize, esize);
		const struct acpi_header *h = map_table(pa);
		if (h && !memcmp(h->sig, "APIC", 4))
			return h;
	}
	return NULL;
}

/* Collects the enabled processors; stops at the first malformed entry. */
static void parse_madt(const struct acpi_header *madt, uint32_t *n_lapic, uint32_t *n_x2apic)
{
	const uint8_t *p = (const uint8_t *)madt + sizeof(*madt) + 8; /* lapic addr, flags */
	const uint8_t *end = (const uint8_t *)madt + madt->length;

	while (p + 2 <= end && p[1] >= 2 && p + p[1] <= end) {
		uint32_t id = UINT32_MAX, flags = 0;
		if (p[0] == 0 && p[1] >= 8) { /* Processor Local APIC */
			memcpy(&flags, p + 4, 4);
			if (flags & 1) {
				id = p[3];
				(*n_lapic)++;
			}
		} else if (p[0] == 9 && p[1] >= 16) { /* Processor Local x2APIC */
			memcpy(&flags, p + 8, 4);
			if (flags & 1) {
				memcpy(&id, p + 4, 4);
				(*n_x2apic)++;
			}
		}
		if (id != UINT32_MAX && n_cpus < MAX_CPUS)
			cpu_ids[n_cpus++] = id;
		p += p[1];
	}
}

static uint32_t my_apic_id(void)
{
	uint32_t r[4];

	cpuid(0, 0, r);
	if (r[0] >= 0xb) {
		cpuid(0xb, 0, r);
		if (r[1]) /* leaf 0xb implemented */
			return r[3];
	}
	cpuid(1, 0, r);
	return r[1] >> 24;
}

static void send_ipi(uint32_t apic_id, uint32_t icr_lo)
{
	if (use_x2apic) {
		wrmsr(MSR_X2APIC_ICR, ((uint64_t)apic_id << 32) | icr_lo);
		return;
	}
	mmio_write32(LAPIC_BASE + LAPIC_ICR_HI, apic_id << 24);
	mmio_write32(LAPIC_BASE + LAPIC_ICR_LO, icr_lo);
	for (int i = 0; i < 1000 && (mmio_read32(LAPIC_BASE + LAPIC_ICR_LO) & ICR_BUSY); i++)
		cpu_relax();
}

void ap_main(uint32_t cpu_index)
{
	(void)cpu_index;
	/* Print first, count after: the boot CPU's summary then follows every
	 * AP's line. guest_printf serialises on the console lock (xchg). */
	guest_printf("kestrel-guest: cpu %u up\n", my_apic_id());
	atomic_fetch_add32(&aps_up, 1);
	guest_halt();
}

int guest_main(const struct hvm_start_info *si)
{
	uint64_t timeout_ms = cmdline_u64("timeout_ms", 5000);
	uint32_t n_lapic = 0, n_x2apic = 0;

	const struct acpi_rsdp *rsdp = find_rsdp(si);
	if (!rsdp) {
		guest_puts("kestrel-guest: no RSDP\n");
		return 1;
	}
	const struct acpi_header *madt = find_madt(rsdp);
	if (!madt) {
		guest_puts("kestrel-guest: no MADT\n");
		return 1;
	}
	parse_madt(madt, &n_lapic, &n_x2apic);
	guest_printf("kestrel-guest: madt lapic=%u x2apic=%u cpus=%u\n", n_lapic, n_x2apic,
		     n_cpus);

	uint32_t bsp = my_apic_id();
	uint32_t expected_aps = 0;
	for (uint32_t i = 0; i < n_cpus; i++) {
		if (cpu_ids[i] == bsp)
			continue;
		expected_aps++;
		if (cpu_ids[i] >= 0xff)
			use_x2apic = true;
	}
	guest_printf("kestrel-guest: bsp apic id %u\n", bsp);

	if (expected_aps) {
		/* Everything above is read before the trampoline overwrites low memory. */
		memcpy((void *)(uintptr_t)TRAMPOLINE_PADDR, ap_trampoline_start,
		       (size_t)(ap_trampoline_end - ap_trampoline_start));
		uint64_t base = rdmsr(MSR_APIC_BASE);
		if (use_x2apic)
			wrmsr(MSR_APIC_BASE, base | APIC_BASE_EN | APIC_BASE_X2);
		else
			mmio_write32(LAPIC_BASE + LAPIC_SVR, 0x1ff); /* software enable */

		for (uint32_t i = 0; i < n_cpus; i++) {
			if (cpu_ids[i] == bsp)
				continue;
			send_ipi(cpu_ids[i], ICR_INIT | ICR_ASSERT);
			udelay(10000);
			send_ipi(cpu_ids[i], ICR_SIPI | ICR_ASSERT | (TRAMPOLINE_PADDR >> 12));
			udelay(200);
			send_ipi(cpu_ids[i], ICR_SIPI | ICR_ASSERT | (TRAMPOLINE_PADDR >> 12));
		}

		uint64_t start = rdtsc(), limit = timeout_ms * (tsc_hz() / 1000);
		while (atomic_load32(&aps_up) < expected_aps && rdtsc() - start < limit)
			cpu_relax();
	}

	uint32_t up = 1 + atomic_load32(&aps_up);
	guest_printf("kestrel-guest: smp %u/%u cpus\n", up, expected_aps + 1);
	return up == expected_aps + 1 ? 0 : 1;
}

/*
 * ACPI tables (ACPI 6.x): RSDP -> XSDT -> {FADT -> DSDT, MADT, MCFG}.
 * The platform is HW-reduced: no PM1/GPE blocks, no SCI, power-off through
 * the sleep control register, reset through the FADT reset register (port
 * 0xCF9 of the PCI host). Everything is built in a host buffer and copied
 * to LAYOUT_ACPI_ADDR, which lies inside the e820-reserved area below 1 MiB
 * where legacy RSDP scanning also finds it. The last 16 bytes of that area
 * are the real-mode reset vector (see acpi_reset_vector).
 */
#include "boot/acpi.h"
#include "boot/aml.h"
#include "mem/layout.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ACPI_OEM_ID       "KESTRL"     /* 6 bytes */
#define ACPI_OEM_TABLE_ID "KESTREL "   /* 8 bytes */
#define ACPI_CREATOR_ID   "KSTR"
#define ACPI_MAX_CPUS     254          /* 8-bit APIC ids; 0xff is broadcast, one left for the IOAPIC */

struct __attribute__((packed)) acpi_rsdp {
	char signature[8];
	uint8_t checksum;        /* over the first 20 bytes */
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t ext_checksum;    /* over all 36 bytes */
	uint8_t reserved[3];
};
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP layout");

struct __attribute__((packed)) acpi_sdt_hdr {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
};
_Static_assert(sizeof(struct acpi_sdt_hdr) == 36, "SDT header layout");

struct __attribute__((packed)) acpi_gas {
	uint8_t space_id;        /* 1: system I/O */
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;     /* 1: byte */
	uint64_t address;
};
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS layout");

struct __attribute__((packed)) acpi_fadt {
	struct acpi_sdt_hdr hdr;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
	uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk;
	uint32_t pm2_cnt_blk, pm_tmr_blk, gpe0_blk, gpe1_blk;
	uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len;
	uint8_t gpe0_blk_len, gpe1_blk_len, gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
	uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk, x_pm_tmr_blk, x_gpe0_blk, x_gpe1_blk;
	struct acpi_gas sleep_control_reg;
	struct acpi_gas sleep_status_reg;
	char hypervisor_vendor_id[8];
};
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT layout (revision 6)");
_Static_assert(__builtin_offsetof(struct acpi_fadt, flags) == 112, "FADT layout");
_Static_assert(__builtin_offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT layout");
_Static_assert(__builtin_offsetof(struct acpi_fadt, sleep_control_reg) == 244, "FADT layout");

#define FADT_RESET_REG_SUP    (1u << 10)
#define FADT_HW_REDUCED_ACPI  (1u << 20)
#define FADT_BOOT_LEGACY_DEVICES (1u << 0)
#define FADT_BOOT_8042        (1u << 1)   /* Linux probes the i8042 only with this */

struct __attribute__((packed)) acpi_madt {
	struct acpi_sdt_hdr hdr;
	uint32_t lapic_address;
	uint32_t flags;
};
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT layout");
#define MADT_PCAT_COMPAT 1u

struct __attribute__((packed)) madt_lapic {
	uint8_t type, length;    /* 0, 8 */
	uint8_t processor_uid;
	uint8_t apic_id;
	uint32_t flags;          /* bit 0: enabled */
};
_Static_assert(sizeof(struct madt_lapic) == 8, "MADT local APIC layout");

struct __attribute__((packed)) madt_ioapic {
	uint8_t type, length;    /* 1, 12 */
	uint8_t ioapic_id;
	uint8_t reserved;
	uint32_t address;
	uint32_t gsi_base;
};
_Static_assert(sizeof(struct madt_ioapic) == 12, "MADT IOAPIC layout");

struct __attribute__((packed)) madt_iso {
	uint8_t type, length;    /* 2, 10 */
	uint8_t bus;             /* 0: ISA */
	uint8_t source;
	uint32_t gsi;
	uint16_t flags;          /* MPS INTI flags */
};
_Static_assert(sizeof(struct madt_iso) == 10, "MADT interrupt source override layout");

struct __attribute__((packed)) madt_lapic_nmi {
	uint8_t type, length;    /* 4, 6 */
	uint8_t processor_uid;   /* 0xff: all processors */
	uint16_t flags;
	uint8_t lint;
};
_Static_assert(sizeof(struct madt_lapic_nmi) == 6, "MADT local APIC NMI layout");

/* MPS INTI flags: polarity bits 0-1 (1 = active high), trigger bits 2-3 (1 = edge). */
#define MPS_INTI_EDGE_HIGH 0x0005

struct __attribute__((packed)) acpi_mcfg {
	struct acpi_sdt_hdr hdr;
	uint64_t reserved;
};
_Static_assert(sizeof(struct acpi_mcfg) == 44, "MCFG layout");

struct __attribute__((packed)) mcfg_alloc {
	uint64_t base;
	uint16_t segment;
	uint8_t start_bus, end_bus;
	uint32_t reserved;
};
_Static_assert(sizeof(struct mcfg_alloc) == 16, "MCFG allocation layout");

uint8_t acpi_checksum(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint8_t sum = 0;

	if (!p)
		return 0;
	for (size_t i = 0; i < len; i++)
		sum += p[i];
	return (uint8_t)(0x100 - sum);
}

/* ---- the area the tables are laid out in ---------------------------------- */

struct acpi_area {
	uint8_t *buf;
	size_t size, used;
	int err;
};

/* Reserve `len` bytes, 16-byte aligned; returns the offset or sets -ENOSPC. */
static size_t area_alloc(struct acpi_area *a, size_t len)
{
	size_t off = (a->used + 15) & ~(size_t)15;

	if (a->err || off > a->size || len > a->size - off) {
		a->err = -ENOSPC;
		return 0;
	}
	a->used = off + len;
	return off;
}

static void sdt_header(struct acpi_sdt_hdr *h, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(h->signature, sig, 4);
	h->length = htole32(len);
	h->revision = rev;
	h->checksum = 0;
	memcpy(h->oem_id, ACPI_OEM_ID, 6);
	memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, 8);
	h->oem_revision = htole32(1);
	memcpy(h->creator_id, ACPI_CREATOR_ID, 4);
	h->creator_revision = htole32(1);
}

/* Copy a finished table into the area and fix its checksum there. */
static uint64_t area_put_table(struct acpi_area *a, const void *t, size_t len)
{
	size_t off = area_alloc(a, len);

	if (a->err)
		return 0;
	memcpy(a->buf + off, t, len);
	a->buf[off + 9] = acpi_checksum(a->buf + off, len);
	return LAYOUT_ACPI_ADDR + off;
}

/* ---- DSDT ---------------------------------------------------------------- */

/* Resource descriptors (ACPI 6.x section 6.4). */
static void rt_io(struct aml *rt, uint16_t base, uint8_t len)
{
	/*
	 * I/O port descriptor with min == max, i.e. a fixed range. Not the
	 * "fixed location" form (0x4b), which only decodes 10 address bits
	 * and cannot express 0xcf8.
	 */
	aml_byte(rt, 0x47);
	aml_byte(rt, 0x01);        /* 16-bit decode */
	aml_u16(rt, base);
	aml_u16(rt, base);
	aml_byte(rt, 1);           /* alignment */
	aml_byte(rt, len);
}

static void rt_irq(struct aml *rt, unsigned irq)
{
	aml_byte(rt, 0x22);        /* IRQ descriptor, 2 bytes: edge, active high, exclusive */
	aml_u16(rt, (uint16_t)(1u << irq));
}

enum { RT_MEM = 0, RT_IO = 1, RT_BUS = 2 };
/* General flags: MaxFixed | MinFixed, positive decode, producer (a bridge window). */
#define RT_ADDR_FIXED 0x0c

static void rt_word(struct aml *rt, uint8_t type, uint8_t tflags, uint16_t min, uint16_t max)
{
	aml_byte(rt, 0x88);        /* Word Address Space descriptor */
	aml_u16(rt, 13);
	aml_byte(rt, type);
	aml_byte(rt, RT_ADDR_FIXED);
	aml_byte(rt, tflags);
	aml_u16(rt, 0);            /* granularity */
	aml_u16(rt, min);
	aml_u16(rt, max);
	aml_u16(rt, 0);            /* translation offset */
	aml_u16(rt, (uint16_t)(max - min + 1));
}

static void rt_dword_mem(struct aml *rt, uint32_t min, uint32_t len)
{
	aml_byte(rt, 0x87);        /* DWord Address Space descriptor */
	aml_u16(rt, 23);
	aml_byte(rt, RT_MEM);
	aml_byte(rt, RT_ADDR_FIXED);
	aml_byte(rt, 0x01);        /* read-write, non-cacheable */
	aml_u32(rt, 0);            /* granularity */
	aml_u32(rt, min);
	aml_u32(rt, min + len - 1);
	aml_u32(rt, 0);            /* translation offset */
	aml_u32(rt, len);
}

/* End tag; its checksum byte makes the whole template sum to zero. */
static void rt_end(struct aml *rt)
{
	aml_byte(rt, 0x79);
	if (!rt->err)
		aml_byte(rt, acpi_checksum(rt->buf, rt->len));
}

static void name_resources(struct aml *a, const char *name, struct aml *rt)
{
	rt_end(rt);
	if (rt->err) {
		if (!a->err)
			a->err = rt->err;
		return;
	}
	aml_name(a, name);
	aml_buffer(a, rt->buf, rt->len);
}

static void dsdt_pci0(struct aml *a)
{
	struct aml rt;
	size_t dev, prt;

	dev = aml_device(a, "PCI0");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0A08");
	aml_name(a, "_CID");
	aml_eisaid(a, "PNP0A03");
	aml_name(a, "_SEG");
	aml_integer(a, 0);
	aml_name(a, "_BBN");
	aml_integer(a, 0);
	aml_name(a, "_UID");
	aml_integer(a, 0);

	aml_init(&rt);
	rt_word(&rt, RT_BUS, 0, 0, 0);
	rt_io(&rt, LAYOUT_PORT_PCI_CONF, 8);
	rt_word(&rt, RT_IO, 0x03, 0x0000, LAYOUT_PORT_PCI_CONF - 1);   /* entire range */
	rt_word(&rt, RT_IO, 0x03, 0x0d00, 0xffff);
	rt_dword_mem(&rt, (uint32_t)LAYOUT_PCI_MMIO_START, (uint32_t)LAYOUT_PCI_MMIO_SIZE);
	name_resources(a, "_CRS", &rt);
	aml_free(&rt);

	/* _PRT: slot 0 is the host bridge itself; slots 1-31, INTA-INTD, to GSIs. */
	aml_name(a, "_PRT");
	prt = aml_package(a, 31 * 4);
	for (unsigned slot = 1; slot < 32; slot++) {
		for (unsigned pin = 0; pin < 4; pin++) {
			size_t e = aml_package(a, 4);

			aml_integer(a, ((uint64_t)slot << 16) | 0xffff);
			aml_integer(a, pin);
			aml_integer(a, 0);     /* source: none, the index is a GSI */
			aml_integer(a, LAYOUT_PCI_IRQ(slot, pin));
			aml_close(a, e);
		}
	}
	aml_close(a, prt);
	aml_close(a, dev);
}

/*
 * A legacy ISA device with fixed ports and one IRQ. Under HW-reduced ACPI
 * Linux has no legacy PIC, so ISA IRQs exist only for devices described
 * here: the UART, the RTC (rtc_cmos) and the i8042 each need their entry.
 */
struct dsdt_isa_dev {
	const char *name, *hid;
	unsigned uid;
	uint16_t ports[2];
	uint8_t lens[2];
	unsigned irq;
};

static void dsdt_isa(struct aml *a, const struct dsdt_isa_dev *d)
{
	struct aml rt;
	size_t dev, m;

	dev = aml_device(a, d->name);
	aml_name(a, "_HID");
	aml_eisaid(a, d->hid);
	aml_name(a, "_UID");
	aml_integer(a, d->uid);
	m = aml_method(a, "_STA", 0, 0);
	aml_return(a);
	aml_integer(a, 0x0f);          /* present, enabled, shown, functioning */
	aml_close(a, m);

	aml_init(&rt);
	for (unsigned i = 0; i < 2 && d->lens[i]; i++)
		rt_io(&rt, d->ports[i], d->lens[i]);
	rt_irq(&rt, d->irq);
	name_resources(a, "_CRS", &rt);
	aml_free(&rt);
	aml_close(a, dev);
}

static const struct dsdt_isa_dev dsdt_isa_devs[] = {
	{ "COM1", "PNP0501", 1, { LAYOUT_PORT_COM1 }, { 8 }, LAYOUT_IRQ_COM1 },
	{ "RTC0", "PNP0B00", 0, { LAYOUT_PORT_RTC }, { 2 }, LAYOUT_IRQ_RTC },
	{ "PS2K", "PNP0303", 0, { LAYOUT_PORT_I8042, LAYOUT_PORT_I8042 + 4 }, { 1, 1 }, LAYOUT_IRQ_KBD },
};

static int dsdt_build(struct aml *a, const struct acpi_config *cfg)
{
	struct acpi_sdt_hdr h;
	size_t sb, s5;

	memset(&h, 0, sizeof(h));
	aml_bytes(a, &h, sizeof(h));    /* header filled in by the caller */

	aml_name(a, "\\_S5_");
	s5 = aml_package(a, 4);
	aml_integer(a, LAYOUT_ACPI_S5_TYPE);   /* SLP_TYP for the sleep control register */
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_close(a, s5);

	sb = aml_scope(a, "\\_SB_");
	if (cfg->pci)
		dsdt_pci0(a);
	for (size_t i = 0; i < sizeof(dsdt_isa_devs) / sizeof(dsdt_isa_devs[0]); i++)
		dsdt_isa(a, &dsdt_isa_devs[i]);
	aml_close(a, sb);
	if (a->err)
		return a->err;
	/* Revision 2: integers are 64 bits wide. */
	sdt_header(&h, "DSDT", (uint32_t)a->len, 2);
	memcpy(a->buf, &h, sizeof(h));
	return 0;
}

/* ---- fixed tables -------------------------------------------------------- */

static void gas_io8(struct acpi_gas *g, uint16_t port)
{
	g->space_id = 1;
	g->bit_width = 8;
	g->bit_offset = 0;
	g->access_size = 1;
	g->address = htole64(port);
}

static uint64_t fadt_build(struct acpi_area *a, uint64_t dsdt, bool pci)
{
	struct acpi_fadt f;

	memset(&f, 0, sizeof(f));
	sdt_header(&f.hdr, "FACP", sizeof(f), 6);
	f.dsdt = htole32((uint32_t)dsdt);
	f.x_dsdt = htole64(dsdt);
	f.flags = htole32(FADT_HW_REDUCED_ACPI | (pci ? FADT_RESET_REG_SUP : 0));
	f.iapc_boot_arch = htole16(FADT_BOOT_LEGACY_DEVICES | FADT_BOOT_8042);
	/* RST_CPU | SYS_RST through the PCI host's reset control register. */
	if (pci) {
		gas_io8(&f.reset_reg, ACPI_RESET_PORT);
		f.reset_value = ACPI_RESET_VALUE;
	}
	f.minor_version = 5;
	gas_io8(&f.sleep_control_reg, LAYOUT_PORT_ACPI_PM);
	gas_io8(&f.sleep_status_reg, LAYOUT_PORT_ACPI_PM + 1);
	memcpy(f.hypervisor_vendor_id, "KESTREL", 8);
	return area_put_table(a, &f, sizeof(f));
}

static uint64_t madt_build(struct acpi_area *a, unsigned ncpus)
{
	size_t len = sizeof(struct acpi_madt) + ncpus * sizeof(struct madt_lapic) +
		     sizeof(struct madt_ioapic) + sizeof(struct madt_iso) +
		     sizeof(struct madt_lapic_nmi);
	struct acpi_madt m;
	struct madt_ioapic io = { .type = 1, .length = sizeof(io) };
	struct madt_iso iso = { .type = 2, .length = sizeof(iso) };
	struct madt_lapic_nmi nmi = { .type = 4, .length = sizeof(nmi) };
	size_t off = area_alloc(a, len), p;
	uint8_t *t;

	if (a->err)
		return 0;
	t = a->buf + off;
	memset(&m, 0, sizeof(m));
	sdt_header(&m.hdr, "APIC", (uint32_t)len, 5);
	m.lapic_address = htole32((uint32_t)LAYOUT_LAPIC_ADDR);
	m.flags = htole32(MADT_PCAT_COMPAT);
	memcpy(t, &m, sizeof(m));
	p = sizeof(m);

	for (unsigned i = 0; i < ncpus; i++) {
		struct madt_lapic l = {
			.type = 0, .length = sizeof(l),
			.processor_uid = (uint8_t)i, .apic_id = (uint8_t)i,
			.flags = htole32(1),
		};

		memcpy(t + p, &l, sizeof(l));
		p += sizeof(l);
	}
	io.ioapic_id = (uint8_t)ncpus;   /* the first id no vCPU uses */
	io.address = htole32((uint32_t)LAYOUT_IOAPIC_ADDR);
	io.gsi_base = 0;
	memcpy(t + p, &io, sizeof(io));
	p += sizeof(io);

	/* The PIT's IRQ0 is wired to IOAPIC pin 2 (pin 0 is the 8259's INTR). */
	iso.bus = 0;
	iso.source = 0;
	iso.gsi = htole32(2);
	iso.flags = htole16(MPS_INTI_EDGE_HIGH);
	memcpy(t + p, &iso, sizeof(iso));
	p += sizeof(iso);

	nmi.processor_uid = 0xff;
	nmi.flags = htole16(MPS_INTI_EDGE_HIGH);
	nmi.lint = 1;
	memcpy(t + p, &nmi, sizeof(nmi));

	t[9] = acpi_checksum(t, len);
	return LAYOUT_ACPI_ADDR + off;
}

static uint64_t mcfg_build(struct acpi_area *a)
{
	uint8_t t[sizeof(struct acpi_mcfg) + sizeof(struct mcfg_alloc)];
	struct acpi_mcfg m;
	struct mcfg_alloc al = {
		.base = htole64(LAYOUT_ECAM_START),
		.segment = 0,
		.start_bus = 0,
		.end_bus = (uint8_t)(LAYOUT_ECAM_SIZE / MiB(1) - 1),
	};

	memset(&m, 0, sizeof(m));
	sdt_header(&m.hdr, "MCFG", sizeof(t), 1);
	memcpy(t, &m, sizeof(m));
	memcpy(t + sizeof(m), &al, sizeof(al));
	return area_put_table(a, t, sizeof(t));
}

_Static_assert(LAYOUT_ACPI_ADDR + LAYOUT_ACPI_SIZE == ACPI_RESET_VECTOR + 16,
	       "the reset vector is the last 16 bytes of the firmware area");

/*
 * 16-bit code at F000:FFF0 for a guest that jumps to the reset vector as it
 * would on a PC whose BIOS then resets the machine: write the reset value to
 * the reset port, then halt should the write not end the VM.
 */
static int acpi_reset_vector(struct guest_mem *gm)
{
	static const uint8_t stub[16] = {
		0xfa,                                         /* cli */
		0xba, ACPI_RESET_PORT & 0xff, ACPI_RESET_PORT >> 8, /* mov dx, port */
		0xb0, ACPI_RESET_VALUE,                       /* mov al, value */
		0xee,                                         /* out dx, al */
		0xf4,                                         /* 1: hlt */
		0xeb, 0xfd,                                   /* jmp 1b */
	};

	return gm_write(gm, ACPI_RESET_VECTOR, stub, sizeof(stub));
}

int acpi_build(struct guest_mem *gm, const struct acpi_config *cfg, uint64_t *rsdp_gpa)
{
	struct acpi_area area = { .size = LAYOUT_ACPI_SIZE - 16 };
	struct acpi_rsdp rsdp;
	struct acpi_sdt_hdr xh;
	struct aml dsdt;
	uint64_t tables[3], dsdt_gpa;
	unsigned ntables = 0;
	size_t rsdp_off, xsdt_off, xsdt_len;
	int rc;

	if (!gm || !cfg || !rsdp_gpa)
		return -EINVAL;
	if (cfg->ncpus == 0 || cfg->ncpus > ACPI_MAX_CPUS)
		return -EINVAL;
	if (!gm_is_ram(gm, LAYOUT_ACPI_ADDR, LAYOUT_ACPI_SIZE))
		return -EFAULT;
	area.buf = calloc(1, area.size);
	if (!area.buf)
		return -ENOMEM;

	aml_init(&dsdt);
	rc = dsdt_build(&dsdt, cfg);
	if (rc)
		goto out;

	rsdp_off = area_alloc(&area, sizeof(rsdp));
	xsdt_len = sizeof(xh) + (cfg->pci ? 3 : 2) * sizeof(uint64_t);
	xsdt_off = area_alloc(&area, xsdt_len);
	dsdt_gpa = area_put_table(&area, dsdt.buf, dsdt.len);
	tables[ntables++] = fadt_build(&area, dsdt_gpa, cfg->pci);
	tables[ntables++] = madt_build(&area, cfg->ncpus);
	if (cfg->pci)
		tables[ntables++] = mcfg_build(&area);
	if (area.err) {
		rc = area.err;   /* -ENOSPC: the tables outgrew LAYOUT_ACPI_SIZE */
		goto out;
	}

	sdt_header(&xh, "XSDT", (uint32_t)xsdt_len, 1);
	memcpy(area.buf + xsdt_off, &xh, sizeof(xh));
	for (unsigned i = 0; i < ntables; i++) {
		uint64_t v = htole64(tables[i]);

		memcpy(area.buf + xsdt_off + sizeof(xh) + i * sizeof(v), &v, sizeof(v));
	}
	area.buf[xsdt_off + 9] = acpi_checksum(area.buf + xsdt_off, xsdt_len);

	memset(&rsdp, 0, sizeof(rsdp));
	memcpy(rsdp.signature, "RSD PTR ", 8);
	memcpy(rsdp.oem_id, ACPI_OEM_ID, 6);
	rsdp.revision = 2;
	rsdp.length = htole32(sizeof(rsdp));
	rsdp.xsdt_address = htole64(LAYOUT_ACPI_ADDR + xsdt_off);
	rsdp.checksum = acpi_checksum(&rsdp, 20);
	rsdp.ext_checksum = acpi_checksum(&rsdp, sizeof(rsdp));
	memcpy(area.buf + rsdp_off, &rsdp, sizeof(rsdp));

	rc = gm_write(gm, LAYOUT_ACPI_ADDR, area.buf, area.used);
	if (!rc && cfg->pci)
		rc = acpi_reset_vector(gm);
	if (rc)
		goto out;
	*rsdp_gpa = LAYOUT_ACPI_ADDR + rsdp_off;
out:
	aml_free(&dsdt);
	free(area.buf);
	return rc;
}

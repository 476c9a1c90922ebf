/*
 * ACPI table tests: checksums, the RSDP -> XSDT -> table chain, FADT and
 * MADT contents, MCFG, and the DSDT read back by a small AML walker written
 * here from the spec (names, packages, integers, buffers, PkgLength).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/acpi.h"
#include "boot/aml.h"
#include "mem/gm.h"
#include "mem/layout.h"
#include "mem/gm_test.h"

#include "boot_images.h"   /* ti_r16/32/64 */

#define RAM_SIZE MiB(2)

struct fx {
	uint8_t *ram;
	struct guest_mem gm;
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->ram = calloc(1, RAM_SIZE);
	if (!f->ram)
		return -1;
	gm_init_fake(&f->gm, 0, f->ram, RAM_SIZE);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	free(f->ram);
	free(f);
	return 0;
}

static const uint8_t *at(struct fx *f, uint64_t gpa, uint64_t len)
{
	if (gpa < LAYOUT_ACPI_ADDR || gpa + len > LAYOUT_ACPI_ADDR + LAYOUT_ACPI_SIZE)
		fail_msg("0x%llx+%llu outside the ACPI area", (unsigned long long)gpa,
			 (unsigned long long)len);
	return f->ram + gpa;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

/* A table by XSDT walk: checks header, length bounds and checksum. */
static const uint8_t *find_table(struct fx *f, uint64_t rsdp, const char *sig)
{
	const uint8_t *r = at(f, rsdp, 36);
	const uint8_t *x = at(f, ti_r64(r + 24), 36);
	uint32_t xlen = ti_r32(x + 4);

	for (uint32_t off = 36; off + 8 <= xlen; off += 8) {
		const uint8_t *t = at(f, ti_r64(x + off), 36);

		if (memcmp(t, sig, 4) == 0) {
			at(f, ti_r64(x + off), ti_r32(t + 4));
			return t;
		}
	}
	return NULL;
}

static uint64_t build(struct fx *f, unsigned ncpus, int pci)
{
	struct acpi_config cfg = { .ncpus = ncpus, .pci = pci };
	uint64_t rsdp = 0;

	memset(f->ram, 0, RAM_SIZE);
	assert_int_equal(acpi_build(&f->gm, &cfg, &rsdp), 0);
	return rsdp;
}

/* ---- RSDP, XSDT, checksums ----------------------------------------------- */

static void test_chain_and_checksums(void **state)
{
	struct fx *f = *state;
	uint64_t rsdp = build(f, 4, 1);
	const uint8_t *r = at(f, rsdp, 36), *x;
	uint32_t xlen;
	bool seen_facp = false, seen_apic = false, seen_mcfg = false;

	/* Legacy scanning looks at 16-byte boundaries in 0xe0000-0xfffff. */
	assert_int_equal(rsdp % 16, 0);
	assert_true(rsdp >= 0xe0000 && rsdp < 0x100000);
	assert_memory_equal(r, "RSD PTR ", 8);
	assert_int_equal(sum(r, 20), 0);
	assert_int_equal(sum(r, 36), 0);
	assert_int_equal(r[15], 2);                    /* revision */
	assert_int_equal(ti_r32(r + 20), 36);          /* length */

	x = at(f, ti_r64(r + 24), 36);
	assert_memory_equal(x, "XSDT", 4);
	xlen = ti_r32(x + 4);
	assert_int_equal(xlen, 36 + 3 * 8);
	assert_int_equal(sum(at(f, ti_r64(r + 24), xlen), xlen), 0);
	for (uint32_t off = 36; off < xlen; off += 8) {
		uint64_t a = ti_r64(x + off);
		const uint8_t *t = at(f, a, 36);
		uint32_t len = ti_r32(t + 4);

		at(f, a, len);
		assert_int_equal(sum(t, len), 0);
		seen_facp |= memcmp(t, "FACP", 4) == 0;
		seen_apic |= memcmp(t, "APIC", 4) == 0;
		seen_mcfg |= memcmp(t, "MCFG", 4) == 0;
	}
	assert_true(seen_facp && seen_apic && seen_mcfg);

	/* The DSDT hangs off the FADT, with its own checksum. */
	{
		const uint8_t *fadt = find_table(f, rsdp, "FACP");
		const uint8_t *d = at(f, ti_r64(fadt + 140), 36);

		assert_memory_equal(d, "DSDT", 4);
		assert_int_equal(sum(d, ti_r32(d + 4)), 0);
		assert_int_equal(d[8], 2);                 /* 64-bit integers */
	}
}

static void test_no_pci(void **state)
{
	struct fx *f = *state;
	uint64_t rsdp = build(f, 2, 0);
	const uint8_t *x = at(f, ti_r64(at(f, rsdp, 36) + 24), 36);

	assert_int_equal(ti_r32(x + 4), 36 + 2 * 8);
	assert_null(find_table(f, rsdp, "MCFG"));
	assert_non_null(find_table(f, rsdp, "FACP"));
	assert_non_null(find_table(f, rsdp, "APIC"));
}

/* ---- FADT ---------------------------------------------------------------- */

static void check_gas_io8(const uint8_t *g, uint16_t port)
{
	assert_int_equal(g[0], 1);         /* system I/O */
	assert_int_equal(g[1], 8);         /* bit width */
	assert_int_equal(g[2], 0);         /* bit offset */
	assert_int_equal(g[3], 1);         /* byte access */
	assert_int_equal(ti_r64(g + 4), port);
}

static void test_fadt(void **state)
{
	struct fx *f = *state;
	uint64_t rsdp = build(f, 1, 0);
	const uint8_t *t = find_table(f, rsdp, "FACP");
	uint32_t flags;

	assert_non_null(t);
	assert_int_equal(ti_r32(t + 4), 276);
	assert_int_equal(t[8], 6);                              /* revision */
	flags = ti_r32(t + 112);
	assert_true(flags & (1u << 20));                        /* HW_REDUCED_ACPI */
	assert_false(flags & (1u << 10));                       /* no RESET_REG_SUP */
	assert_int_equal(ti_r64(t + 116 + 4), 0);               /* RESET_REG empty */
	assert_true(ti_r16(t + 109) & (1u << 1));               /* i8042 present */
	assert_int_equal(ti_r32(t + 40), ti_r64(t + 140));      /* DSDT == X_DSDT */
	assert_true(ti_r64(t + 140) != 0);
	assert_int_equal(ti_r32(t + 56), 0);                    /* no PM1a_EVT_BLK */
	assert_int_equal(ti_r32(t + 64), 0);                    /* no PM1a_CNT_BLK */
	check_gas_io8(t + 244, LAYOUT_PORT_ACPI_PM);            /* SLEEP_CONTROL_REG */
	check_gas_io8(t + 256, LAYOUT_PORT_ACPI_PM + 1);        /* SLEEP_STATUS_REG */
	assert_memory_equal(t + 268, "KESTREL", 7);             /* hypervisor vendor */
}

/* With the PCI host, the reset register is its 0xCF9 (Linux: reboot=a, acpi_reboot()). */
static void test_fadt_reset_register(void **state)
{
	struct fx *f = *state;
	uint64_t rsdp = build(f, 1, 1);
	const uint8_t *t = find_table(f, rsdp, "FACP");

	assert_non_null(t);
	assert_true(t[8] >= 2);                                 /* RESET_REG exists from revision 2 */
	assert_true(ti_r32(t + 112) & (1u << 10));              /* RESET_REG_SUP */
	check_gas_io8(t + 116, 0xcf9);                          /* RESET_REG */
	assert_int_equal(t[128], 0x06);                         /* RESET_VALUE: SYS_RST | RST_CPU */
	assert_int_equal(ACPI_RESET_PORT, 0xcf9);
	assert_int_equal(ACPI_RESET_VALUE, 0x06);
	assert_int_equal(sum(t, 276), 0);
}

/*
 * F000:FFF0 holds 16-bit code that writes the FADT's reset value to its
 * reset register: Linux's default reboot on a HW-reduced platform without
 * EFI ends with a jump there. Checked byte by byte against the FADT.
 */
static void test_reset_vector(void **state)
{
	struct fx *f = *state;
	uint64_t rsdp = build(f, 1, 1);
	const uint8_t *t = find_table(f, rsdp, "FACP");
	const uint8_t *v = at(f, 0xffff0, 16);
	uint16_t port = (uint16_t)ti_r64(t + 116 + 4);

	assert_int_equal(ACPI_RESET_VECTOR, 0xffff0);
	assert_int_equal(v[0], 0xfa);                           /* cli */
	assert_int_equal(v[1], 0xba);                           /* mov dx, imm16 */
	assert_int_equal(v[2] | v[3] << 8, port);
	assert_int_equal(v[4], 0xb0);                           /* mov al, imm8 */
	assert_int_equal(v[5], t[128]);
	assert_int_equal(v[6], 0xee);                           /* out dx, al */
	assert_int_equal(v[7], 0xf4);                           /* hlt */
	assert_int_equal(v[8], 0xeb);                           /* jmp rel8 ... */
	assert_int_equal(10 + (int8_t)v[9], 7);                 /* ... back to the hlt */

	/* Without the PCI host there is no reset port, and no stub. */
	build(f, 1, 0);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(f->ram[0xffff0 + i], 0);
}

/* ---- MADT ---------------------------------------------------------------- */

static void check_madt(struct fx *f, unsigned ncpus)
{
	uint64_t rsdp = build(f, ncpus, 1);
	const uint8_t *t = find_table(f, rsdp, "APIC");
	uint32_t len = ti_r32(t + 4), off = 44;
	unsigned nlapic = 0, nioapic = 0, niso = 0, nnmi = 0, ioapic_id = 0;
	bool ids[256] = { false };

	assert_int_equal(ti_r32(t + 36), 0xfee00000);
	assert_true(ti_r32(t + 40) & 1);                        /* PCAT_COMPAT */
	while (off < len) {
		const uint8_t *e = t + off;

		assert_true(off + 2 <= len);
		assert_true(e[1] >= 2 && off + e[1] <= len);
		switch (e[0]) {
		case 0:
			assert_int_equal(e[1], 8);
			assert_false(ids[e[3]]);
			ids[e[3]] = true;
			assert_int_equal(e[2], nlapic);                 /* UID */
			assert_int_equal(e[3], nlapic);                 /* APIC id = index */
			assert_true(ti_r32(e + 4) & 1);                 /* enabled */
			nlapic++;
			break;
		case 1:
			assert_int_equal(e[1], 12);
			ioapic_id = e[2];
			assert_int_equal(ti_r32(e + 4), LAYOUT_IOAPIC_ADDR);
			assert_int_equal(ti_r32(e + 8), 0);             /* GSI base */
			nioapic++;
			break;
		case 2:
			assert_int_equal(e[1], 10);
			assert_int_equal(e[2], 0);                      /* ISA */
			assert_int_equal(e[3], 0);                      /* IRQ0 */
			assert_int_equal(ti_r32(e + 4), 2);             /* -> GSI2 */
			assert_int_equal((ti_r16(e + 8) >> 2) & 3, 1);  /* edge */
			niso++;
			break;
		case 4:
			assert_int_equal(e[1], 6);
			assert_int_equal(e[2], 0xff);                   /* all processors */
			assert_int_equal(e[5], 1);                      /* LINT1 */
			nnmi++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", e[0]);
		}
		off += e[1];
	}
	assert_int_equal(off, len);
	assert_int_equal(nlapic, ncpus);
	assert_int_equal(nioapic, 1);
	assert_int_equal(niso, 1);
	assert_int_equal(nnmi, 1);
	assert_false(ids[ioapic_id]);                               /* no clash with a CPU */
	assert_true(ioapic_id < 0xff);
}

static void test_madt(void **state)
{
	static const unsigned counts[] = { 1, 2, 4, 32, 254 };

	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
		check_madt(*state, counts[i]);
}

static void test_mcfg(void **state)
{
	struct fx *f = *state;
	uint64_t rsdp = build(f, 1, 1);
	const uint8_t *t = find_table(f, rsdp, "MCFG");

	assert_non_null(t);
	assert_int_equal(ti_r32(t + 4), 44 + 16);
	assert_int_equal(ti_r64(t + 44), LAYOUT_ECAM_START);
	assert_int_equal(ti_r16(t + 52), 0);     /* segment */
	assert_int_equal(t[54], 0);              /* start bus */
	assert_int_equal(t[55], 0);              /* end bus */
}

/* ---- an AML walker ------------------------------------------------------- */

struct aml_rec {
	char path[64];
	bool method;
	const uint8_t *obj;     /* the data object after Name(), or the method body */
	size_t len;
};

struct walk {
	struct aml_rec recs[64];
	unsigned n;
	bool bad;
	char why[128];
};

static bool walk_fail(struct walk *w, const char *why)
{
	if (!w->bad)
		snprintf(w->why, sizeof(w->why), "%s", why);
	w->bad = true;
	return false;
}

/* PkgLength at p; *val is the length it encodes (itself included). */
static bool pkglen(const uint8_t *p, const uint8_t *end, size_t *val, size_t *nbytes)
{
	unsigned extra;

	if (p >= end)
		return false;
	extra = p[0] >> 6;
	if (p + 1 + extra > end)
		return false;
	if (extra == 0) {
		*val = p[0] & 0x3f;
	} else {
		if (p[0] & 0x30)
			return false;               /* bits 4-5 must be zero */
		*val = p[0] & 0x0f;
		for (unsigned i = 0; i < extra; i++)
			*val |= (size_t)p[1 + i] << (4 + 8 * i);
	}
	*nbytes = 1 + extra;
	return true;
}

static bool seg_ok(const uint8_t *s)
{
	for (int i = 0; i < 4; i++) {
		bool up = s[i] >= 'A' && s[i] <= 'Z', dig = s[i] >= '0' && s[i] <= '9';

		if (!(up || s[i] == '_' || (i > 0 && dig)))
			return false;
	}
	return true;
}

/* NameString -> "\\_SB_.PCI0" style text; returns bytes consumed or 0. */
static size_t namestring(const uint8_t *p, const uint8_t *end, char *out, size_t outlen)
{
	const uint8_t *q = p;
	unsigned nseg;
	size_t o = 0;

	if (q < end && *q == '\\')
		out[o++] = *q++;
	while (q < end && *q == '^' && o < outlen - 1)
		out[o++] = *q++;
	if (q >= end)
		return 0;
	if (*q == 0x00) {
		nseg = 0;
		q++;
	} else if (*q == 0x2e) {
		nseg = 2;
		q++;
	} else if (*q == 0x2f) {
		if (q + 1 >= end)
			return 0;
		nseg = q[1];
		q += 2;
	} else {
		nseg = 1;
	}
	for (unsigned i = 0; i < nseg; i++) {
		if (q + 4 > end || !seg_ok(q) || o + 6 > outlen)
			return 0;
		if (i)
			out[o++] = '.';
		memcpy(out + o, q, 4);
		o += 4;
		q += 4;
	}
	out[o] = '\0';
	return (size_t)(q - p);
}

/* Size of the data object at p (integers, strings, buffers, packages), 0 if unknown. */
static size_t dataobj_size(const uint8_t *p, const uint8_t *end)
{
	size_t v, n;

	if (p >= end)
		return 0;
	switch (p[0]) {
	case 0x00: case 0x01: case 0xff:
		return 1;
	case 0x0a:
		return p + 2 <= end ? 2 : 0;
	case 0x0b:
		return p + 3 <= end ? 3 : 0;
	case 0x0c:
		return p + 5 <= end ? 5 : 0;
	case 0x0e:
		return p + 9 <= end ? 9 : 0;
	case 0x0d: {
		const uint8_t *z = memchr(p + 1, 0, (size_t)(end - p - 1));

		return z ? (size_t)(z - p) + 1 : 0;
	}
	case 0x11: case 0x12: case 0x13:
		if (!pkglen(p + 1, end, &v, &n) || p + 1 + v > end)
			return 0;
		return 1 + v;
	}
	return 0;
}

static bool integer(const uint8_t *p, size_t len, uint64_t *v)
{
	switch (p[0]) {
	case 0x00: *v = 0; return len == 1;
	case 0x01: *v = 1; return len == 1;
	case 0x0a: *v = p[1]; return len == 2;
	case 0x0b: *v = ti_r16(p + 1); return len == 3;
	case 0x0c: *v = ti_r32(p + 1); return len == 5;
	case 0x0e: *v = ti_r64(p + 1); return len == 9;
	}
	return false;
}

static void join(char *out, size_t n, const char *scope, const char *name)
{
	if (name[0] == '\\')
		snprintf(out, n, "%s", name);
	else if (strcmp(scope, "\\") == 0)
		snprintf(out, n, "\\%s", name);
	else
		snprintf(out, n, "%s.%s", scope, name);
}

static bool walk_terms(struct walk *w, const uint8_t *p, const uint8_t *end, const char *scope)
{
	while (p < end) {
		char name[64], path[64];
		size_t v, n, k;

		if (p[0] == 0x10 || (p[0] == 0x5b && p + 1 < end && p[1] == 0x82) || p[0] == 0x14) {
			/* Scope / Device / Method: op PkgLength NameString ... */
			bool method = p[0] == 0x14;
			const uint8_t *op_end = p + (p[0] == 0x5b ? 2 : 1), *body_end, *q;

			if (!pkglen(op_end, end, &v, &n) || op_end + v > end)
				return walk_fail(w, "bad PkgLength on Scope/Device/Method");
			body_end = op_end + v;
			k = namestring(op_end + n, body_end, name, sizeof(name));
			if (!k)
				return walk_fail(w, "bad name on Scope/Device/Method");
			join(path, sizeof(path), scope, name);
			q = op_end + n + k;
			if (method) {
				if (w->n >= 64)
					return walk_fail(w, "too many names");
				snprintf(w->recs[w->n].path, sizeof(w->recs[0].path), "%s", path);
				w->recs[w->n].method = true;
				w->recs[w->n].obj = q;          /* flags byte, then body */
				w->recs[w->n].len = (size_t)(body_end - q);
				w->n++;
			} else if (!walk_terms(w, q, body_end, path)) {
				return false;
			}
			p = body_end;
		} else if (p[0] == 0x08) {
			k = namestring(p + 1, end, name, sizeof(name));
			if (!k)
				return walk_fail(w, "bad name after NameOp");
			v = dataobj_size(p + 1 + k, end);
			if (!v)
				return walk_fail(w, "unknown data object after Name");
			if (w->n >= 64)
				return walk_fail(w, "too many names");
			join(w->recs[w->n].path, sizeof(w->recs[0].path), scope, name);
			w->recs[w->n].method = false;
			w->recs[w->n].obj = p + 1 + k;
			w->recs[w->n].len = v;
			w->n++;
			p += 1 + k + v;
		} else {
			char why[64];

			snprintf(why, sizeof(why), "unexpected opcode 0x%02x", p[0]);
			return walk_fail(w, why);
		}
	}
	return true;
}

static const struct aml_rec *lookup(const struct walk *w, const char *path)
{
	for (unsigned i = 0; i < w->n; i++)
		if (strcmp(w->recs[i].path, path) == 0)
			return &w->recs[i];
	return NULL;
}

/* Elements of a package object: pointers and sizes; returns the declared count. */
static unsigned package(const uint8_t *p, size_t len, const uint8_t **el, size_t *elen,
			unsigned max, unsigned *found)
{
	size_t v, n;
	const uint8_t *q, *end = p + len;
	unsigned count, i = 0;

	assert_int_equal(p[0], 0x12);
	assert_true(pkglen(p + 1, end, &v, &n));
	assert_int_equal(1 + v, len);
	count = p[1 + n];
	q = p + 2 + n;
	while (q < end) {
		size_t s = dataobj_size(q, end);

		assert_true(s > 0);
		if (i < max) {
			el[i] = q;
			elen[i] = s;
		}
		i++;
		q += s;
	}
	assert_true(q == end);
	*found = i;
	return count;
}

static struct walk *walk_dsdt(struct fx *f, uint64_t rsdp)
{
	const uint8_t *fadt = find_table(f, rsdp, "FACP");
	uint64_t dsdt = ti_r64(fadt + 140);
	const uint8_t *d = at(f, dsdt, 36);
	uint32_t len = ti_r32(d + 4);
	struct walk *w = calloc(1, sizeof(*w));

	at(f, dsdt, len);
	if (!walk_terms(w, d + 36, d + len, "\\") || w->bad)
		fail_msg("DSDT does not parse: %s", w->why);
	return w;
}

static uint64_t int_of(const uint8_t *p, size_t len)
{
	uint64_t v = 0;

	if (!integer(p, len, &v))
		fail_msg("not an integer object (op 0x%02x, %zu bytes)", p[0], len);
	return v;
}

static uint64_t named_int(const struct walk *w, const char *path)
{
	const struct aml_rec *r = lookup(w, path);

	if (!r)
		fail_msg("%s not found", path);
	return int_of(r->obj, r->len);
}

/* Resource template in a Buffer object: returns the bytes and their count. */
static const uint8_t *buffer_bytes(const struct aml_rec *r, size_t *n)
{
	size_t v, k, s;
	const uint8_t *p = r->obj, *end = r->obj + r->len;
	uint64_t size;

	assert_int_equal(p[0], 0x11);
	assert_true(pkglen(p + 1, end, &v, &k));
	s = dataobj_size(p + 1 + k, end);
	assert_true(s > 0);
	size = int_of(p + 1 + k, s);
	assert_int_equal(1 + k + s + size, r->len);
	*n = size;
	return p + 1 + k + s;
}

/* Walk small/large resource descriptors; the end tag must close the template. */
struct res {
	unsigned nio, nirq, nword, ndword;
	uint16_t io_base[4];
	uint8_t io_len[4];
	uint16_t irq_mask;
	uint8_t word_type[4];
	uint16_t word_min[4], word_max[4], word_len[4];
	uint32_t dword_min, dword_len;
};

static void parse_resources(const uint8_t *b, size_t n, struct res *r)
{
	size_t off = 0;
	bool ended = false;

	memset(r, 0, sizeof(*r));
	while (off < n && !ended) {
		uint8_t tag = b[off];

		if (tag & 0x80) {
			size_t l;

			assert_true(off + 3 <= n);
			l = ti_r16(b + off + 1);
			assert_true(off + 3 + l <= n);
			if (tag == 0x88) {
				assert_int_equal(l, 13);
				r->word_type[r->nword] = b[off + 3];
				r->word_min[r->nword] = ti_r16(b + off + 8);
				r->word_max[r->nword] = ti_r16(b + off + 10);
				r->word_len[r->nword] = ti_r16(b + off + 14);
				r->nword++;
			} else if (tag == 0x87) {
				assert_int_equal(l, 23);
				assert_int_equal(b[off + 3], 0);            /* memory */
				r->dword_min = ti_r32(b + off + 10);
				r->dword_len = ti_r32(b + off + 22);
				assert_int_equal(ti_r32(b + off + 14), r->dword_min + r->dword_len - 1);
				r->ndword++;
			} else {
				fail_msg("unexpected large descriptor 0x%02x", tag);
			}
			off += 3 + l;
		} else {
			size_t l = tag & 7;

			assert_true(off + 1 + l <= n);
			switch (tag >> 3) {
			case 0x8:      /* I/O port */
				assert_int_equal(l, 7);
				assert_int_equal(ti_r16(b + off + 2), ti_r16(b + off + 4));  /* fixed */
				r->io_base[r->nio] = ti_r16(b + off + 2);
				r->io_len[r->nio] = b[off + 7];
				r->nio++;
				break;
			case 0x4:      /* IRQ */
				r->irq_mask = ti_r16(b + off + 1);
				r->nirq++;
				break;
			case 0xf:      /* end tag */
				assert_int_equal(l, 1);
				ended = true;
				break;
			default:
				fail_msg("unexpected small descriptor 0x%02x", tag);
			}
			off += 1 + l;
		}
	}
	assert_true(ended);
	assert_int_equal(off, n);           /* nothing after the end tag */
	assert_int_equal(sum(b, n), 0);     /* end tag checksum */
}

static void test_dsdt_s5_and_com1(void **state)
{
	struct fx *f = *state;
	struct walk *w = walk_dsdt(f, build(f, 2, 0));
	const struct aml_rec *r = lookup(w, "\\_S5_");
	const uint8_t *el[8];
	size_t elen[8];
	unsigned found, count;
	struct res res;
	size_t n;
	const uint8_t *b;

	assert_non_null(r);
	count = package(r->obj, r->len, el, elen, 8, &found);
	assert_int_equal(count, 4);
	assert_int_equal(found, 4);
	assert_int_equal(int_of(el[0], elen[0]), LAYOUT_ACPI_S5_TYPE);
	for (int i = 1; i < 4; i++)
		assert_int_equal(int_of(el[i], elen[i]), 0);

	assert_null(lookup(w, "\\_SB_.PCI0._HID"));   /* no PCI: no host bridge */
	assert_int_equal(named_int(w, "\\_SB_.COM1._HID"), 0x0105d041);   /* PNP0501 */
	assert_int_equal(named_int(w, "\\_SB_.COM1._UID"), 1);
	r = lookup(w, "\\_SB_.COM1._STA");
	assert_non_null(r);
	assert_true(r->method);
	assert_int_equal(r->obj[0] & 7, 0);          /* no arguments */
	assert_int_equal(r->obj[1], 0xa4);           /* Return */
	assert_int_equal(int_of(r->obj + 2, r->len - 2), 0x0f);

	r = lookup(w, "\\_SB_.COM1._CRS");
	assert_non_null(r);
	b = buffer_bytes(r, &n);
	parse_resources(b, n, &res);
	assert_int_equal(res.nio, 1);
	assert_int_equal(res.io_base[0], 0x3f8);
	assert_int_equal(res.io_len[0], 8);
	assert_int_equal(res.nirq, 1);
	assert_int_equal(res.irq_mask, 1u << 4);
	free(w);
}

static void test_dsdt_pci0(void **state)
{
	struct fx *f = *state;
	struct walk *w = walk_dsdt(f, build(f, 4, 1));
	const struct aml_rec *r;
	const uint8_t *el[130], *b;
	size_t elen[130], n;
	unsigned found, count;
	struct res res;

	assert_int_equal(named_int(w, "\\_SB_.PCI0._HID"), 0x080ad041);   /* PNP0A08 */
	assert_int_equal(named_int(w, "\\_SB_.PCI0._CID"), 0x030ad041);   /* PNP0A03 */
	assert_int_equal(named_int(w, "\\_SB_.PCI0._SEG"), 0);
	assert_int_equal(named_int(w, "\\_SB_.PCI0._BBN"), 0);
	assert_int_equal(named_int(w, "\\_SB_.PCI0._UID"), 0);

	r = lookup(w, "\\_SB_.PCI0._PRT");
	assert_non_null(r);
	count = package(r->obj, r->len, el, elen, 130, &found);
	assert_int_equal(count, 31 * 4);
	assert_int_equal(found, 31 * 4);
	for (unsigned i = 0; i < found; i++) {
		const uint8_t *e[4];
		size_t el2[4];
		unsigned f2, slot = 1 + i / 4, pin = i % 4;

		assert_int_equal(package(el[i], elen[i], e, el2, 4, &f2), 4);
		assert_int_equal(f2, 4);
		assert_int_equal(int_of(e[0], el2[0]), ((uint64_t)slot << 16) | 0xffff);
		assert_int_equal(int_of(e[1], el2[1]), pin);
		assert_int_equal(int_of(e[2], el2[2]), 0);
		assert_int_equal(int_of(e[3], el2[3]), LAYOUT_PCI_IRQ(slot, pin));
		assert_true(int_of(e[3], el2[3]) < LAYOUT_IOAPIC_PINS);
	}

	r = lookup(w, "\\_SB_.PCI0._CRS");
	assert_non_null(r);
	b = buffer_bytes(r, &n);
	parse_resources(b, n, &res);
	assert_int_equal(res.nword, 3);
	assert_int_equal(res.word_type[0], 2);                 /* bus numbers 0..0 */
	assert_int_equal(res.word_min[0], 0);
	assert_int_equal(res.word_max[0], 0);
	assert_int_equal(res.word_len[0], 1);
	assert_int_equal(res.nio, 1);
	assert_int_equal(res.io_base[0], 0xcf8);
	assert_int_equal(res.io_len[0], 8);
	assert_int_equal(res.word_type[1], 1);
	assert_int_equal(res.word_min[1], 0);
	assert_int_equal(res.word_max[1], 0xcf7);
	assert_int_equal(res.word_len[1], 0xcf8);
	assert_int_equal(res.word_type[2], 1);
	assert_int_equal(res.word_min[2], 0xd00);
	assert_int_equal(res.word_max[2], 0xffff);
	assert_int_equal(res.word_len[2], 0xf300);
	assert_int_equal(res.ndword, 1);
	assert_int_equal(res.dword_min, LAYOUT_PCI_MMIO_START);
	assert_int_equal(res.dword_len, LAYOUT_PCI_MMIO_SIZE);

	/* COM1 is there as well. */
	assert_non_null(lookup(w, "\\_SB_.COM1._CRS"));
	free(w);
}

static void test_size_limit(void **state)
{
	struct fx *f = *state;
	uint64_t rsdp = build(f, 32, 1), end = 0;
	const uint8_t *x = at(f, ti_r64(at(f, rsdp, 36) + 24), 36);
	const uint8_t *fadt = find_table(f, rsdp, "FACP");
	uint64_t dsdt = ti_r64(fadt + 140);

	for (uint32_t off = 36; off < ti_r32(x + 4); off += 8) {
		uint64_t a = ti_r64(x + off);
		uint64_t e = a + ti_r32(at(f, a, 36) + 4);

		end = e > end ? e : end;
	}
	end = dsdt + ti_r32(at(f, dsdt, 36) + 4) > end ? dsdt + ti_r32(at(f, dsdt, 36) + 4) : end;
	assert_true(end <= LAYOUT_ACPI_ADDR + LAYOUT_ACPI_SIZE);
	/* The tables stay clear of the reset vector; nothing else is written past them. */
	assert_true(end <= ACPI_RESET_VECTOR);
	for (uint64_t a = end; a < ACPI_RESET_VECTOR; a++)
		if (f->ram[a])
			fail_msg("byte at 0x%llx written past the tables", (unsigned long long)a);
	/* The largest configuration fits too. */
	build(f, 254, 1);
}

static void test_bad_args(void **state)
{
	struct fx *f = *state;
	struct acpi_config cfg = { .ncpus = 1, .pci = 1 };
	struct guest_mem small;
	uint64_t rsdp = 0x1234;

	assert_int_equal(acpi_build(NULL, &cfg, &rsdp), -EINVAL);
	assert_int_equal(acpi_build(&f->gm, NULL, &rsdp), -EINVAL);
	assert_int_equal(acpi_build(&f->gm, &cfg, NULL), -EINVAL);
	cfg.ncpus = 0;
	assert_int_equal(acpi_build(&f->gm, &cfg, &rsdp), -EINVAL);
	cfg.ncpus = 255;
	assert_int_equal(acpi_build(&f->gm, &cfg, &rsdp), -EINVAL);
	cfg.ncpus = 1;
	/* RAM that ends inside the ACPI area. */
	gm_init_fake(&small, 0, f->ram, LAYOUT_ACPI_ADDR + 0x1000);
	assert_int_equal(acpi_build(&small, &cfg, &rsdp), -EFAULT);
	assert_int_equal(rsdp, 0x1234);

	assert_int_equal(acpi_checksum(NULL, 10), 0);
	assert_int_equal(acpi_checksum("", 0), 0);
	{
		uint8_t b[5] = { 1, 2, 3, 4, 0 };

		assert_int_equal(acpi_checksum(b, 5), 0x100 - 10);
		b[4] = acpi_checksum(b, 4);
		assert_int_equal(sum(b, 5), 0);
		b[0] = 0xff; b[1] = 0x01; b[2] = b[3] = b[4] = 0;
		assert_int_equal(acpi_checksum(b, 5), 0);
	}
}

/* ---- the AML builder itself ---------------------------------------------- */

static void test_aml_encodings(void **state)
{
	struct aml a;
	size_t mark, v, n;

	(void)state;
	aml_init(&a);
	aml_integer(&a, 0);
	aml_integer(&a, 1);
	aml_integer(&a, 0xab);
	aml_integer(&a, 0x1234);
	aml_integer(&a, 0x12345678);
	aml_integer(&a, 0x123456789ull);
	{
		static const uint8_t expect[] = {
			0x00, 0x01, 0x0a, 0xab, 0x0b, 0x34, 0x12, 0x0c, 0x78, 0x56, 0x34, 0x12,
			0x0e, 0x89, 0x67, 0x45, 0x23, 0x01, 0x00, 0x00, 0x00,
		};

		assert_int_equal(a.err, 0);
		assert_int_equal(a.len, sizeof(expect));
		assert_memory_equal(a.buf, expect, sizeof(expect));
	}
	aml_free(&a);

	/* Names: root, relative, dual, multi, padding. */
	aml_init(&a);
	aml_namestring(&a, "\\_SB_.PCI0");
	assert_int_equal(a.len, 10);
	assert_memory_equal(a.buf, "\\\x2e_SB_PCI0", 10);
	aml_free(&a);
	aml_init(&a);
	aml_namestring(&a, "\\A.B.C");
	assert_memory_equal(a.buf, "\\\x2f\x03" "A___B___C___", 15);
	aml_free(&a);
	aml_init(&a);
	aml_namestring(&a, "^_S5");
	assert_memory_equal(a.buf, "^_S5_", 5);
	aml_free(&a);
	aml_init(&a);
	aml_namestring(&a, "bad!");
	assert_int_equal(a.err, -EINVAL);
	aml_free(&a);
	aml_init(&a);
	aml_namestring(&a, "TOOLONG");
	assert_int_equal(a.err, -EINVAL);
	aml_free(&a);

	/* EISAID. */
	aml_init(&a);
	aml_eisaid(&a, "PNP0A03");
	assert_memory_equal(a.buf, "\x0c\x41\xd0\x0a\x03", 5);
	aml_eisaid(&a, "pnp0a03");
	assert_int_equal(a.err, -EINVAL);
	aml_free(&a);

	/* PkgLength: 1, 2 and 3-byte forms round-trip through the test decoder. */
	{
		static const size_t bodies[] = { 0, 10, 62, 63, 100, 4000, 4093, 4094, 70000 };

		for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
			uint8_t *junk = calloc(1, bodies[i] + 1);
			unsigned expect_n = bodies[i] + 1 <= 63 ? 1 : bodies[i] + 2 <= 0xfff ? 2 : 3;

			aml_init(&a);
			aml_byte(&a, 0x10);
			mark = a.len;
			aml_bytes(&a, junk, bodies[i]);
			aml_close(&a, mark);
			assert_int_equal(a.err, 0);
			assert_true(pkglen(a.buf + 1, a.buf + a.len, &v, &n));
			assert_int_equal(n, expect_n);
			assert_int_equal(aml_pkglen_size(bodies[i]), expect_n);
			assert_int_equal(v, bodies[i] + n);
			assert_int_equal(a.len, 1 + v);
			aml_free(&a);
			free(junk);
		}
		assert_int_equal(aml_pkglen_size(0xfffffff), 0);   /* beyond 28 bits */
	}

	/* A package of 3 and a buffer. */
	aml_init(&a);
	mark = aml_package(&a, 3);
	aml_integer(&a, 5);
	aml_integer(&a, 0);
	aml_string(&a, "hi");
	aml_close(&a, mark);
	assert_int_equal(a.len, 10);
	assert_memory_equal(a.buf, "\x12\x09\x03\x0a\x05\x00\x0dhi\x00", 10);
	aml_free(&a);
	aml_init(&a);
	aml_buffer(&a, (const uint8_t *)"\x79\x00", 2);
	assert_int_equal(a.len, 6);
	assert_memory_equal(a.buf, "\x11\x05\x0a\x02\x79\x00", 6);
	/* Unbalanced close is an error, and errors stick. */
	aml_close(&a, a.len + 5);
	assert_int_equal(a.err, -EINVAL);
	n = a.len;
	aml_integer(&a, 7);
	assert_int_equal(a.len, n);
	aml_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_chain_and_checksums, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_no_pci, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_fadt, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_fadt_reset_register, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_reset_vector, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_madt, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_mcfg, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_dsdt_s5_and_com1, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_dsdt_pci0, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_size_limit, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bad_args, fx_setup, fx_teardown),
		cmocka_unit_test(test_aml_encodings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

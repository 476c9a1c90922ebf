/* SPDX-License-Identifier: MIT */
/* PCI configuration space, bus 0 enumeration and BAR assignment (pci.h). */
#include "pci.h"

#define CONF1_ADDR 0xcf8
#define CONF1_DATA 0xcfc
#define CONF1_ENABLE 0x80000000u

/* The uncached part of the guests' identity map (entry.S): 3 GiB .. 5 GiB. */
#define UC_START 0xc0000000ull

#define MAX_BUSY 64

static enum pci_method method;
static uint64_t ecam;

const char *pci_method_name(enum pci_method m)
{
	return m == PCI_CONF1 ? "conf1" : m == PCI_ECAM ? "ecam" : "none";
}

static bool conf1_present(void)
{
	uint32_t old = inl(CONF1_ADDR), v;

	outl(CONF1_ADDR, CONF1_ENABLE);
	v = inl(CONF1_ADDR);
	outl(CONF1_ADDR, old);
	return v == CONF1_ENABLE;
}

enum pci_method pci_init(const char *how, uint64_t ecam_base)
{
	ecam = ecam_base;
	if (!strcmp(how, "conf1"))
		method = PCI_CONF1;
	else if (!strcmp(how, "ecam"))
		method = PCI_ECAM;
	else if (!strcmp(how, "auto"))
		method = conf1_present() ? PCI_CONF1 : PCI_ECAM;
	else
		method = PCI_NONE;
	return method;
}

static uint32_t conf1_select(unsigned bdf, unsigned off)
{
	outl(CONF1_ADDR, CONF1_ENABLE | (bdf << 8) | (off & 0xfc));
	return CONF1_DATA + (off & 3);
}

static uint64_t ecam_addr(unsigned bdf, unsigned off)
{
	return ecam + ((uint64_t)bdf << 12) + (off & 0xfff);
}

uint32_t pci_read32(unsigned bdf, unsigned off)
{
	if (method == PCI_CONF1)
		return inl((uint16_t)conf1_select(bdf, off));
	if (method == PCI_ECAM)
		return mmio_read32(ecam_addr(bdf, off));
	return 0xffffffffu;
}

uint16_t pci_read16(unsigned bdf, unsigned off)
{
	if (method == PCI_CONF1)
		return inw((uint16_t)conf1_select(bdf, off));
	if (method == PCI_ECAM)
		return mmio_read16(ecam_addr(bdf, off));
	return 0xffff;
}

uint8_t pci_read8(unsigned bdf, unsigned off)
{
	if (method == PCI_CONF1)
		return inb((uint16_t)conf1_select(bdf, off));
	if (method == PCI_ECAM)
		return mmio_read8(ecam_addr(bdf, off));
	return 0xff;
}

void pci_write32(unsigned bdf, unsigned off, uint32_t v)
{
	if (method == PCI_CONF1)
		outl((uint16_t)conf1_select(bdf, off), v);
	else if (method == PCI_ECAM)
		mmio_write32(ecam_addr(bdf, off), v);
}

void pci_write16(unsigned bdf, unsigned off, uint16_t v)
{
	if (method == PCI_CONF1)
		outw((uint16_t)conf1_select(bdf, off), v);
	else if (method == PCI_ECAM)
		mmio_write16(ecam_addr(bdf, off), v);
}

/* --- enumeration ------------------------------------------------------------ */

static bool present(uint16_t vendor)
{
	/* 0xffff: nothing answered; 0 is what an unbacked ECAM page reads as. */
	return vendor != 0xffff && vendor != 0;
}

/* Calls fn for every function on bus 0 until it returns true; returns that bdf or -1. */
static int for_each_function(bool (*fn)(unsigned bdf, void *ctx), void *ctx)
{
	for (unsigned dev = 0; dev < 32; dev++) {
		unsigned nfn = 1;

		for (unsigned f = 0; f < nfn; f++) {
			unsigned bdf = PCI_BDF(0, dev, f);

			if (!present(pci_read16(bdf, PCI_VENDOR_ID)))
				continue;
			if (f == 0 && (pci_read8(bdf, PCI_HEADER_TYPE) & 0x80))
				nfn = 8;
			if (fn(bdf, ctx))
				return (int)bdf;
		}
	}
	return -1;
}

struct find_ctx {
	uint16_t vendor, device;
	int after;
};

static bool match_id(unsigned bdf, void *p)
{
	struct find_ctx *c = p;

	return (int)bdf > c->after && pci_read16(bdf, PCI_VENDOR_ID) == c->vendor &&
	       pci_read16(bdf, PCI_DEVICE_ID) == c->device;
}

int pci_find_device(uint16_t vendor, uint16_t device, int after)
{
	struct find_ctx c = { vendor, device, after };

	return for_each_function(match_id, &c);
}

unsigned pci_next_cap(unsigned bdf, uint8_t cap_id, unsigned from)
{
	unsigned p;

	if (!(pci_read16(bdf, PCI_STATUS) & PCI_STATUS_CAPS))
		return 0;
	p = from ? pci_read8(bdf, from + 1) : pci_read8(bdf, PCI_CAP_PTR);
	/* At most 48 capabilities fit in 192 bytes: a longer walk is a loop. */
	for (unsigned hops = 0; hops < 48; hops++) {
		p &= 0xfc;
		if (p < 0x40)
			return 0;
		if (pci_read8(bdf, p) == cap_id)
			return p;
		p = pci_read8(bdf, p + 1);
	}
	return 0;
}

/* --- BARs ----------------------------------------------------------------- */

void pci_bar_probe(unsigned bdf, unsigned idx, struct pci_bar *bar)
{
	unsigned off = PCI_BAR0 + 4 * idx;
	uint32_t lo = pci_read32(bdf, off), hi = 0, mlo, mhi = 0xffffffffu;
	uint16_t cmd = pci_read16(bdf, PCI_COMMAND);

	*bar = (struct pci_bar){ 0 };
	bar->io = lo & 1;
	bar->mem64 = !bar->io && ((lo >> 1) & 3) == 2 && idx + 1 < PCI_NUM_BARS;
	bar->prefetch = !bar->io && (lo & 8);
	if (bar->mem64)
		hi = pci_read32(bdf, off + 4);

	pci_write16(bdf, PCI_COMMAND, cmd & (uint16_t)~(PCI_CMD_IO | PCI_CMD_MEM));
	pci_write32(bdf, off, 0xffffffffu);
	mlo = pci_read32(bdf, off);
	pci_write32(bdf, off, lo);
	if (bar->mem64) {
		pci_write32(bdf, off + 4, 0xffffffffu);
		mhi = pci_read32(bdf, off + 4);
		pci_write32(bdf, off + 4, hi);
	}
	pci_write16(bdf, PCI_COMMAND, cmd);

	if (bar->io) {
		uint32_t m = mlo & ~3u;

		bar->addr = lo & ~3u;
		bar->size = m ? (uint64_t)((~m | 0xffff0000u) + 1) & 0xffff : 0;
		return;
	}
	uint64_t mask = ((uint64_t)(bar->mem64 ? mhi : 0xffffffffu) << 32) | (mlo & ~0xfu);

	bar->addr = ((uint64_t)hi << 32) | (lo & ~0xfu);
	bar->size = (mlo & ~0xfu) ? ~mask + 1 : 0;
}

struct busy_ctx {
	unsigned self;
	uint64_t lo[MAX_BUSY], hi[MAX_BUSY];
	unsigned n;
};

static bool collect_busy(unsigned bdf, void *p)
{
	struct busy_ctx *c = p;

	if (bdf == c->self || (pci_read8(bdf, PCI_HEADER_TYPE) & 0x7f) != 0)
		return false;
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar b;

		pci_bar_probe(bdf, i, &b);
		if (!b.io && b.size && b.addr && c->n < MAX_BUSY) {
			c->lo[c->n] = b.addr;
			c->hi[c->n] = b.addr + b.size;
			c->n++;
		}
		if (b.mem64)
			i++;
	}
	return false;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Lowest naturally aligned address >= *next for size bytes that overlaps no busy range. */
static uint64_t place(struct busy_ctx *c, uint64_t *next, uint64_t size, uint64_t end)
{
	uint64_t a = align_up(*next, size);

	for (unsigned tries = 0; tries <= c->n; tries++) {
		bool clash = false;

		for (unsigned i = 0; i < c->n; i++)
			if (a < c->hi[i] && c->lo[i] < a + size) {
				a = align_up(c->hi[i], size);
				clash = true;
			}
		if (!clash)
			break;
	}
	if (a + size > end || a + size < a)
		return 0;
	*next = a + size;
	return a;
}

bool pci_assign_bars(unsigned bdf, uint64_t window_start, uint64_t window_end,
		     struct pci_bar bars[PCI_NUM_BARS])
{
	static struct busy_ctx busy;
	uint64_t next = window_start;
	uint16_t cmd = pci_read16(bdf, PCI_COMMAND);
	bool ok = true;

	busy.self = bdf;
	busy.n = 0;
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		pci_bar_probe(bdf, i, &bars[i]);
		if (bars[i].mem64 && i + 1 < PCI_NUM_BARS) {
			bars[i + 1] = (struct pci_bar){ 0 };
			i++;
		}
	}
	for_each_function(collect_busy, &busy);
	/* This device's own BARs that stay where they are count as busy too. */
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &bars[i];
		bool keep = b->addr >= UC_START && b->addr + b->size <= GUEST_MAPPED_END;

		if (!b->io && b->size && keep && busy.n < MAX_BUSY) {
			busy.lo[busy.n] = b->addr;
			busy.hi[busy.n] = b->addr + b->size;
			busy.n++;
		}
	}

	pci_write16(bdf, PCI_COMMAND, cmd & (uint16_t)~(PCI_CMD_IO | PCI_CMD_MEM));
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &bars[i];
		unsigned off = PCI_BAR0 + 4 * i;

		if (b->io || !b->size)
			continue;
		if (b->addr < UC_START || b->addr + b->size > GUEST_MAPPED_END) {
			uint64_t a = place(&busy, &next, b->size, window_end);

			if (!a || (!b->mem64 && a + b->size > 0x100000000ull)) {
				ok = false;
				continue;
			}
			pci_write32(bdf, off, (uint32_t)a); /* the low 4 bits are read-only */
			if (b->mem64)
				pci_write32(bdf, off + 4, (uint32_t)(a >> 32));
			b->addr = a;
		}
	}
	pci_write16(bdf, PCI_COMMAND, (uint16_t)(cmd | PCI_CMD_MEM | PCI_CMD_MASTER));
	return ok;
}

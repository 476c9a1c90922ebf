/*
 * e1000 (82540EM) device model, driven like Linux's e1000 driver would:
 * config space through the PCI host, registers through BAR0 on the MMIO bus
 * and BAR1 (IOADDR/IODATA) on the PIO bus, descriptor rings in fake guest
 * RAM, an in-memory network backend, a recording INTx line and a fake MSI
 * host. Checksums and CRCs are recomputed here independently.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/e1000.h"
#include "pci/pci.h"
#include "loop/loop.h"
#include "mem/gm.h"
#include "util/log.h"
#include "mem/gm_test.h"

#include "fakes.h"

#define RAM_GPA  0x100000ull
#define RAM_SIZE (4u << 20)
#define BAR0     0xc0000000ull
#define BAR1     0xc000u
#define SLOT     1

/* Where the tests put things in guest RAM. */
#define TXR  (RAM_GPA + 0x00000)   /* transmit ring */
#define RXR  (RAM_GPA + 0x08000)   /* receive ring */
#define TXB  (RAM_GPA + 0x10000)   /* transmit buffers (1 MiB) */
#define RXB  (RAM_GPA + 0x200000)  /* receive buffers */

/* Registers. */
enum {
	CTRL = 0x0, STATUS = 0x8, EECD = 0x10, EERD = 0x14, MDIC = 0x20, VET = 0x38, ICR = 0xc0, ITR = 0xc4,
	ICS = 0xc8, IMS = 0xd0, IMC = 0xd8, RCTL = 0x100, TCTL = 0x400, RDBAL = 0x2800, RDBAH = 0x2804,
	RDLEN = 0x2808, RDH = 0x2810, RDT = 0x2818, TDBAL = 0x3800, TDBAH = 0x3804, TDLEN = 0x3808,
	TDH = 0x3810, TDT = 0x3818, MPC = 0x4010, GPRC = 0x4074, GPTC = 0x4080, GORCL = 0x4088,
	GORCH = 0x408c, TORL = 0x40c0, TORH = 0x40c4, TPR = 0x40d0, TPT = 0x40d4, TSCTC = 0x40f8,
	TSCTFC = 0x40fc, MTA = 0x5200, RAL0 = 0x5400, RAH0 = 0x5404, VFTA = 0x5600,
};

#define ICR_TXDW   0x01u
#define ICR_TXQE   0x02u
#define ICR_LSC    0x04u
#define ICR_RXDMT0 0x10u
#define ICR_RXT0   0x80u
#define ICR_MDAC   0x200u

#define RCTL_EN    (1u << 1)
#define RCTL_UPE   (1u << 3)
#define RCTL_MPE   (1u << 4)
#define RCTL_LPE   (1u << 5)
#define RCTL_BAM   (1u << 15)
#define RCTL_SZ_256 (3u << 16)
#define RCTL_VFE   (1u << 18)
#define RCTL_SECRC (1u << 26)

static const uint8_t MAC[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

/* ---- fake backend (fakes.c): frames without the vnet header ---- */

static void fb_queue(struct fake_be *f, const uint8_t *frame, size_t len)
{
	fb_push(f, frame, len);
}

/* ---- fake MSI host and INTx line ---- */

struct fake_line {
	bool level;
	unsigned rises;
};

static void line_set(struct irq *irq, bool level)
{
	struct fake_line *l = irq->opaque;

	if (level && !l->level)
		l->rises++;
	l->level = level;
}

static const struct irq_ops line_ops = { .set_level = line_set };

/* ---- fixture ---- */

struct fx {
	struct bus pio, mmio;
	struct pci_host host;
	struct guest_mem gm;
	uint8_t *ram;
	struct fake_be *fb;
	struct fake_msi fm;
	struct msi_host msi;
	struct fake_line line;
	struct irq intx;
	struct e1000 *e;
};

static uint32_t cfg_rd(struct fx *f, unsigned off, unsigned size)
{
	return pci_host_cfg_read(&f->host, 0, SLOT, 0, off, size);
}

static void cfg_wr(struct fx *f, unsigned off, unsigned size, uint32_t v)
{
	pci_host_cfg_write(&f->host, 0, SLOT, 0, off, size, v);
}

static uint32_t rd(struct fx *f, uint32_t reg)
{
	uint64_t v;

	assert_int_equal(bus_read(&f->mmio, BAR0 + reg, 4, &v), 0);
	return (uint32_t)v;
}

static void wr(struct fx *f, uint32_t reg, uint32_t v)
{
	assert_int_equal(bus_write(&f->mmio, BAR0 + reg, 4, v), 0);
}

static uint8_t *ram(struct fx *f, uint64_t gpa)
{
	assert_true(gpa >= RAM_GPA && gpa < RAM_GPA + RAM_SIZE);
	return f->ram + (gpa - RAM_GPA);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int fx_setup(struct fx *f, bool vnet_hdr, bool with_msi)
{
	struct e1000_config cfg = { .backend = NULL };
	char err[128];
	int slot;

	memset(f, 0, sizeof(*f));
	log_set_level(LOG_ERROR);
	assert_int_equal(bus_init(&f->pio, "pio"), 0);
	assert_int_equal(bus_init(&f->mmio, "mmio"), 0);
	assert_int_equal(pci_host_init(&f->host, &f->pio, &f->mmio, NULL), 0);
	f->ram = calloc(1, RAM_SIZE);
	assert_non_null(f->ram);
	gm_init_fake(&f->gm, RAM_GPA, f->ram, RAM_SIZE);
	f->fb = fb_new(vnet_hdr);
	f->fb->strip_hdr = true;
	f->fm.next_gsi = 40;
	f->fm.irqfd = -1;
	f->msi = (struct msi_host){ &fake_msi_ops, &f->fm };
	memcpy(cfg.mac, MAC, 6);
	cfg.backend = &f->fb->be;
	assert_int_equal(e1000_new(&f->e, &cfg, &f->gm, with_msi ? &f->msi : NULL, err, sizeof(err)), 0);
	slot = pci_host_add(&f->host, e1000_pci(f->e), 1);
	assert_int_equal(slot, SLOT);
	f->intx = (struct irq){ .ops = &line_ops, .opaque = &f->line };
	e1000_set_irq(f->e, &f->intx);
	/* What firmware does: place the BARs, enable decoding and bus mastering. */
	cfg_wr(f, PCI_BAR0, 4, (uint32_t)BAR0);
	cfg_wr(f, PCI_BAR0 + 4, 4, BAR1);
	cfg_wr(f, PCI_COMMAND, 2, PCI_CMD_MEM | PCI_CMD_IO | PCI_CMD_MASTER);
	return 0;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	fx_setup(f, false, true);
	*state = f;
	return 0;
}

static int setup_vnet(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	fx_setup(f, true, true);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	e1000_free(f->e);
	pci_host_exit(&f->host);
	bus_exit(&f->pio);
	bus_exit(&f->mmio);
	free(f->ram);
	free(f);
	return 0;
}

static struct e1000_stats stats(struct fx *f)
{
	struct e1000_stats st;

	e1000_get_stats(f->e, &st);
	return st;
}

/* ---- driver-side helpers ---- */

static void tx_setup(struct fx *f, unsigned n)
{
	memset(ram(f, TXR), 0, n * 16);
	wr(f, TDLEN, n * 16);
	wr(f, TDBAH, (uint32_t)(TXR >> 32));
	wr(f, TDBAL, (uint32_t)TXR);
	wr(f, TDT, 0);
	wr(f, TDH, 0);
	wr(f, TCTL, (1u << 1) | (1u << 3));   /* EN, PSP */
}

static uint8_t *txd(struct fx *f, unsigned i)
{
	return ram(f, TXR + i * 16);
}

static void txd_legacy(struct fx *f, unsigned i, uint64_t buf, uint16_t len, uint8_t cmd)
{
	uint8_t *d = txd(f, i);

	memset(d, 0, 16);
	put64(d, buf);
	put16(d + 8, len);
	d[11] = cmd;
}

static void txd_data(struct fx *f, unsigned i, uint64_t buf, uint32_t len, uint8_t dcmd, uint8_t popts)
{
	uint8_t *d = txd(f, i);

	memset(d, 0, 16);
	put64(d, buf);
	put32(d + 8, len | 1u << 20 | (uint32_t)(dcmd | 0x20) << 24);
	d[13] = popts;
}

static void txd_ctx(struct fx *f, unsigned i, uint8_t ipcss, uint8_t ipcso, uint16_t ipcse, uint8_t tucss,
		    uint8_t tucso, uint16_t tucse, uint32_t paylen, uint8_t tucmd, uint8_t hdrlen, uint16_t mss)
{
	uint8_t *d = txd(f, i);

	memset(d, 0, 16);
	d[0] = ipcss;
	d[1] = ipcso;
	put16(d + 2, ipcse);
	d[4] = tucss;
	d[5] = tucso;
	put16(d + 6, tucse);
	put32(d + 8, paylen | (uint32_t)(tucmd | 0x20) << 24);
	d[13] = hdrlen;
	put16(d + 14, mss);
}

/* A receive ring of n descriptors, buffers of `bufsz` bytes, all but one given to the device. */
static void rx_setup(struct fx *f, unsigned n, unsigned bufsz, uint32_t rctl)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t *d = ram(f, RXR + i * 16);

		memset(d, 0, 16);
		put64(d, RXB + (uint64_t)i * bufsz);
	}
	wr(f, RDLEN, n * 16);
	wr(f, RDBAH, 0);
	wr(f, RDBAL, (uint32_t)RXR);
	wr(f, RDH, 0);
	wr(f, RDT, 0);
	wr(f, RCTL, rctl | RCTL_EN);
	wr(f, RDT, n - 1);
}

static uint8_t *rxd(struct fx *f, unsigned i)
{
	return ram(f, RXR + i * 16);
}

/* Checksums, computed the plain way. */
static uint32_t sum16(uint32_t s, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		s += (i & 1) ? p[i] : (uint32_t)p[i] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

/* A valid IPv4 header's checksum verifies to 0xffff. */
static bool ip_ok(const uint8_t *ip)
{
	return fold(sum16(0, ip, (ip[0] & 0xf) * 4u)) == 0xffff;
}

/* TCP or UDP over IPv4: pseudo-header + segment verify to 0xffff. */
static bool l4_ok(const uint8_t *ip, size_t l4len)
{
	const uint8_t *l4 = ip + (ip[0] & 0xf) * 4u;
	uint32_t s = sum16(0, ip + 12, 8);

	s += ip[9];
	s += (uint32_t)l4len;
	return fold(sum16(s, l4, l4len)) == 0xffff;
}

static uint32_t crc32_ref(const uint8_t *p, size_t len)
{
	uint32_t c = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
	}
	return ~c;
}

/* An Ethernet + IPv4 + TCP frame with `payload` bytes of pattern; returns its length. */
static size_t build_tcp(uint8_t *p, size_t payload, uint16_t ipid, uint32_t seq, uint8_t flags)
{
	memcpy(p, "\x02\x00\x00\x00\x00\x01", 6);
	memcpy(p + 6, MAC, 6);
	p[12] = 0x08;
	p[13] = 0x00;
	memset(p + 14, 0, 40);
	p[14] = 0x45;
	p[14 + 2] = (uint8_t)((40 + payload) >> 8);
	p[14 + 3] = (uint8_t)(40 + payload);
	p[14 + 4] = (uint8_t)(ipid >> 8);
	p[14 + 5] = (uint8_t)ipid;
	p[14 + 8] = 64;
	p[14 + 9] = 6;
	memcpy(p + 14 + 12, "\x0a\x00\x02\x0f\x0a\x00\x02\x02", 8);
	p[34] = 0x30;   /* ports 12345 -> 80 */
	p[35] = 0x39;
	p[37] = 80;
	p[38] = (uint8_t)(seq >> 24);
	p[39] = (uint8_t)(seq >> 16);
	p[40] = (uint8_t)(seq >> 8);
	p[41] = (uint8_t)seq;
	p[46] = 0x50;   /* data offset 5 */
	p[47] = flags;
	p[48] = 0xff;
	p[49] = 0xff;
	for (size_t i = 0; i < payload; i++)
		p[54 + i] = (uint8_t)(i * 7 + 3);
	return 54 + payload;
}

/* ---- PCI identity ---- */

static void test_pci_identity(void **state)
{
	struct fx *f = *state;
	unsigned cap = 0;

	assert_int_equal(cfg_rd(f, 0, 4), 0x100e8086);
	assert_int_equal(cfg_rd(f, PCI_REVISION, 1), 0);
	assert_int_equal(cfg_rd(f, PCI_CLASS_PROG, 1), 0x00);
	assert_int_equal(cfg_rd(f, PCI_CLASS_PROG + 1, 2), 0x0200);
	assert_int_equal(cfg_rd(f, PCI_SUBSYS_VENDOR, 2), 0x8086);
	assert_int_equal(cfg_rd(f, PCI_SUBSYS_ID, 2), 0x001e);
	assert_int_equal(cfg_rd(f, PCI_INT_PIN, 1), 1);
	/* BAR sizing: 128 KiB memory, 64-byte I/O. */
	cfg_wr(f, PCI_BAR0, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, PCI_BAR0, 4), 0xfffe0000);
	cfg_wr(f, PCI_BAR0 + 4, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, PCI_BAR0 + 4, 4), 0xffffffc1);
	cfg_wr(f, PCI_BAR0, 4, (uint32_t)BAR0);
	cfg_wr(f, PCI_BAR0 + 4, 4, BAR1);
	for (unsigned p = cfg_rd(f, PCI_CAP_PTR, 1); p; p = cfg_rd(f, p + 1, 1))
		if (cfg_rd(f, p, 1) == 0x05)
			cap = p;
	assert_int_not_equal(cap, 0);
	assert_true(cfg_rd(f, cap + 2, 2) & 0x80);   /* 64-bit address */
	assert_int_equal(cfg_rd(f, cap + 2, 2) & 1, 0);
	/* And the registers answer there. */
	assert_int_equal(rd(f, STATUS) & 0xc0, 0x80);   /* 1000 Mb/s */
}

/* ---- EEPROM ---- */

static uint16_t eerd_read(struct fx *f, unsigned word)
{
	uint32_t v;

	wr(f, EERD, word << 8 | 1);
	v = rd(f, EERD);
	assert_true(v & 0x10);   /* DONE */
	assert_int_equal((v >> 8) & 0xff, word);
	return (uint16_t)(v >> 16);
}

static void test_eeprom_eerd(void **state)
{
	struct fx *f = *state;
	uint16_t sum = 0;

	for (unsigned i = 0; i < 64; i++)
		sum = (uint16_t)(sum + eerd_read(f, i));
	assert_int_equal(sum, 0xbaba);
	assert_int_equal(eerd_read(f, 0), MAC[0] | MAC[1] << 8);
	assert_int_equal(eerd_read(f, 1), MAC[2] | MAC[3] << 8);
	assert_int_equal(eerd_read(f, 2), MAC[4] | MAC[5] << 8);
	assert_int_equal(eerd_read(f, 0x0d), 0x100e);
	assert_int_equal(eerd_read(f, 0x0e), 0x8086);
	assert_int_equal(eerd_read(f, 0x0b), 0x001e);
	assert_int_equal(eerd_read(f, 0x0c), 0x8086);
	/* Flow control off (word 0x0f PAUSE bits), no APM wake (word 0x24). */
	assert_int_equal(eerd_read(f, 0x0f) & 0x3000, 0);
	assert_int_equal(eerd_read(f, 0x24) & 0x0400, 0);
	/* A word beyond the part reads 0, still DONE. */
	assert_int_equal(eerd_read(f, 200), 0);
}

/* Microwire, the way e1000_hw.c bit-bangs it. */
#define SK 0x1u
#define CS 0x2u
#define DI 0x4u
#define DO 0x8u
#define REQ 0x40u
#define GNT 0x80u
#define PRES 0x100u

static void ee_clock(struct fx *f, uint32_t *eecd)
{
	wr(f, EECD, *eecd | SK);
	wr(f, EECD, *eecd & ~SK);
}

static void ee_out(struct fx *f, uint32_t *eecd, uint16_t data, unsigned bits)
{
	for (unsigned i = bits; i-- > 0;) {
		*eecd = (data >> i) & 1 ? (*eecd | DI) : (*eecd & ~DI);
		wr(f, EECD, *eecd);
		ee_clock(f, eecd);
	}
	*eecd &= ~DI;
	wr(f, EECD, *eecd);
}

static uint16_t ee_in(struct fx *f, uint32_t *eecd, unsigned bits)
{
	uint16_t v = 0;

	for (unsigned i = 0; i < bits; i++) {
		wr(f, EECD, *eecd | SK);
		v = (uint16_t)(v << 1 | ((rd(f, EECD) & DO) ? 1 : 0));
		wr(f, EECD, *eecd & ~SK);
	}
	return v;
}

static uint16_t ee_word(struct fx *f, unsigned addr)
{
	uint32_t eecd = REQ;
	uint16_t v;

	wr(f, EECD, eecd);
	eecd |= CS;
	wr(f, EECD, eecd);
	ee_out(f, &eecd, 0x6, 3);
	ee_out(f, &eecd, (uint16_t)addr, 6);
	v = ee_in(f, &eecd, 16);
	wr(f, EECD, REQ);   /* CS low */
	wr(f, EECD, 0);     /* release */
	return v;
}

static void test_eeprom_bitbang(void **state)
{
	struct fx *f = *state;
	uint16_t sum = 0;
	uint32_t eecd;

	/* Present, 64-word part, grant only while requested. */
	eecd = rd(f, EECD);
	assert_true(eecd & PRES);
	assert_false(eecd & 0x200);
	assert_false(eecd & GNT);
	wr(f, EECD, REQ);
	assert_true(rd(f, EECD) & GNT);
	wr(f, EECD, 0);
	assert_false(rd(f, EECD) & GNT);

	for (unsigned i = 0; i < 64; i++) {
		uint16_t w = ee_word(f, i);

		assert_int_equal(w, eerd_read(f, i));
		sum = (uint16_t)(sum + w);
	}
	assert_int_equal(sum, 0xbaba);
	assert_int_equal(ee_word(f, 1), MAC[2] | MAC[3] << 8);

	/* Sequential read: keep clocking after word 0x0d and word 0x0e follows. */
	eecd = REQ;
	wr(f, EECD, eecd);
	eecd |= CS;
	wr(f, EECD, eecd);
	ee_out(f, &eecd, 0x6, 3);
	ee_out(f, &eecd, 0x0d, 6);
	assert_int_equal(ee_in(f, &eecd, 16), 0x100e);
	assert_int_equal(ee_in(f, &eecd, 16), 0x8086);
	wr(f, EECD, 0);

	/* Without the grant the pins do nothing: no data comes out. */
	eecd = CS;
	wr(f, EECD, eecd);
	ee_out(f, &eecd, 0x6, 3);
	ee_out(f, &eecd, 0, 6);
	assert_int_equal(ee_in(f, &eecd, 16), 0xffff);   /* DO idles high */
	wr(f, EECD, 0);

	/* Zeros before the start bit are ignored, as a Microwire part does. */
	eecd = REQ | CS;
	wr(f, EECD, eecd);
	ee_out(f, &eecd, 0x06, 5);   /* 0 0 1 1 0 */
	ee_out(f, &eecd, 0x0e, 6);
	assert_int_equal(ee_in(f, &eecd, 16), 0x8086);
	wr(f, EECD, 0);

	/* A write opcode is ignored: the EEPROM is unchanged. */
	eecd = REQ | CS;
	wr(f, EECD, eecd);
	ee_out(f, &eecd, 0x5, 3);
	ee_out(f, &eecd, 0, 6);
	ee_out(f, &eecd, 0xdead, 16);
	wr(f, EECD, 0);
	assert_int_equal(ee_word(f, 0), MAC[0] | MAC[1] << 8);
}

/* ---- PHY ---- */

static uint32_t mdic(struct fx *f, unsigned phy, unsigned reg, bool write, uint16_t data)
{
	uint32_t v = (uint32_t)reg << 16 | (uint32_t)phy << 21 | (write ? 1u << 26 : 2u << 26) | data;

	wr(f, MDIC, v);
	v = rd(f, MDIC);
	assert_true(v & (1u << 28));   /* ready */
	return v;
}

static void test_phy_mdic(void **state)
{
	struct fx *f = *state;
	uint32_t v, id;

	id = (mdic(f, 1, 2, false, 0) & 0xffff) << 16;
	id |= mdic(f, 1, 3, false, 0) & 0xffff;
	assert_int_equal(id & 0xfffffff0u, 0x01410c20);   /* what e1000_detect_gig_phy wants for an 82540 */
	v = mdic(f, 1, 1, false, 0);
	assert_false(v & (1u << 30));
	assert_true(v & 0x0004);   /* link up */
	assert_true(v & 0x0020);   /* autonegotiation complete */
	v = mdic(f, 1, 0x11, false, 0);
	assert_int_equal(v & 0xc000, 0x8000);   /* 1000 Mb/s */
	assert_true(v & 0x2000);                /* full duplex */
	assert_true(v & 0x0400);                /* link */
	assert_int_equal(mdic(f, 1, 10, false, 0) & 0x0800, 0x0800);   /* partner does 1000 full */

	/* Writable registers keep what is written; identity registers do not change. */
	mdic(f, 1, 4, true, 0x01e1);
	assert_int_equal(mdic(f, 1, 4, false, 0) & 0xffff, 0x01e1);
	mdic(f, 1, 2, true, 0x1234);
	assert_int_equal(mdic(f, 1, 2, false, 0) & 0xffff, 0x0141);
	/* Restart autonegotiation and software reset self-clear; a software reset keeps the settings. */
	mdic(f, 1, 0, true, 0x1340);
	assert_int_equal(mdic(f, 1, 0, false, 0) & 0xffff, 0x1140);
	mdic(f, 1, 0, true, 0x9140);
	v = mdic(f, 1, 0, false, 0);
	assert_int_equal(v & 0xffff, 0x1140);
	assert_int_equal(mdic(f, 1, 4, false, 0) & 0xffff, 0x01e1);
	/* The hardware reset through CTRL.PHY_RST restores the defaults. */
	wr(f, CTRL, rd(f, CTRL) | (1u << 31));
	wr(f, CTRL, rd(f, CTRL) & ~(1u << 31));
	assert_int_not_equal(mdic(f, 1, 4, false, 0) & 0xffff, 0x01e1);
	assert_int_equal(mdic(f, 1, 2, false, 0) & 0xffff, 0x0141);

	/* No PHY at address 2: error bit. */
	v = mdic(f, 2, 1, false, 0);
	assert_true(v & (1u << 30));
	/* The interrupt-enable bit raises MDAC when the access completes. */
	wr(f, IMC, ~0u);
	rd(f, ICR);
	wr(f, MDIC, 1u << 16 | 1u << 21 | 2u << 26 | 1u << 29);
	assert_true(rd(f, ICR) & ICR_MDAC);
}

static void test_link_slu(void **state)
{
	struct fx *f = *state;
	uint32_t st;

	rd(f, ICR);
	st = rd(f, STATUS);
	assert_false(st & 0x2);   /* LU: not before SLU */
	wr(f, CTRL, rd(f, CTRL) | (1u << 6));
	st = rd(f, STATUS);
	assert_true(st & 0x2);
	assert_true(st & 0x1);                 /* full duplex */
	assert_int_equal(st & 0xc0, 0x80);     /* 1000 Mb/s */
	assert_true(rd(f, ICR) & ICR_LSC);
	/* Writes to STATUS change nothing. */
	wr(f, STATUS, 0);
	assert_int_equal(rd(f, STATUS), st);
}

static void test_ctrl_reset(void **state)
{
	struct fx *f = *state;

	wr(f, CTRL, rd(f, CTRL) | (1u << 6));
	wr(f, IMS, 0xff);
	wr(f, RCTL, RCTL_EN | RCTL_BAM);
	wr(f, TDLEN, 4096);
	wr(f, RAL0, 0x11223344);
	wr(f, MTA + 4, 0x5555);
	wr(f, CTRL, rd(f, CTRL) | (1u << 26));
	assert_int_equal(rd(f, CTRL) & (1u << 26), 0);   /* self-clearing */
	assert_int_equal(rd(f, CTRL) & (1u << 6), 0);
	assert_int_equal(rd(f, IMS), 0);
	assert_int_equal(rd(f, RCTL), 0);
	assert_int_equal(rd(f, TDLEN), 0);
	assert_int_equal(rd(f, MTA + 4), 0);
	/* Receive address 0 comes back from the EEPROM, valid. */
	assert_int_equal(rd(f, RAL0), (uint32_t)MAC[0] | MAC[1] << 8 | MAC[2] << 16 | (uint32_t)MAC[3] << 24);
	assert_int_equal(rd(f, RAH0), (MAC[4] | MAC[5] << 8) | 0x80000000u);
}

/* ---- I/O window ---- */

static uint32_t io_rd(struct fx *f, unsigned off, unsigned size)
{
	uint64_t v;

	assert_int_equal(bus_read(&f->pio, BAR1 + off, size, &v), 0);
	return (uint32_t)v;
}

static void io_wr(struct fx *f, unsigned off, unsigned size, uint32_t v)
{
	assert_int_equal(bus_write(&f->pio, BAR1 + off, size, v), 0);
}

static void test_io_window(void **state)
{
	struct fx *f = *state;
	struct e1000_stats before = stats(f), after;

	io_wr(f, 0, 4, STATUS);
	assert_int_equal(io_rd(f, 0, 4), STATUS);
	assert_int_equal(io_rd(f, 4, 4), rd(f, STATUS));
	/* Linux resets an 82540 through the I/O window. */
	wr(f, IMS, 0xff);
	io_wr(f, 0, 4, CTRL);
	io_wr(f, 4, 4, rd(f, CTRL) | (1u << 26));
	assert_int_equal(rd(f, IMS), 0);
	/* Register writes go through too. */
	io_wr(f, 0, 4, IMS);
	io_wr(f, 4, 4, ICR_RXT0);
	assert_int_equal(rd(f, IMS), ICR_RXT0);

	/* IOADDR outside the register file: reads 0, writes go nowhere. */
	io_wr(f, 0, 4, 0x20000);
	assert_int_equal(io_rd(f, 4, 4), 0);
	io_wr(f, 4, 4, 0xffffffff);
	io_wr(f, 0, 4, 0xfffffffc);
	io_wr(f, 4, 4, 0xffffffff);
	assert_int_equal(io_rd(f, 4, 4), 0);
	io_wr(f, 0, 4, 0x20000 + STATUS);   /* no aliasing of the register file */
	assert_int_equal(io_rd(f, 4, 4), 0);
	assert_int_equal(rd(f, IMS), ICR_RXT0);
	/* Byte and word accesses, and the reserved part of the window, are ignored. */
	io_wr(f, 0, 4, IMS);
	io_wr(f, 4, 2, 0xffff);
	io_wr(f, 4, 1, 0xff);
	io_wr(f, 8, 4, 0xffffffff);
	assert_int_equal(io_rd(f, 4, 2), 0);
	assert_int_equal(io_rd(f, 8, 4), 0);
	assert_int_equal(rd(f, IMS), ICR_RXT0);
	after = stats(f);
	assert_int_equal(after.pio_exits - before.pio_exits, 21);
}

/* ---- register access rules ---- */

static void test_bad_accesses(void **state)
{
	struct fx *f = *state;
	uint64_t v;
	uint32_t ims;

	wr(f, IMS, 0x1);
	ims = rd(f, IMS);
	/* 8-, 2- and 1-byte and unaligned accesses: ignored, read 0. */
	assert_int_equal(bus_write(&f->mmio, BAR0 + IMS, 8, ~0ull), 0);
	assert_int_equal(bus_write(&f->mmio, BAR0 + IMS, 2, 0xffff), 0);
	assert_int_equal(bus_write(&f->mmio, BAR0 + IMS, 1, 0xff), 0);
	assert_int_equal(bus_write(&f->mmio, BAR0 + IMS + 1, 4, 0xffffffff), 0);
	assert_int_equal(rd(f, IMS), ims);
	assert_int_equal(bus_read(&f->mmio, BAR0 + STATUS, 8, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(bus_read(&f->mmio, BAR0 + STATUS + 2, 4, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(bus_read(&f->mmio, BAR0 + STATUS, 1, &v), 0);
	assert_int_equal(v, 0);
	/* Registers the model lacks read 0 and keep nothing. */
	wr(f, 0x1234 & ~3u, 0xdeadbeef);
	assert_int_equal(rd(f, 0x1234 & ~3u), 0);
	wr(f, 0x1fffc, 0xdeadbeef);
	assert_int_equal(rd(f, 0x1fffc), 0);
	/* Statistics are read-only. */
	wr(f, GPRC, 77);
	assert_int_equal(rd(f, GPRC), 0);
	/* The device still works. */
	assert_true(rd(f, STATUS) & 0x80);
}

/* ---- interrupts ---- */

static void test_icr_ims(void **state)
{
	struct fx *f = *state;

	rd(f, ICR);
	assert_false(f->line.level);
	/* A cause without its mask bit: latched, no interrupt. */
	wr(f, ICS, ICR_RXT0);
	assert_false(f->line.level);
	/* Unmasking asserts the line. */
	wr(f, IMS, ICR_RXT0 | ICR_TXDW);
	assert_true(f->line.level);
	assert_int_equal(rd(f, IMS), ICR_RXT0 | ICR_TXDW);
	/* Masking again lowers it; the cause stays. */
	wr(f, IMC, ICR_RXT0);
	assert_false(f->line.level);
	assert_int_equal(rd(f, IMS), ICR_TXDW);
	wr(f, IMS, ICR_RXT0);
	assert_true(f->line.level);
	/* Reading ICR returns and clears every cause and lowers the line. */
	assert_int_equal(rd(f, ICR), ICR_RXT0);
	assert_false(f->line.level);
	assert_int_equal(rd(f, ICR), 0);
	/* ICS of a masked-in cause: straight up. */
	wr(f, ICS, ICR_TXDW | ICR_LSC);
	assert_true(f->line.level);
	/* Writing ICR clears the bits written. */
	wr(f, ICR, ICR_TXDW);
	assert_false(f->line.level);
	assert_int_equal(rd(f, ICR), ICR_LSC);
	/* INTx disabled in the command register: no line, but the causes are there. */
	cfg_wr(f, PCI_COMMAND, 2, PCI_CMD_MEM | PCI_CMD_IO | PCI_CMD_MASTER | PCI_CMD_INTX_OFF);
	wr(f, ICS, ICR_RXT0);
	assert_false(f->line.level);
	cfg_wr(f, PCI_COMMAND, 2, PCI_CMD_MEM | PCI_CMD_IO | PCI_CMD_MASTER);
	assert_true(f->line.level);
	assert_int_equal(rd(f, ICR), ICR_RXT0);
	assert_false(f->line.level);
	assert_true(stats(f).irqs >= 4);
}

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_itr(void **state)
{
	struct fx *f = *state;
	struct loop *l = loop_new();
	unsigned rises;
	uint64_t t0, t1;

	assert_non_null(l);
	rd(f, ICR);
	wr(f, IMS, ICR_RXT0);
	wr(f, ITR, 0xffff);          /* 65535 x 256 ns = 16.8 ms between interrupts */
	assert_int_equal(rd(f, ITR), 0xffff);

	/* Without a loop: the held-back interrupt goes out at an access after the interval. */
	t0 = ms_now();
	wr(f, ICS, ICR_RXT0);
	assert_true(f->line.level);
	rises = f->line.rises;
	rd(f, ICR);
	wr(f, ICS, ICR_RXT0);
	assert_false(f->line.level);   /* too soon */
	assert_int_equal(stats(f).irqs_throttled, 1);
	while (!f->line.level && ms_now() - t0 < 2000) {
		usleep(1000);
		rd(f, STATUS);
	}
	assert_true(f->line.level);
	assert_true(ms_now() - t0 >= 16);
	assert_int_equal(f->line.rises, rises + 1);

	/* With a loop: its timer releases it. */
	assert_int_equal(e1000_attach(f->e, l), 0);
	while (loop_run_once(l, 0) > 0)
		;
	rd(f, ICR);
	usleep(20000);
	t0 = ms_now();
	wr(f, ICS, ICR_RXT0);
	assert_true(f->line.level);    /* the interval since the last one is over */
	rd(f, ICR);
	wr(f, ICS, ICR_RXT0);
	assert_false(f->line.level);
	while (!f->line.level && ms_now() - t0 < 2000)
		loop_run_once(l, 100);
	t1 = ms_now();
	assert_true(f->line.level);
	assert_true(t1 - t0 >= 16);

	/* A cause that disappears while held back is never signalled. */
	rd(f, ICR);
	rises = f->line.rises;
	wr(f, ICS, ICR_RXT0);
	rd(f, ICR);
	t0 = ms_now();
	while (ms_now() - t0 < 40)
		loop_run_once(l, 10);
	assert_false(f->line.level);
	assert_int_equal(f->line.rises, rises);

	/* ITR 0: no throttling at all. */
	wr(f, ITR, 0);
	for (int i = 0; i < 5; i++) {
		wr(f, ICS, ICR_RXT0);
		assert_true(f->line.level);
		rd(f, ICR);
		assert_false(f->line.level);
	}
	e1000_detach(f->e);
	loop_free(l);
}

static unsigned find_cap(struct fx *f, uint8_t id)
{
	for (unsigned p = cfg_rd(f, PCI_CAP_PTR, 1); p; p = cfg_rd(f, p + 1, 1))
		if (cfg_rd(f, p, 1) == id)
			return p;
	return 0;
}

static uint64_t drain(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static void test_msi(void **state)
{
	struct fx *f = *state;
	unsigned cap = find_cap(f, 0x05);

	assert_int_not_equal(cap, 0);
	cfg_wr(f, cap + 4, 4, 0xfee00000);
	cfg_wr(f, cap + 8, 4, 0);
	cfg_wr(f, cap + 12, 2, 0x4041);
	cfg_wr(f, cap + 2, 2, 1);
	assert_int_equal(cfg_rd(f, cap + 2, 2) & 1, 1);
	assert_int_equal(f->fm.addr, 0xfee00000);
	assert_int_equal(f->fm.data, 0x4041);
	assert_true(f->fm.irqfd >= 0);

	rd(f, ICR);
	wr(f, IMS, ICR_RXT0);
	wr(f, ICS, ICR_RXT0);
	assert_false(f->line.level);   /* INTx stays quiet with MSI on */
	assert_int_equal(drain(f->fm.irqfd), 1);
	/* Another cause while the first is unread: no new message (ICR not read yet). */
	wr(f, ICS, ICR_RXT0);
	assert_int_equal(drain(f->fm.irqfd), 0);
	rd(f, ICR);
	wr(f, ICS, ICR_RXT0);
	assert_int_equal(drain(f->fm.irqfd), 1);
	/* Masked, then unmasked with the cause pending: one message. */
	rd(f, ICR);
	wr(f, IMC, ~0u);
	wr(f, ICS, ICR_RXT0);
	assert_int_equal(drain(f->fm.irqfd), 0);
	wr(f, IMS, ICR_RXT0);
	assert_int_equal(drain(f->fm.irqfd), 1);
	/* Retargeting updates the route. */
	cfg_wr(f, cap + 12, 2, 0x4042);
	assert_int_equal(f->fm.data, 0x4042);
	/* MSI off with the cause still asserted: INTx takes over. */
	cfg_wr(f, cap + 2, 2, 0);
	assert_true(f->line.level);
	rd(f, ICR);
	assert_false(f->line.level);
}

/* ---- transmit ---- */

static void test_tx_legacy(void **state)
{
	struct fx *f = *state;
	uint8_t frame[100];
	struct e1000_stats st;

	tx_setup(f, 8);
	rd(f, ICR);
	wr(f, IMS, ICR_TXDW);
	for (unsigned i = 0; i < sizeof(frame); i++)
		frame[i] = (uint8_t)i;
	memcpy(ram(f, TXB), frame, sizeof(frame));
	txd_legacy(f, 0, TXB, sizeof(frame), 0x01 | 0x02 | 0x08);   /* EOP IFCS RS */
	wr(f, TDT, 1);
	assert_int_equal(f->fb->out_count, 1);
	assert_int_equal(f->fb->out[0].len, sizeof(frame));
	assert_memory_equal(f->fb->out[0].data, frame, sizeof(frame));
	assert_int_equal(txd(f, 0)[12] & 1, 1);   /* DD */
	assert_int_equal(rd(f, TDH), 1);
	assert_true(f->line.level);
	assert_int_equal(rd(f, ICR) & (ICR_TXDW | ICR_TXQE), ICR_TXDW | ICR_TXQE);

	/* One frame over three descriptors (RS only on the last), then a second frame. */
	memcpy(ram(f, TXB + 0x1000), "ABCDEFGHIJKLMNOPQRST", 20);
	txd_legacy(f, 1, TXB + 0x1000, 6, 0);
	txd_legacy(f, 2, TXB + 0x1006, 8, 0);
	txd_legacy(f, 3, TXB + 0x100e, 6, 0x01 | 0x08);
	txd_legacy(f, 4, TXB, 60, 0x01 | 0x08);
	wr(f, TDT, 5);
	assert_int_equal(f->fb->out_count, 3);
	assert_int_equal(f->fb->out[1].len, 60);   /* 20 bytes, padded (TCTL.PSP) */
	assert_memory_equal(f->fb->out[1].data, "ABCDEFGHIJKLMNOPQRST", 20);
	for (unsigned i = 20; i < 60; i++)
		assert_int_equal(f->fb->out[1].data[i], 0);
	assert_int_equal(f->fb->out[2].len, 60);
	assert_int_equal(txd(f, 1)[12] & 1, 0);
	assert_int_equal(txd(f, 2)[12] & 1, 0);
	assert_int_equal(txd(f, 3)[12] & 1, 1);
	assert_int_equal(txd(f, 4)[12] & 1, 1);
	assert_int_equal(rd(f, TDH), 5);

	/* Without RS nothing is written back, with RS alone (no EOP) it is. */
	txd_legacy(f, 5, TXB, 10, 0x08);
	txd_legacy(f, 6, TXB, 54, 0x01);
	wr(f, TDT, 7);
	assert_int_equal(f->fb->out_count, 4);
	assert_int_equal(txd(f, 5)[12] & 1, 1);
	assert_int_equal(txd(f, 6)[12] & 1, 0);
	assert_int_equal(rd(f, TDH), 7);
	rd(f, ICR);

	/* Ring wrap: descriptors 7, 0. */
	txd_legacy(f, 7, TXB, 64, 0x01 | 0x08);
	txd_legacy(f, 0, TXB, 64, 0x01 | 0x08);
	wr(f, TDT, 1);
	assert_int_equal(f->fb->out_count, 6);
	assert_int_equal(rd(f, TDH), 1);

	st = stats(f);
	assert_int_equal(st.tx_packets, 6);
	assert_int_equal(st.tdt_writes, 5);   /* tx_setup wrote TDT once */
	assert_int_equal(rd(f, GPTC), 6);
	assert_int_equal(rd(f, TPT), 6);
	assert_int_equal(rd(f, GPTC), 0);   /* clear on read */
	/* Octets: 100 + 60 + 60 + 64 + 2 x 64, plus 4 FCS bytes each; the high half clears both. */
	assert_int_equal(rd(f, 0x4090), 100 + 60 + 60 + 64 + 2 * 64 + 6 * 4);
	assert_int_equal(rd(f, 0x4094), 0);
	assert_int_equal(rd(f, 0x4090), 0);

	/* TCTL.EN off: the ring is left alone until it is on again. */
	wr(f, TCTL, 0);
	txd_legacy(f, 1, TXB, 64, 0x01 | 0x08);
	wr(f, TDT, 2);
	assert_int_equal(f->fb->out_count, 6);
	wr(f, TCTL, 1u << 1);
	assert_int_equal(f->fb->out_count, 7);
	/* Bus mastering off: no DMA either. */
	cfg_wr(f, PCI_COMMAND, 2, PCI_CMD_MEM | PCI_CMD_IO);
	txd_legacy(f, 2, TXB, 64, 0x01 | 0x08);
	wr(f, TDT, 3);
	assert_int_equal(f->fb->out_count, 7);
	cfg_wr(f, PCI_COMMAND, 2, PCI_CMD_MEM | PCI_CMD_IO | PCI_CMD_MASTER);
	assert_int_equal(f->fb->out_count, 8);
}

static void test_tx_legacy_vnet(void **state)
{
	struct fx *f = *state;

	/* A backend with a vnet header gets a zeroed one in front (checked in fb_send). */
	tx_setup(f, 8);
	memset(ram(f, TXB), 0xab, 80);
	txd_legacy(f, 0, TXB, 80, 0x01 | 0x08);
	wr(f, TDT, 1);
	assert_int_equal(f->fb->out_count, 1);
	assert_int_equal(f->fb->out[0].len, 80);
	assert_int_equal(f->fb->out[0].data[79], 0xab);
	assert_int_equal(f->fb->offloads, 0);
	assert_true(f->fb->offload_calls >= 1);
}

/* Linux-style TSO: context (IP, TCP, TSE), then data descriptors with TSE, TXSM and IXSM. */
static void test_tx_tso(void **state)
{
	struct fx *f = *state;
	static uint8_t frame[54 + 4000];
	size_t len = build_tcp(frame, 4000, 0x1234, 1000000, 0x18 | 0x01);   /* PSH ACK FIN */
	unsigned mss = 1448, nsegs = 3;
	uint32_t seq = 1000000;
	uint32_t ps;

	/* What e1000_tso() leaves: IP total length and checksum 0, TCP checksum = pseudo-header without length. */
	frame[16] = frame[17] = 0;
	frame[24] = frame[25] = 0;
	ps = fold(sum16(6, frame + 26, 8));
	frame[50] = (uint8_t)(ps >> 8);
	frame[51] = (uint8_t)ps;
	memcpy(ram(f, TXB), frame, len);

	tx_setup(f, 16);
	txd_ctx(f, 0, 14, 24, 33, 34, 50, 0, (uint32_t)(len - 54), 0x01 | 0x02 | 0x04, 54, (uint16_t)mss);
	/* The data in three descriptors, split unevenly, the last 4 bytes on their own as Linux does. */
	txd_data(f, 1, TXB, 100, 0x04, 0x03);
	txd_data(f, 2, TXB + 100, (uint32_t)(len - 104), 0x04, 0x03);
	txd_data(f, 3, TXB + len - 4, 4, 0x04 | 0x01 | 0x08, 0x03);
	wr(f, TDT, 4);

	assert_int_equal(f->fb->out_count, nsegs);
	for (unsigned s = 0; s < nsegs; s++) {
		const uint8_t *p = f->fb->out[s].data;
		size_t plen = s + 1 < nsegs ? mss : 4000 - 2 * mss;
		const uint8_t *ip = p + 14;

		assert_int_equal(f->fb->out[s].len, 54 + plen);
		assert_int_equal(be16(ip + 2), 40 + plen);
		assert_int_equal(be16(ip + 4), 0x1234 + s);
		assert_true(ip_ok(ip));
		assert_int_equal(be32(p + 38), seq + s * mss);
		/* PSH and FIN only on the last segment; ACK on all. */
		assert_int_equal(p[47], s + 1 < nsegs ? 0x10 : 0x19);
		assert_true(l4_ok(ip, 20 + plen));
		/* The payload is the right slice. */
		assert_memory_equal(p + 54, frame + 54 + s * mss, plen);
	}
	assert_int_equal(txd(f, 3)[12] & 1, 1);
	assert_int_equal(stats(f).tx_tso, 1);
	assert_int_equal(rd(f, TSCTC), 1);

	/* The context stays loaded: a second TSO frame without a new context descriptor. */
	txd_data(f, 4, TXB, (uint32_t)len, 0x04 | 0x01 | 0x08, 0x03);
	wr(f, TDT, 5);
	assert_int_equal(f->fb->out_count, 2 * nsegs);
	assert_true(l4_ok(f->fb->out[5].data + 14, 20 + 4000 - 2 * mss));

	/* A payload that is an exact multiple of the MSS, one segment per MSS. */
	txd_ctx(f, 5, 14, 24, 33, 34, 50, 0, 2000, 0x01 | 0x02 | 0x04, 54, 1000);
	txd_data(f, 6, TXB, 54 + 2000, 0x04 | 0x01 | 0x08, 0x03);
	wr(f, TDT, 7);
	assert_int_equal(f->fb->out_count, 2 * nsegs + 2);
	assert_int_equal(f->fb->out[2 * nsegs + 1].len, 54 + 1000);
}

/* Checksum offload without segmentation, as e1000_tx_csum() sets it up. */
static void test_tx_csum(void **state)
{
	struct fx *f = *state;
	uint8_t frame[54 + 301];
	size_t len = build_tcp(frame, 301, 7, 42, 0x18);
	uint32_t ps;

	/* CHECKSUM_PARTIAL: the TCP field holds the pseudo-header sum (length included). */
	frame[24] = frame[25] = 0;
	ps = fold(sum16(6 + 20 + 301, frame + 26, 8));
	frame[50] = (uint8_t)(ps >> 8);
	frame[51] = (uint8_t)ps;
	memcpy(ram(f, TXB), frame, len);
	tx_setup(f, 8);
	txd_ctx(f, 0, 14, 24, 33, 34, 50, 0, 0, 0x01 | 0x02, 0, 0);
	txd_data(f, 1, TXB, 30, 0, 0x03);   /* IXSM + TXSM */
	txd_data(f, 2, TXB + 30, (uint32_t)(len - 30), 0x01 | 0x08, 0x03);
	wr(f, TDT, 3);
	assert_int_equal(f->fb->out_count, 1);
	assert_int_equal(f->fb->out[0].len, len);
	assert_true(ip_ok(f->fb->out[0].data + 14));
	assert_true(l4_ok(f->fb->out[0].data + 14, 20 + 301));

	/* Legacy IC: checksum from CSS to the end, stored at CSO (a UDP-style sum over the IP header here). */
	memset(ram(f, TXB + 0x1000), 0, 64);
	memcpy(ram(f, TXB + 0x1000), frame, 34);
	ram(f, TXB + 0x1000)[24] = ram(f, TXB + 0x1000)[25] = 0;
	txd_legacy(f, 3, TXB + 0x1000, 34, 0x01 | 0x04 | 0x08);
	txd(f, 3)[10] = 24;   /* CSO */
	txd(f, 3)[13] = 14;   /* CSS */
	wr(f, TDT, 4);
	assert_int_equal(f->fb->out_count, 2);
	assert_true(ip_ok(f->fb->out[1].data + 14));

	/* Offsets beyond the frame: no insertion, no crash, the frame still goes out. */
	txd_ctx(f, 4, 200, 250, 0, 250, 254, 0, 0, 0x01 | 0x02, 0, 0);
	txd_data(f, 5, TXB, 60, 0x01 | 0x08, 0x03);
	wr(f, TDT, 6);
	assert_int_equal(f->fb->out_count, 3);
	assert_memory_equal(f->fb->out[2].data, ram(f, TXB), 60);
}

static void test_tx_vlan(void **state)
{
	struct fx *f = *state;
	uint8_t frame[64];

	for (unsigned i = 0; i < sizeof(frame); i++)
		frame[i] = (uint8_t)(i + 1);
	memcpy(ram(f, TXB), frame, sizeof(frame));
	tx_setup(f, 8);
	wr(f, VET, 0x8100);
	wr(f, CTRL, rd(f, CTRL) | (1u << 30));   /* VME */
	txd_legacy(f, 0, TXB, sizeof(frame), 0x01 | 0x08 | 0x40);   /* VLE */
	put16(txd(f, 0) + 14, 0x2005);   /* PCP 1, VID 5 */
	wr(f, TDT, 1);
	assert_int_equal(f->fb->out_count, 1);
	assert_int_equal(f->fb->out[0].len, sizeof(frame) + 4);
	assert_memory_equal(f->fb->out[0].data, frame, 12);
	assert_int_equal(be16(f->fb->out[0].data + 12), 0x8100);
	assert_int_equal(be16(f->fb->out[0].data + 14), 0x2005);
	assert_memory_equal(f->fb->out[0].data + 16, frame + 12, sizeof(frame) - 12);
}

static void test_tx_eagain(void **state)
{
	struct fx *f = *state;
	struct loop *l;

	tx_setup(f, 8);
	memset(ram(f, TXB), 0x5a, 64);
	txd_legacy(f, 0, TXB, 64, 0x01 | 0x08);
	txd_legacy(f, 1, TXB, 64, 0x01 | 0x08);
	f->fb->eagain = 1;
	wr(f, TDT, 2);
	/* The first frame is held, the ring pauses after it. */
	assert_int_equal(f->fb->out_count, 0);
	assert_int_equal(rd(f, TDH), 1);
	assert_int_equal(txd(f, 0)[12] & 1, 1);
	e1000_poll(f->e);
	assert_int_equal(f->fb->out_count, 2);
	assert_int_equal(rd(f, TDH), 2);

	/* On an I/O loop: the backend fd's writability resumes it. */
	l = loop_new();
	assert_non_null(l);
	assert_int_equal(e1000_attach(f->e, l), 0);
	txd_legacy(f, 2, TXB, 64, 0x01 | 0x08);
	txd_legacy(f, 3, TXB, 64, 0x01 | 0x08);
	f->fb->eagain = 2;
	wr(f, TDT, 4);
	assert_int_equal(f->fb->out_count, 2);   /* nothing until the I/O thread runs */
	for (int i = 0; i < 10 && f->fb->out_count < 4; i++)
		loop_run_once(l, 100);
	assert_int_equal(f->fb->out_count, 4);
	assert_int_equal(rd(f, TDH), 4);
	e1000_detach(f->e);
	loop_free(l);
}

/* ---- hostile transmit ---- */

static void test_tx_hostile_rings(void **state)
{
	struct fx *f = *state;

	tx_setup(f, 8);
	txd_legacy(f, 0, TXB, 64, 0x01 | 0x08);

	/* Ring base outside RAM. */
	wr(f, TDBAL, 0x10000);
	wr(f, TDT, 1);
	assert_int_equal(f->fb->out_count, 0);
	assert_int_equal(rd(f, TDH), 0);
	/* Ring running off the end of RAM. */
	wr(f, TDBAL, (uint32_t)(RAM_GPA + RAM_SIZE - 64));
	wr(f, TDT, 1);
	assert_int_equal(f->fb->out_count, 0);
	wr(f, TDBAH, 1);
	wr(f, TDBAL, (uint32_t)TXR);
	wr(f, TDT, 1);
	assert_int_equal(f->fb->out_count, 0);
	wr(f, TDBAH, 0);

	/* TDLEN not a multiple of 128: the low bits are dropped (1000 -> 896 = 56 descriptors). */
	wr(f, TDLEN, 1000);
	assert_int_equal(rd(f, TDLEN), 896);
	wr(f, TDLEN, 100);
	assert_int_equal(rd(f, TDLEN), 0);
	wr(f, TDT, 1);
	assert_int_equal(f->fb->out_count, 0);
	wr(f, TDLEN, 0xffffffff);
	assert_int_equal(rd(f, TDLEN), 0xfff80);
	wr(f, TDBAL, (uint32_t)(RAM_GPA + RAM_SIZE - 0x1000));   /* 1 MiB ring there runs off RAM */
	wr(f, TDT, 1);
	assert_int_equal(f->fb->out_count, 0);
	wr(f, TDBAL, (uint32_t)TXR);
	wr(f, TDLEN, 8 * 16);

	/* TDT beyond the ring. */
	wr(f, TDT, 8);
	assert_int_equal(f->fb->out_count, 0);
	wr(f, TDT, 0xffff);
	assert_int_equal(f->fb->out_count, 0);
	assert_int_equal(rd(f, TDH), 0);
	/* TDH beyond the ring. */
	wr(f, TDH, 9);
	wr(f, TDT, 1);
	assert_int_equal(f->fb->out_count, 0);
	/* Sane again: the descriptor goes. */
	wr(f, TDH, 0);
	wr(f, TDT, 1);
	assert_int_equal(f->fb->out_count, 1);
}

static void test_tx_hostile_frames(void **state)
{
	struct fx *f = *state;
	struct e1000_stats st;

	tx_setup(f, 64);
	memset(ram(f, TXB), 0x11, 0x20000);

	/* A whole ring's worth of descriptors that never end a frame: nothing sent, TDH catches up. */
	for (unsigned i = 0; i < 63; i++)
		txd_legacy(f, i, TXB, 100, 0x08);
	wr(f, TDT, 63);
	assert_int_equal(f->fb->out_count, 0);
	assert_int_equal(rd(f, TDH), 63);
	/* The frame continues across the wrap and ends: 6400 bytes so far plus 100. */
	txd_legacy(f, 63, TXB, 100, 0x01 | 0x08);
	wr(f, TDT, 0);
	assert_int_equal(f->fb->out_count, 1);
	assert_int_equal(f->fb->out[0].len, 6400);

	/* More than 64 KiB before EOP: dropped, counted; the next frame is fine. */
	for (unsigned i = 0; i < 20; i++)
		txd_legacy(f, i, TXB, 4000, 0);
	txd_legacy(f, 20, TXB, 4000, 0x01 | 0x08);
	txd_legacy(f, 21, TXB, 64, 0x01 | 0x08);
	wr(f, TDT, 22);
	assert_int_equal(f->fb->out_count, 2);
	assert_int_equal(f->fb->out[1].len, 64);
	st = stats(f);
	assert_int_equal(st.tx_dropped, 1);

	/* Buffer outside guest RAM (and one wrapping the address space): dropped, DD still written. */
	txd_legacy(f, 22, 0x1000, 64, 0x01 | 0x08);
	txd_legacy(f, 23, 0xfffffffffffffff0ull, 64, 0x01 | 0x08);
	txd_legacy(f, 24, RAM_GPA + RAM_SIZE - 10, 64, 0x01 | 0x08);
	txd_legacy(f, 25, TXB, 64, 0x01 | 0x08);
	wr(f, TDT, 26);
	assert_int_equal(f->fb->out_count, 3);
	assert_int_equal(txd(f, 22)[12] & 1, 1);
	assert_int_equal(txd(f, 24)[12] & 1, 1);
	assert_int_equal(stats(f).tx_dropped, 4);

	/* Runt (no Ethernet header) and empty frames are dropped. */
	txd_legacy(f, 26, TXB, 6, 0x01 | 0x08);
	txd_legacy(f, 27, TXB, 0, 0x01 | 0x08);
	wr(f, TDT, 28);
	assert_int_equal(f->fb->out_count, 3);

	/* Descriptor type 0xf: skipped. */
	memset(txd(f, 28), 0, 16);
	put32(txd(f, 28) + 8, 0xfu << 20 | (0x20u | 0x08u) << 24);
	txd_legacy(f, 29, TXB, 64, 0x01 | 0x08);
	wr(f, TDT, 30);
	assert_int_equal(f->fb->out_count, 4);

	/* TSO with nonsense contexts: dropped and counted, never sent. */
	txd_ctx(f, 30, 14, 24, 33, 34, 50, 0, 1000, 0x07, 200, 100);   /* header longer than the frame */
	txd_data(f, 31, TXB, 100, 0x04 | 0x01 | 0x08, 0x03);
	txd_ctx(f, 32, 14, 24, 33, 34, 50, 0, 1000, 0x07, 54, 0);      /* MSS 0 */
	txd_data(f, 33, TXB, 1054, 0x04 | 0x01 | 0x08, 0x03);
	txd_ctx(f, 34, 14, 24, 33, 50, 60, 0, 1000, 0x07, 54, 100);    /* TCP header beyond HDRLEN */
	txd_data(f, 35, TXB, 1054, 0x04 | 0x01 | 0x08, 0x03);
	txd_ctx(f, 36, 14, 24, 33, 34, 50, 0, 60000, 0x07, 54, 1);     /* 60000 segments */
	txd_data(f, 37, TXB, 60054, 0x04 | 0x01 | 0x08, 0x03);
	txd_ctx(f, 38, 14, 250, 33, 34, 50, 0, 1000, 0x07, 54, 100);   /* IP checksum offset outside */
	txd_data(f, 39, TXB, 1054, 0x04 | 0x01 | 0x08, 0x03);
	wr(f, TDT, 40);
	assert_int_equal(f->fb->out_count, 4);
	assert_int_equal(rd(f, TSCTFC), 5);
	assert_int_equal(rd(f, TDH), 40);
}

/* ---- receive ---- */

static size_t build_frame(uint8_t *p, const uint8_t *dst, size_t len, uint8_t seed)
{
	memcpy(p, dst, 6);
	memcpy(p + 6, "\x02\x00\x00\x00\x00\x09", 6);
	p[12] = 0x08;
	p[13] = 0x00;
	for (size_t i = 14; i < len; i++)
		p[i] = (uint8_t)(i * 3 + seed);
	return len;
}

static void test_rx_basic(void **state)
{
	struct fx *f = *state;
	uint8_t frame[200];
	struct e1000_stats st;
	uint32_t fcs;

	rd(f, ICR);
	wr(f, IMS, ICR_RXT0);
	rx_setup(f, 8, 2048, RCTL_BAM);
	build_frame(frame, MAC, sizeof(frame), 1);
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	/* Frame + FCS in buffer 0, DD|EOP|IXSM, length includes the FCS. */
	assert_memory_equal(ram(f, RXB), frame, sizeof(frame));
	fcs = crc32_ref(frame, sizeof(frame));
	assert_int_equal(get16(ram(f, RXB + 200)) | (uint32_t)get16(ram(f, RXB + 202)) << 16, fcs);
	assert_int_equal(get16(rxd(f, 0) + 8), 204);
	assert_int_equal(rxd(f, 0)[12], 0x01 | 0x02 | 0x04);
	assert_int_equal(rxd(f, 0)[13], 0);
	assert_int_equal(rd(f, RDH), 1);
	assert_true(f->line.level);
	assert_true(rd(f, ICR) & ICR_RXT0);

	/* A short frame is padded to 60 bytes; with SECRC no FCS. */
	wr(f, RCTL, rd(f, RCTL) | RCTL_SECRC);
	build_frame(frame, MAC, 42, 2);
	fb_queue(f->fb, frame, 42);
	e1000_poll(f->e);
	assert_int_equal(get16(rxd(f, 1) + 8), 60);
	assert_memory_equal(ram(f, RXB + 2048), frame, 42);
	for (unsigned i = 42; i < 60; i++)
		assert_int_equal(ram(f, RXB + 2048)[i], 0);

	st = stats(f);
	assert_int_equal(st.rx_packets, 2);
	assert_int_equal(rd(f, GPRC), 2);
	assert_int_equal(rd(f, TPR), 2);
	assert_int_equal(rd(f, GORCL), 204 + 64);
	assert_int_equal(rd(f, GORCH), 0);
	assert_int_equal(rd(f, GORCL), 0);
}

static void test_rx_no_desc(void **state)
{
	struct fx *f = *state;
	uint8_t frame[100];
	unsigned calls;

	rx_setup(f, 8, 2048, RCTL_BAM);
	wr(f, RDT, 3);   /* 3 descriptors given */
	build_frame(frame, MAC, sizeof(frame), 0);
	for (int i = 0; i < 5; i++)
		fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(rd(f, RDH), 3);
	assert_int_equal(f->fb->in_count, 2);   /* the rest stays in the backend */
	calls = f->fb->recv_calls;
	e1000_poll(f->e);
	assert_int_equal(f->fb->recv_calls, calls);   /* not even read */
	assert_int_equal(f->fb->in_count, 2);
	assert_int_equal(stats(f).rx_dropped, 0);
	assert_int_equal(rd(f, MPC), 0);
	/* The driver hands over two more descriptors: two more frames. */
	wr(f, RDT, 5);
	assert_int_equal(f->fb->in_count, 0);
	assert_int_equal(rd(f, RDH), 5);
	assert_int_equal(rxd(f, 3)[12] & 3, 3);
	assert_int_equal(rxd(f, 4)[12] & 3, 3);
	assert_int_equal(rxd(f, 5)[12], 0);
	assert_int_equal(stats(f).rx_packets, 5);
}

static void test_rx_multi_desc(void **state)
{
	struct fx *f = *state;
	uint8_t frame[600];

	rx_setup(f, 8, 256, RCTL_BAM | RCTL_SZ_256);
	build_frame(frame, MAC, sizeof(frame), 5);
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	/* 604 bytes with FCS: 256 + 256 + 92, EOP on the last only. */
	assert_int_equal(get16(rxd(f, 0) + 8), 256);
	assert_int_equal(get16(rxd(f, 1) + 8), 256);
	assert_int_equal(get16(rxd(f, 2) + 8), 92);
	assert_int_equal(rxd(f, 0)[12] & 3, 1);
	assert_int_equal(rxd(f, 1)[12] & 3, 1);
	assert_int_equal(rxd(f, 2)[12] & 3, 3);
	assert_memory_equal(ram(f, RXB), frame, 512);
	assert_memory_equal(ram(f, RXB + 512), frame + 512, 88);
	assert_int_equal(rd(f, RDH), 3);

	/* Needs 3 descriptors with 2 free: waits, not read again, not dropped. */
	fb_queue(f->fb, frame, sizeof(frame));
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(rd(f, RDH), 6);
	assert_int_equal(f->fb->in_count, 0);   /* the second waits inside the device */
	wr(f, RDT, 2);   /* 4 free now */
	assert_int_equal(rd(f, RDH), 1);
	assert_int_equal(stats(f).rx_packets, 3);
	assert_int_equal(stats(f).rx_dropped, 0);
}

static void test_rx_filters(void **state)
{
	struct fx *f = *state;
	static const uint8_t other[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t mcast[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb };
	uint8_t frame[80];
	unsigned h;

	rx_setup(f, 16, 2048, 0);
	/* Unicast for someone else: dropped as filtered. */
	build_frame(frame, other, sizeof(frame), 0);
	fb_queue(f->fb, frame, sizeof(frame));
	/* Broadcast without BAM: dropped. */
	build_frame(frame, bcast, sizeof(frame), 0);
	fb_queue(f->fb, frame, sizeof(frame));
	/* Multicast not in the table: dropped. */
	build_frame(frame, mcast, sizeof(frame), 0);
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(rd(f, RDH), 0);
	assert_int_equal(stats(f).rx_filtered, 3);
	assert_int_equal(f->fb->in_count, 0);

	/* With BAM, broadcast gets through. */
	wr(f, RCTL, rd(f, RCTL) | RCTL_BAM);
	build_frame(frame, bcast, sizeof(frame), 0);
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(rd(f, RDH), 1);
	/* Multicast once its hash bit is set (MO = 0: address bits 47:36). */
	h = (mcast[4] >> 4 | mcast[5] << 4) & 0xfff;
	wr(f, MTA + 4 * (h >> 5), 1u << (h & 31));
	build_frame(frame, mcast, sizeof(frame), 0);
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(rd(f, RDH), 2);
	/* A second exact address in RAR[3]; invalid without AV. */
	wr(f, RAL0 + 3 * 8, (uint32_t)other[0] | other[1] << 8 | other[2] << 16 | (uint32_t)other[3] << 24);
	wr(f, RAH0 + 3 * 8, (uint32_t)(other[4] | other[5] << 8));
	build_frame(frame, other, sizeof(frame), 0);
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(rd(f, RDH), 2);
	wr(f, RAH0 + 3 * 8, (uint32_t)(other[4] | other[5] << 8) | 0x80000000u);
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(rd(f, RDH), 3);
	/* Our own address cleared from RAR[0]: own frames are filtered, promiscuous takes everything. */
	wr(f, RAH0, 0);
	build_frame(frame, MAC, sizeof(frame), 0);
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(rd(f, RDH), 3);
	wr(f, RCTL, rd(f, RCTL) | RCTL_UPE);
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(rd(f, RDH), 4);
	/* VLAN filter: a tagged frame for VID 7 only once VFTA has bit 7. */
	wr(f, RCTL, rd(f, RCTL) | RCTL_VFE);
	build_frame(frame, MAC, sizeof(frame), 0);
	frame[12] = 0x81;
	frame[13] = 0x00;
	frame[14] = 0x00;
	frame[15] = 0x07;
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(rd(f, RDH), 4);
	wr(f, VFTA, 1u << 7);
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(rd(f, RDH), 5);
	assert_int_equal(stats(f).rx_packets, 5);
}

static void test_rx_sizes(void **state)
{
	struct fx *f = *state;
	static uint8_t frame[9000];

	rx_setup(f, 8, 2048, RCTL_BAM);
	/* 1514 + FCS fits; 1600 without LPE is a long frame: dropped and counted. */
	build_frame(frame, MAC, 1514, 0);
	fb_queue(f->fb, frame, 1514);
	build_frame(frame, MAC, 1600, 0);
	fb_queue(f->fb, frame, 1600);
	/* A runt shorter than an Ethernet header: dropped. */
	fb_queue(f->fb, frame, 10);
	e1000_poll(f->e);
	assert_int_equal(rd(f, RDH), 1);
	assert_int_equal(stats(f).rx_dropped, 2);
	assert_int_equal(rd(f, 0x40ac), 1);   /* ROC */
	/* With LPE a 9000-byte frame takes 5 buffers of 2048. */
	wr(f, RCTL, rd(f, RCTL) | RCTL_LPE);
	build_frame(frame, MAC, 9000, 3);
	fb_queue(f->fb, frame, 9000);
	e1000_poll(f->e);
	assert_int_equal(rd(f, RDH), 6);
	assert_int_equal(rxd(f, 5)[12] & 3, 3);
	assert_int_equal(get16(rxd(f, 5) + 8), 9004 - 4 * 2048);
	assert_memory_equal(ram(f, RXB + 2048), frame, 9000);   /* buffers are contiguous here */
	/* A frame that needs more buffers than the whole ring has: dropped for good, not a stall. */
	wr(f, RCTL, (rd(f, RCTL) & ~(3u << 16)) | RCTL_SZ_256);
	build_frame(frame, MAC, 4000, 3);
	fb_queue(f->fb, frame, 4000);
	fb_queue(f->fb, frame, 200);
	wr(f, RDT, 5);
	e1000_poll(f->e);
	assert_int_equal(rd(f, MPC), 1);
	assert_int_equal(rd(f, RDH), 7);   /* the 200-byte frame after it took one buffer */
	assert_int_equal(get16(rxd(f, 6) + 8), 204);
}

static void test_rx_vlan_strip(void **state)
{
	struct fx *f = *state;
	uint8_t frame[100], expect[96];

	rx_setup(f, 8, 2048, RCTL_BAM | RCTL_SECRC);
	wr(f, VET, 0x8100);
	wr(f, CTRL, rd(f, CTRL) | (1u << 30));
	build_frame(frame, MAC, sizeof(frame), 9);
	frame[12] = 0x81;
	frame[13] = 0x00;
	frame[14] = 0x60;
	frame[15] = 0x2a;   /* PCP 3, VID 42 */
	frame[16] = 0x08;
	frame[17] = 0x00;
	memcpy(expect, frame, 12);
	memcpy(expect + 12, frame + 16, sizeof(frame) - 16);
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(get16(rxd(f, 0) + 8), 96);
	assert_true(rxd(f, 0)[12] & 0x08);          /* VP */
	assert_int_equal(get16(rxd(f, 0) + 14), 0x602a);
	assert_memory_equal(ram(f, RXB), expect, sizeof(expect));
}

static void test_rx_rdmts(void **state)
{
	struct fx *f = *state;
	uint8_t frame[64];
	uint32_t icr;
	unsigned seen = 0;

	rd(f, ICR);
	rx_setup(f, 16, 2048, RCTL_BAM);   /* RDMTS 00: half the ring; 15 given */
	build_frame(frame, MAC, sizeof(frame), 0);
	for (int i = 0; i < 10; i++) {
		fb_queue(f->fb, frame, sizeof(frame));
		e1000_poll(f->e);
		icr = rd(f, ICR);
		assert_true(icr & ICR_RXT0);
		if (icr & ICR_RXDMT0)
			seen = (unsigned)i + 1;
	}
	/* Free descriptors: 15 -> 14 ... it reaches 8 (= 16/2) with the 7th frame. */
	assert_int_equal(seen, 7);
}

static void test_rx_hostile(void **state)
{
	struct fx *f = *state;
	uint8_t frame[100];

	build_frame(frame, MAC, sizeof(frame), 0);
	rx_setup(f, 8, 2048, RCTL_BAM);
	/* Ring base outside RAM: nothing is read from the backend. */
	wr(f, RDBAL, 0x1000);
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(f->fb->in_count, 1);
	/* RDT beyond the ring: same. */
	wr(f, RDT, 8);
	wr(f, RDBAL, (uint32_t)RXR);
	e1000_poll(f->e);
	assert_int_equal(f->fb->in_count, 1);
	wr(f, RDT, 0xffff);
	assert_int_equal(f->fb->in_count, 1);
	/* RDH beyond the ring. */
	wr(f, RDH, 100);
	wr(f, RDT, 7);
	assert_int_equal(f->fb->in_count, 1);
	/* RCTL.EN off: frames stay queued. */
	wr(f, RCTL, RCTL_BAM);
	wr(f, RDH, 0);
	e1000_poll(f->e);
	assert_int_equal(f->fb->in_count, 1);
	/* Sane: delivered. */
	wr(f, RCTL, RCTL_BAM | RCTL_EN);
	assert_int_equal(f->fb->in_count, 0);
	assert_int_equal(rd(f, RDH), 1);

	/* A buffer address outside RAM: that descriptor gets an error, the frame is dropped. */
	put64(rxd(f, 1), 0x10);
	put64(rxd(f, 2), RAM_GPA + RAM_SIZE - 100);   /* buffer runs off the end */
	fb_queue(f->fb, frame, sizeof(frame));
	fb_queue(f->fb, frame, sizeof(frame));
	fb_queue(f->fb, frame, sizeof(frame));
	e1000_poll(f->e);
	assert_int_equal(rxd(f, 1)[12] & 3, 3);
	assert_int_equal(rxd(f, 1)[13], 0x80);   /* RXE */
	assert_int_equal(get16(rxd(f, 1) + 8), 0);
	assert_int_equal(rxd(f, 2)[13], 0x80);
	assert_int_equal(rxd(f, 3)[13], 0);
	assert_int_equal(get16(rxd(f, 3) + 8), 104);
	assert_int_equal(rd(f, RDH), 4);
	assert_int_equal(stats(f).rx_dropped, 2);
}

static void test_rx_loop(void **state)
{
	struct fx *f = *state;
	struct loop *l = loop_new();
	uint8_t frame[128];

	assert_non_null(l);
	assert_int_equal(e1000_attach(f->e, l), 0);
	rx_setup(f, 8, 2048, RCTL_BAM);
	wr(f, RDT, 3);
	build_frame(frame, MAC, sizeof(frame), 4);
	for (int i = 0; i < 5; i++)
		fb_queue(f->fb, frame, sizeof(frame));
	for (int i = 0; i < 20 && rd(f, RDH) != 3; i++)
		loop_run_once(l, 50);
	assert_int_equal(rd(f, RDH), 3);
	/* Out of descriptors: the backend fd is no longer polled; the loop idles. */
	for (int i = 0; i < 5; i++)
		loop_run_once(l, 10);
	assert_int_equal(loop_run_once(l, 20), 0);
	assert_int_equal(f->fb->in_count, 2);
	/* RDT moves: the I/O thread resumes. */
	wr(f, RDT, 7);
	for (int i = 0; i < 20 && f->fb->in_count; i++)
		loop_run_once(l, 50);
	assert_int_equal(f->fb->in_count, 0);
	assert_int_equal(rd(f, RDH), 5);
	e1000_detach(f->e);
	loop_free(l);
}

/* Without a pre-opened backend the device opens the one cfg->net names; bad names are refused. */
static void test_new_backend_spec(void **state)
{
	struct e1000_config cfg = { .mac = { 0x52, 0x54, 0, 0, 0, 1 } };
	uint8_t ram[4096];
	struct guest_mem gm;
	struct e1000 *e = (struct e1000 *)&cfg;
	char err[128] = "";

	(void)state;
	gm_init_fake(&gm, RAM_GPA, ram, sizeof(ram));
	assert_int_equal(e1000_new(&e, &cfg, &gm, NULL, err, sizeof(err)), -EINVAL);
	assert_null(e);
	assert_non_null(strstr(err, "no network backend"));
	cfg.net.kind = NET_BACKEND_TAP;
	cfg.net.ifname = "a/b";
	err[0] = '\0';
	assert_int_equal(e1000_new(&e, &cfg, &gm, NULL, err, sizeof(err)), -EINVAL);
	assert_null(e);
	assert_true(strlen(err) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pci_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eeprom_eerd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eeprom_bitbang, setup, teardown),
		cmocka_unit_test_setup_teardown(test_phy_mdic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_link_slu, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctrl_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_io_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_accesses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_icr_ims, setup, teardown),
		cmocka_unit_test_setup_teardown(test_itr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msi, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_legacy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_legacy_vnet, setup_vnet, teardown),
		cmocka_unit_test_setup_teardown(test_tx_tso, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_tso, setup_vnet, teardown),
		cmocka_unit_test_setup_teardown(test_tx_csum, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_vlan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_eagain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_hostile_rings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_hostile_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_basic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_basic, setup_vnet, teardown),
		cmocka_unit_test_setup_teardown(test_rx_no_desc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_multi_desc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_vlan_strip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_rdmts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_loop, setup, teardown),
		cmocka_unit_test(test_new_backend_spec),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

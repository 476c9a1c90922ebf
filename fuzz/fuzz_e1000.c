/*
 * Fuzz the e1000 model: the input is a hostile driver. It picks register
 * accesses (any offset, any size, through BAR0 or the I/O window), config
 * writes (command register, MSI), transmit doorbells, receive polls, the
 * contents of guest RAM (rings, descriptors and buffers) and the frames a
 * backend hands the device.
 *
 * Layout: a 32-byte header, then `nops` 8-byte operations, then an image of
 * the start of a 64 KiB guest RAM at guest address 0.
 *   [0]      bit 0 backend with vnet header, 1 MSI on, 2 INTx disabled in
 *            PCI_COMMAND, 3 driver bring-up first (TX ring at 0x0, RX ring
 *            at 0x200, 32 descriptors each, both units on), 4 run on an I/O
 *            loop, 6-7 destination of the frames (ours, broadcast,
 *            multicast, from RAM)
 *   [1]      frames waiting in the backend (b % 9)
 *   [2]      nops
 *   [4..19]  their lengths, le16 each (mod 17000)
 *   [20..21] their EtherType (0x8100 makes VLAN tags)
 *   [22..31] the first 10 bytes of their vnet header (vnet backends)
 * An operation is kind, selector, le32 value, le16 extra; see fe_op().
 *
 * Besides the sanitizers the harness checks what the VMM relies on: frames
 * the backend gets have a sane size and an all-zero vnet header, the
 * device never reports more frames delivered than the backend had, and the
 * INTx line only stands while ICR & IMS has a cause (and exactly then while
 * ITR never throttled), going down when ICR is read.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bus/bus.h"
#include "devices/e1000.h"
#include "pci/pci.h"
#include "loop/loop.h"
#include "util/log.h"
#include "mem/gm_test.h"

#include "fakes.h"

#define FE_RAM     (64u << 10)
#define FE_HDR     32
#define FE_OP      8
#define FE_FRAMES  8
#define FE_BAR0    0xc0000000ull
#define FE_BAR1    0xc000u
#define FE_SLOT    1

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/*
 * The harness hands the device its own backend: these stand in for
 * net_tap.c and net_slirp.c (privileges, libslirp) so that e1000.c and
 * backends/net.c link alone.
 */
int net_tap_open(struct net_backend **out, const char *ifname, char *err, size_t errlen)
{
	*out = NULL;
	return -ENODEV;
}

int net_slirp_open(struct net_backend **out, const struct net_hostfwd *fwd, unsigned nr_fwd,
		   char *err, size_t errlen)
{
	*out = NULL;
	return -ENODEV;
}

static const uint8_t fe_mac[6] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc };

struct fe_line {
	bool level;
};

static void fe_line_set(struct irq *irq, bool level)
{
	((struct fe_line *)irq->opaque)->level = level;
}

static const struct irq_ops fe_line_ops = { .set_level = fe_line_set };

static const uint16_t fe_regs[] = {
	0x0000, 0x0008, 0x0010, 0x0014, 0x0018, 0x0020, 0x0038, 0x00c0, 0x00c4, 0x00c8, 0x00d0, 0x00d8,
	0x0100, 0x0400, 0x0410, 0x1000, 0x2800, 0x2804, 0x2808, 0x2810, 0x2818, 0x2820, 0x282c, 0x3800,
	0x3804, 0x3808, 0x3810, 0x3818, 0x3820, 0x382c, 0x4010, 0x4074, 0x4088, 0x408c, 0x40c4, 0x40d4,
	0x40f8, 0x40fc, 0x5000, 0x5200, 0x5204, 0x53fc, 0x5400, 0x5404, 0x5408, 0x540c, 0x5478, 0x547c,
	0x5600, 0x57fc, 0x5800, 0x5808, 0x5820,
};

struct fe {
	struct bus pio, mmio;
	struct pci_host host;
	struct guest_mem gm;
	struct msi_host msi;
	struct fe_line line;
	struct irq intx;
	struct e1000 *e;
	struct fake_be *be;          /* the shared fakes (tests/unit/fakes.c) */
	struct fake_msi fm;
	unsigned nframes;            /* queued for the device */
	struct loop *loop;
	unsigned msi_cap;
	bool itr_seen;
};

static uint8_t *ram;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);   /* guest-triggered warnings come by the thousand */
	ram = malloc(FE_RAM);
	return ram ? 0 : -1;
}

static uint32_t fe_rd(struct fe *x, uint32_t off)
{
	uint64_t v = 0;

	bus_read(&x->mmio, FE_BAR0 + off, 4, &v);
	return (uint32_t)v;
}

static void fe_wr(struct fe *x, uint32_t off, uint32_t v)
{
	bus_write(&x->mmio, FE_BAR0 + off, 4, v);
}

/* The line against ICR & IMS; then read ICR, which must take the line down. */
static void fe_check_irq(struct fe *x)
{
	uint16_t cmd = (uint16_t)pci_host_cfg_read(&x->host, 0, FE_SLOT, 0, PCI_COMMAND, 2);
	bool msi = x->msi_cap && (pci_host_cfg_read(&x->host, 0, FE_SLOT, 0, x->msi_cap + 2, 2) & 1);
	bool intx = !(cmd & PCI_CMD_INTX_OFF) && !msi;
	bool level = x->line.level;
	uint32_t ims, icr;

	if (level && !intx)
		abort();
	if (!(cmd & PCI_CMD_MEM))
		return;   /* the registers are not decoded now */
	ims = fe_rd(x, 0x00d0);
	x->itr_seen |= fe_rd(x, 0x00c4) != 0;
	icr = fe_rd(x, 0x00c0);
	if (level && (!intx || !(icr & ims)))
		abort();
	if (intx && !x->itr_seen && level != ((icr & ims) != 0))
		abort();
	if (x->line.level)
		abort();
}

static void fe_poll(struct fe *x)
{
	if (x->loop) {
		for (int i = 0; i < 4; i++)
			loop_run_once(x->loop, 0);
	} else {
		e1000_poll(x->e);
	}
}

static void fe_op(struct fe *x, const uint8_t *op)
{
	static const unsigned sizes[4] = { 1, 2, 4, 8 };
	uint8_t sel = op[1];
	uint32_t val = (uint32_t)op[2] | (uint32_t)op[3] << 8 | (uint32_t)op[4] << 16 | (uint32_t)op[5] << 24;
	uint16_t extra = (uint16_t)(op[6] | op[7] << 8);
	uint64_t v;

	switch (op[0] % 8) {
	case 0:
		fe_wr(x, fe_regs[sel % (sizeof(fe_regs) / sizeof(fe_regs[0]))], val);
		break;
	case 1:
		fe_rd(x, fe_regs[sel % (sizeof(fe_regs) / sizeof(fe_regs[0]))]);
		break;
	case 2: {
		uint64_t off = (uint64_t)extra * 2 + (sel & 1);

		if (sel & 0x80)
			bus_write(&x->mmio, FE_BAR0 + off, sizes[(sel >> 1) & 3], val);
		else
			bus_read(&x->mmio, FE_BAR0 + off, sizes[(sel >> 1) & 3], &v);
		break;
	}
	case 3:
		if (sel & 1)
			bus_write(&x->pio, FE_BAR1 + (sel & 0x3c), sizes[(sel >> 6) & 3], val);
		else
			bus_read(&x->pio, FE_BAR1 + (sel & 0x3c), sizes[(sel >> 6) & 3], &v);
		break;
	case 4: {
		unsigned offs[5] = { PCI_COMMAND, x->msi_cap + 2, x->msi_cap + 4, x->msi_cap + 8, x->msi_cap + 12 };

		pci_host_cfg_write(&x->host, 0, FE_SLOT, 0, offs[sel % 5], (sel / 5) % 2 ? 4 : 2, val);
		break;
	}
	case 5:
		fe_poll(x);
		break;
	case 6:
		fe_check_irq(x);
		break;
	default:
		x->be->eagain = sel & 3;
		fe_wr(x, 0x3818, val & 0x3f);   /* a doorbell */
		break;
	}
}

static void fe_bring_up(struct fe *x)
{
	fe_wr(x, 0x0000, fe_rd(x, 0x0000) | (1u << 6));   /* SLU */
	fe_wr(x, 0x3808, 32 * 16);
	fe_wr(x, 0x3804, 0);
	fe_wr(x, 0x3800, 0);
	fe_wr(x, 0x3818, 0);
	fe_wr(x, 0x3810, 0);
	fe_wr(x, 0x0400, (1u << 1) | (1u << 3));
	fe_wr(x, 0x2808, 32 * 16);
	fe_wr(x, 0x2804, 0);
	fe_wr(x, 0x2800, 0x200);
	fe_wr(x, 0x2810, 0);
	fe_wr(x, 0x0100, (1u << 1) | (1u << 15) | (1u << 4));   /* EN, BAM, MPE */
	fe_wr(x, 0x2818, 31);
	fe_wr(x, 0x00d0, 0x9f);
}

static void fe_frames(struct fe *x, const uint8_t *h, const uint8_t *img, size_t img_len)
{
	size_t hdr = x->be->be.vnet_hdr ? NET_VNET_HDR_LEN : 0;
	unsigned dst = h[0] >> 6;
	static uint8_t frame[17000 + NET_VNET_HDR_LEN];

	x->nframes = h[1] % (FE_FRAMES + 1);
	for (unsigned i = 0; i < x->nframes; i++) {
		uint8_t *p = frame;
		size_t len = (size_t)(h[4 + 2 * i] | h[5 + 2 * i] << 8) % 17000;

		memset(p, 0, hdr);
		if (hdr)
			memcpy(p, h + 22, 10);
		p += hdr;
		for (size_t j = 0; j < len; j++)
			p[j] = (uint8_t)(j * 31 + i);
		if (len >= 14) {
			if (dst == 0)
				memcpy(p, fe_mac, 6);
			else if (dst == 1)
				memset(p, 0xff, 6);
			else if (dst == 2)
				memcpy(p, "\x01\x00\x5e\x00\x00\x01", 6);
			else if (img_len >= 6)
				memcpy(p, img + (i * 64) % (img_len - 5), 6);
			p[12] = h[20];
			p[13] = h[21];
		}
		fb_push(x->be, frame, hdr + len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct e1000_config cfg = { .backend = NULL };
	struct e1000_stats st;
	struct fe x;
	const uint8_t *ops, *img;
	size_t nops, img_len;
	char err[128];

	if (size < FE_HDR)
		return 0;
	nops = data[2];
	if (size < FE_HDR + nops * FE_OP)
		nops = (size - FE_HDR) / FE_OP;
	ops = data + FE_HDR;
	img = ops + nops * FE_OP;
	img_len = size - FE_HDR - nops * FE_OP;

	memset(&x, 0, sizeof(x));
	memset(ram, 0, FE_RAM);
	memcpy(ram, img, img_len < FE_RAM ? img_len : FE_RAM);
	gm_init_fake(&x.gm, 0, ram, FE_RAM);
	if (bus_init(&x.pio, "pio") || bus_init(&x.mmio, "mmio") || pci_host_init(&x.host, &x.pio, &x.mmio, NULL))
		abort();   /* the harness's own set-up failed, not the input */
	x.be = fb_new(data[0] & 1);
	x.be->record = false;     /* count and touch every byte; no copies */
	x.be->strict = true;      /* sane frame sizes, 1..16 iovecs */
	x.be->max_iov = 16;
	x.be->zero_hdr = true;    /* the device fills no vnet header fields */
	x.be->oversize_ok = true; /* a frame larger than the receive buffer is -EMSGSIZE */
	fake_msi_init(&x.fm, 33, &x.msi);
	memcpy(cfg.mac, fe_mac, 6);
	cfg.backend = &x.be->be;
	if (e1000_new(&x.e, &cfg, &x.gm, &x.msi, err, sizeof(err)) < 0)
		abort();
	if (pci_host_add(&x.host, e1000_pci(x.e), 1) != FE_SLOT)
		abort();
	for (unsigned p = pci_host_cfg_read(&x.host, 0, FE_SLOT, 0, PCI_CAP_PTR, 1); p;
	     p = pci_host_cfg_read(&x.host, 0, FE_SLOT, 0, p + 1, 1))
		if (pci_host_cfg_read(&x.host, 0, FE_SLOT, 0, p, 1) == 0x05)
			x.msi_cap = p;
	if (!x.msi_cap)
		abort();
	x.intx = (struct irq){ .ops = &fe_line_ops, .opaque = &x.line };
	e1000_set_irq(x.e, &x.intx);
	pci_host_cfg_write(&x.host, 0, FE_SLOT, 0, PCI_BAR0, 4, (uint32_t)FE_BAR0);
	pci_host_cfg_write(&x.host, 0, FE_SLOT, 0, PCI_BAR0 + 4, 4, FE_BAR1);
	pci_host_cfg_write(&x.host, 0, FE_SLOT, 0, PCI_COMMAND, 2,
			   PCI_CMD_MEM | PCI_CMD_IO | PCI_CMD_MASTER | ((data[0] & 4) ? PCI_CMD_INTX_OFF : 0));
	if (data[0] & 2) {
		pci_host_cfg_write(&x.host, 0, FE_SLOT, 0, x.msi_cap + 4, 4, 0xfee00000);
		pci_host_cfg_write(&x.host, 0, FE_SLOT, 0, x.msi_cap + 2, 2, 1);
	}
	if (data[0] & 16) {
		x.loop = loop_new();
		if (!x.loop || e1000_attach(x.e, x.loop) < 0)
			abort();
	}
	fe_frames(&x, data, img, img_len);
	if (data[0] & 8)
		fe_bring_up(&x);

	for (size_t i = 0; i < nops; i++) {
		fe_op(&x, ops + i * FE_OP);
		/* Did ITR throttle? Unobservable while memory decoding is off: assume so. */
		if (pci_host_cfg_read(&x.host, 0, FE_SLOT, 0, PCI_COMMAND, 2) & PCI_CMD_MEM)
			x.itr_seen |= fe_rd(&x, 0x00c4) != 0;
		else
			x.itr_seen = true;
	}
	fe_poll(&x);
	fe_check_irq(&x);

	e1000_get_stats(x.e, &st);
	if (st.rx_packets > x.nframes - x.be->in_count)
		abort();
	if (st.tx_packets != x.be->sent)
		abort();
	if (x.be->offloads)
		abort();   /* the 82540 asks for no receive offload */
	e1000_free(x.e);   /* detaches from the loop and frees the backend */
	loop_free(x.loop);
	pci_host_exit(&x.host);
	bus_exit(&x.pio);
	bus_exit(&x.mmio);
	return 0;
}

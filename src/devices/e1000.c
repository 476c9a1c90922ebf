/*
 * Intel 82540EM (8254x family) gigabit Ethernet controller.
 *
 * The register model follows Intel's "PCI/PCI-X Family of Gigabit Ethernet
 * Controllers Software Developer's Manual" and what Linux's e1000 driver does
 * with an 82540: it probes the 64-word Microwire EEPROM by bit-banging EECD
 * (checksum 0xBABA, MAC in words 0-2), resets the MAC through the I/O BAR,
 * finds an M88E1011 PHY (id 0x01410C2x) at MDIO address 1, sets CTRL.SLU and
 * reads link/speed from the PHY and STATUS, then runs one transmit and one
 * receive ring of legacy receive descriptors, subtracting the 4-byte FCS the
 * hardware leaves at the end of each received frame.
 *
 * Transmit: a TDT write only records the tail and (with an I/O loop) wakes
 * the device's I/O thread, which walks TDH..TDT: context descriptors load the
 * offload context; legacy and data descriptors are gathered into one frame
 * (at most 64 KiB, copied out of guest memory once) until EOP; the frame gets
 * its checksums inserted (IXSM/TXSM, or a legacy IC) or is cut into MSS-sized
 * segments (TSE) with IP length/id/checksum and TCP sequence/flags/checksum
 * fixed per segment, and goes to the backend as plain frames (a zeroed
 * virtio-net header in front for backends that carry one). Doing it on the
 * I/O thread keeps every backend call on that thread (slirp is not
 * thread-safe) while the guest still pays one exit per TDT write. A frame the
 * backend refuses with -EAGAIN stays in the device buffer, the ring pauses,
 * and the backend fd's EPOLLOUT resumes it.
 *
 * Receive: the backend fd is polled only while RCTL.EN is set and the guest
 * has given descriptors; a frame is read, filtered (exact RAL/RAH, MTA hash,
 * broadcast, promiscuous, VLAN filter), its VLAN tag stripped with CTRL.VME,
 * padded to 60 bytes, given an FCS (unless RCTL.SECRC) and copied into as
 * many buffers as it needs. With too few descriptors it waits in the device
 * and nothing more is read: the backend keeps the traffic queued. Frames go
 * up with IXSM set, so the driver verifies checksums itself.
 *
 * Interrupts: ICR & IMS != 0 drives a level (INTx, or an MSI message on each
 * rising edge); reading ICR clears it. ITR sets a minimum interval between
 * rising edges, enforced with a timer on the I/O loop (or lazily on the
 * next register access without one). RDTR/RADV/TIDV/TADV are stored but
 * interrupts are not delayed by them.
 *
 * The guest is hostile: ring bases/lengths, head/tail, descriptor addresses
 * and lengths, offload offsets and register access sizes are all checked;
 * work per wake-up is bounded; nonsense is dropped, counted and logged
 * (rate-limited) and the device carries on.
 *
 * Locking: e->lock covers all device state. It is taken by vCPU threads (BAR
 * accesses), by the PCI host's config hook (with the host lock held: order
 * host -> e1000) and by the I/O thread. Under it the device only calls
 * irq_set_level(), MSI routes/eventfds, guest memory, the backend (I/O
 * thread or no loop), epoll on its own fds and the loop's timer and post
 * calls (they take only the loop's own lock, never call back under it):
 * never back into the bus or the PCI host.
 *
 * Files: this one (register model, EEPROM, PHY, interrupts, receive, I/O
 * thread, life cycle), e1000_tx.c (transmit, TSO, checksum offload),
 * e1000_snap.c (pause, save, load), e1000_regs.h (register numbers and
 * bits) and e1000_priv.h (the state they share).
 */
#include "devices/e1000_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/bytes.h"
#include "util/crc32.h"

/* IEEE 802.3 FCS as it follows the frame on the wire (little-endian CRC-32). */
static uint32_t e1000_fcs(const struct e1000 *e, const uint8_t *p, size_t len)
{
	(void)e;
	return crc32_update(0, p, len);
}

/* ---- work for the I/O thread ---- */

/* Called with e->loop set: it only goes back to NULL with the loop stopped. */
void e1000_schedule(struct e1000 *e, uint32_t work)
{
	__atomic_or_fetch(&e->work, work, __ATOMIC_ACQ_REL);
	loop_work_post(e->loop, &e->work_post);
}

static void e1000_do_work(struct e1000 *e, uint32_t work);

static void e1000_lock(struct e1000 *e)
{
	pthread_mutex_lock(&e->lock);
}

/*
 * Drop the lock. Work a register write asked for runs here: on the I/O
 * thread when there is one, otherwise inline (tests, fuzzing).
 */
static void e1000_unlock(struct e1000 *e)
{
	uint32_t work = e->kick;
	bool async = e->loop != NULL;

	e->kick = 0;
	if (work && !async)
		e1000_do_work(e, work);
	pthread_mutex_unlock(&e->lock);
	if (work && async)
		e1000_schedule(e, work | WORK_EVENTS);
}

/* ---- interrupts ---- */

static void e1000_intx_sync(struct e1000 *e)
{
	bool level = e->line && !e->msi_enabled && !e->intx_off;

	if (level == e->intx_level)
		return;
	e->intx_level = level;
	irq_set_level(e->intx, level);
}

static void e1000_msi_fire(struct e1000 *e)
{
	uint64_t one = 1;

	if (write(e->msi_fd, &one, sizeof(one)) < 0)
		log_guest(&e->rl, E1000_TAG, "MSI: eventfd write failed");
}

void e1000_timer_arm(struct e1000 *e, uint64_t at_ns)
{
	loop_timer_arm_at(&e->itr_timer, at_ns, 0);
}

/* Re-evaluate ICR & IMS. Caller holds e->lock. */
void e1000_update_irq(struct e1000 *e)
{
	uint64_t interval = (uint64_t)(e->r.itr & 0xffff) * 256, now;

	if (!(e->r.icr & e->r.ims)) {
		e->line = false;
		e->irq_deferred = false;
		e1000_intx_sync(e);
		return;
	}
	if (e->line)
		return;
	now = loop_now_ns();
	if (interval && e->irq_ever && now - e->last_irq_ns < interval) {
		if (!e->irq_deferred) {
			e->irq_deferred = true;
			e->deferred_until_ns = e->last_irq_ns + interval;
			e->stats.irqs_throttled++;
			if (e->loop)
				e1000_timer_arm(e, e->deferred_until_ns);
		}
		return;
	}
	e->irq_deferred = false;
	e->line = true;
	e->irq_ever = true;
	e->last_irq_ns = now;
	e->stats.irqs++;
	if (e->msi_enabled)
		e1000_msi_fire(e);
	e1000_intx_sync(e);
}

static void e1000_raise(struct e1000 *e, uint32_t causes)
{
	e->r.icr |= causes;
	e1000_update_irq(e);
}

/* Without a timer on a loop, an ITR-deferred interrupt goes out at the next access. */
void e1000_check_deferred(struct e1000 *e)
{
	if (e->irq_deferred && loop_now_ns() >= e->deferred_until_ns) {
		e->irq_deferred = false;
		e1000_update_irq(e);
	}
}

/* ---- EEPROM ---- */

static void e1000_eeprom_init(struct e1000 *e)
{
	uint16_t *w = e->eeprom;
	uint16_t sum = 0;

	memset(w, 0, sizeof(e->eeprom));
	for (unsigned i = 0; i < 3; i++)
		w[i] = (uint16_t)(e->mac[2 * i] | e->mac[2 * i + 1] << 8);
	w[0x04] = 0xffff;               /* ID LED settings: "use the driver's default" */
	w[0x05] = 0x0200;               /* image version */
	/* ICW1: load vendor/device and subsystem ids, full duplex, valid signature. */
	w[EE_ICW1] = 0x4000 | 0x0400 | 0x0002 | 0x0001;
	w[EE_SUBSYS_ID] = E1000_SUBSYS_ID;
	w[EE_SUBSYS_VEN] = E1000_VENDOR_ID;
	w[EE_DEVICE_ID] = E1000_DEVICE_ID;
	w[EE_VENDOR_ID] = E1000_VENDOR_ID;
	w[EE_ICW2] = 0x0000;            /* no PAUSE advertised: flow control off */
	w[EE_ICW3_PORTA] = 0x0000;      /* no APM wake-up */
	for (unsigned i = 0; i < EE_CHECKSUM; i++)
		sum = (uint16_t)(sum + w[i]);
	w[EE_CHECKSUM] = (uint16_t)(EE_SUM - sum);
}

static void e1000_ee_reset(struct e1000 *e)
{
	e->ee_mode = EE_IDLE;
	e->ee_shift = 0;
	e->ee_nbits = 0;
	e->ee_do = true;   /* DO idles high: "ready" */
}

/* One rising SK edge with CS high. */
static void e1000_ee_clock(struct e1000 *e, bool di)
{
	switch (e->ee_mode) {
	case EE_CMD:
		if (e->ee_nbits == 0 && !di)
			return;   /* leading zeros before the start bit */
		e->ee_shift = e->ee_shift << 1 | di;
		if (++e->ee_nbits < 3 + EE_ADDR_BITS)
			return;
		if (((e->ee_shift >> EE_ADDR_BITS) & 7) == EE_OP_READ) {
			e->ee_addr = e->ee_shift & (EE_WORDS - 1);
			e->ee_data = e->eeprom[e->ee_addr];
			e->ee_bitpos = 16;
			e->ee_mode = EE_READ;
			e->ee_do = false;   /* the dummy zero before the data */
		} else {
			e->ee_mode = EE_IGNORE;   /* the EEPROM is read-only */
		}
		return;
	case EE_READ:
		if (e->ee_bitpos == 0) {
			/* Sequential read: the next word follows. */
			e->ee_addr = (e->ee_addr + 1) & (EE_WORDS - 1);
			e->ee_data = e->eeprom[e->ee_addr];
			e->ee_bitpos = 16;
		}
		e->ee_bitpos--;
		e->ee_do = (e->ee_data >> e->ee_bitpos) & 1;
		return;
	default:
		return;
	}
}

static void e1000_eecd_write(struct e1000 *e, uint32_t v)
{
	uint32_t old = e->r.eecd;

	e->r.eecd = v & EECD_WMASK;
	if (!(v & EECD_REQ) || !(v & EECD_CS)) {
		/* Not granted, or chip select low: the part is deselected. */
		e1000_ee_reset(e);
		return;
	}
	if (!(old & EECD_CS) || !(old & EECD_REQ)) {
		e1000_ee_reset(e);
		e->ee_mode = EE_CMD;
	}
	if ((v & EECD_SK) && !(old & EECD_SK))
		e1000_ee_clock(e, v & EECD_DI);
}

static uint32_t e1000_eecd_read(const struct e1000 *e)
{
	uint32_t v = e->r.eecd | EECD_PRES;

	if (v & EECD_REQ)
		v |= EECD_GNT;
	if (e->ee_do)
		v |= EECD_DO;
	return v;
}

static void e1000_eerd_write(struct e1000 *e, uint32_t v)
{
	unsigned addr = (v >> EERD_ADDR_SHIFT) & 0xff;
	uint16_t data = 0;

	if (!(v & EERD_START)) {
		e->r.eerd = v & (0xffu << EERD_ADDR_SHIFT);
		return;
	}
	if (addr < EE_WORDS)
		data = e->eeprom[addr];
	else
		log_guest(&e->rl, E1000_TAG, "EERD: word %u is beyond the %u-word EEPROM", addr, EE_WORDS);
	e->r.eerd = (uint32_t)data << EERD_DATA_SHIFT | addr << EERD_ADDR_SHIFT | EERD_DONE;
}

/* ---- PHY ---- */

static void e1000_phy_reset(struct e1000 *e)
{
	static const uint16_t init[PHY_NREGS] = {
		[PHY_BMCR] = 0x1140,    /* autoneg on, full duplex, 1000 Mb/s */
		[PHY_BMSR] = 0x796d,    /* link up, autoneg complete, 10/100/1000 capable */
		[PHY_ID1] = 0x0141,
		[PHY_ID2] = 0x0c20,     /* M88E1011, revision 0 */
		[PHY_ANAR] = 0x0de1,
		[PHY_ANLPAR] = 0x41e1,  /* partner: 10/100 half/full, acknowledged */
		[PHY_ANER] = 0x0001,
		[PHY_GBCR] = 0x0300,
		[PHY_GBSR] = 0x3c00,    /* local/remote receiver ok, partner 1000 half/full */
		[PHY_EXTSR] = 0x3000,
		[PHY_PSCR] = 0x0068,
		[PHY_PSSR] = 0xac00,    /* 1000 Mb/s, full duplex, resolved, link up */
		[PHY_EPSCR] = 0x0c60,
	};

	memcpy(e->phy, init, sizeof(e->phy));
}

static bool e1000_phy_writable(unsigned reg)
{
	switch (reg) {
	case PHY_BMCR: case PHY_ANAR: case PHY_GBCR: case PHY_PSCR: case PHY_IER: case PHY_EPSCR:
	case 0x16: case 0x18: case 0x19: case 0x1a: case 0x1d: case 0x1e:
		return true;
	default:
		return false;
	}
}

/*
 * A software reset (BMCR bit 15) only applies the configuration written
 * before it, as on the M88 (the driver writes PSCR/EPSCR, then resets);
 * CTRL.PHY_RST is the hardware reset that restores the defaults.
 */
static void e1000_phy_write(struct e1000 *e, unsigned reg, uint16_t v)
{
	if (!e1000_phy_writable(reg))
		return;
	if (reg == PHY_BMCR)
		v &= (uint16_t)~(BMCR_RESET | BMCR_RESTART_AN);   /* both complete at once */
	e->phy[reg] = v;
}

static void e1000_mdic_write(struct e1000 *e, uint32_t v)
{
	unsigned phy = (v >> MDIC_PHY_SHIFT) & 0x1f, reg = (v >> MDIC_REG_SHIFT) & 0x1f;
	uint32_t op = v & (3u << 26);
	uint32_t res = v & ~(MDIC_READY | MDIC_ERROR);

	if (phy != PHY_ADDR || (op != MDIC_OP_READ && op != MDIC_OP_WRITE)) {
		res |= MDIC_ERROR;
	} else if (op == MDIC_OP_READ) {
		uint16_t data = e->phy[reg];

		if (reg == PHY_ISR)
			e->phy[reg] = 0;
		res = (res & ~MDIC_DATA_MASK) | data;
	} else {
		e1000_phy_write(e, reg, (uint16_t)v);
	}
	e->r.mdic = res | MDIC_READY;
	if (v & MDIC_INT_EN)
		e1000_raise(e, ICR_MDAC);
}

/* ---- reset and link ---- */

static bool e1000_link_up(const struct e1000 *e)
{
	return e->r.ctrl & CTRL_SLU;
}

static uint32_t e1000_status(const struct e1000 *e)
{
	uint32_t v = STATUS_FD | STATUS_SPEED_1000 | STATUS_ASDV_1000;

	if (e1000_link_up(e))
		v |= STATUS_LU;
	return v;
}

static void e1000_ra_default(struct e1000 *e)
{
	e->r.ra[0] = ld32le(e->mac);
	e->r.ra[1] = ld16le(e->mac + 4) | RAH_AV;
}

static void e1000_tx_frame_reset(struct e1000 *e)
{
	e->tx_len = 0;
	e->tx_started = false;
	e->tx_bad = false;
	e->tx_pending = false;
	e->tx_next_seg = 0;
}

/* CTRL.RST: every MAC register back to its power-on value; the PHY keeps its state. */
static void e1000_mac_reset(struct e1000 *e)
{
	if (e->rx_pending)
		e->stats.rx_dropped++;
	memset(&e->r, 0, sizeof(e->r));
	e->r.ctrl = CTRL_FD | CTRL_ASDE | CTRL_SPEED_1000;
	e->r.eecd = EECD_FWE_DIS;
	e->r.pba = 0x30;           /* 48 KiB receive, 16 KiB transmit */
	e->r.vet = 0x8100;
	e->r.ledctl = 0x07068302;
	e1000_ra_default(e);
	e1000_ee_reset(e);
	memset(&e->ctx, 0, sizeof(e->ctx));
	e1000_tx_frame_reset(e);
	e->tx_more = false;
	e->rx_pending = false;
	e->rx_blocked = false;
	e->irq_deferred = false;
	e1000_update_irq(e);
}

/* ---- rings ---- */

/* Where a ring is, if it is usable now. Logs (rate-limited) when it is not. */
bool e1000_ring(struct e1000 *e, const char *name, uint32_t bal, uint32_t bah, uint32_t len,
		       uint32_t head, uint32_t tail, uint64_t *base, uint32_t *count)
{
	*base = (uint64_t)bah << 32 | (bal & ~0xfu);
	*count = len / 16;
	if (*count == 0)
		return false;   /* not set up yet */
	if (!gm_is_ram(e->gm, *base, len)) {
		log_guest(&e->rl, E1000_TAG, "%s ring at %#llx (%u bytes) is not in guest RAM", name,
			  (unsigned long long)*base, len);
		return false;
	}
	if (head >= *count || tail >= *count) {
		log_guest(&e->rl, E1000_TAG, "%s head %u or tail %u beyond the ring's %u descriptors", name,
			  head, tail, *count);
		return false;
	}
	return true;
}

void e1000_size_bin(struct e1000 *e, unsigned first, size_t wire_len)
{
	unsigned bin;

	if (wire_len <= 64)
		bin = 0;
	else if (wire_len <= 127)
		bin = 1;
	else if (wire_len <= 255)
		bin = 2;
	else if (wire_len <= 511)
		bin = 3;
	else if (wire_len <= 1023)
		bin = 4;
	else if (wire_len <= 1522)
		bin = 5;
	else
		return;
	e->r.stats[first + bin]++;
}

/* ---- receive ---- */

static unsigned e1000_rx_bufsize(uint32_t rctl)
{
	static const unsigned std[4] = { 2048, 1024, 512, 256 };
	static const unsigned ext[4] = { 2048, 16384, 8192, 4096 };   /* BSEX with 00 is reserved */
	unsigned sz = (rctl >> RCTL_BSIZE_SHIFT) & 3;

	return (rctl & RCTL_BSEX) ? ext[sz] : std[sz];
}

static bool e1000_mta_match(const struct e1000 *e, const uint8_t *dst)
{
	unsigned mo = (e->r.rctl >> RCTL_MO_SHIFT) & 3;
	unsigned h;

	switch (mo) {
	case 0: h = (unsigned)(dst[4] >> 4 | dst[5] << 4); break;   /* address bits 47:36 */
	case 1: h = (unsigned)(dst[4] >> 3 | dst[5] << 5); break;   /* 46:35 */
	case 2: h = (unsigned)(dst[4] >> 2 | dst[5] << 6); break;   /* 45:34 */
	default: h = (unsigned)(dst[4] | dst[5] << 8); break;       /* 43:32 */
	}
	h &= 0xfff;
	return e->r.mta[h >> 5] & (1u << (h & 31));
}

/* Is this frame for us? (address filters, then the VLAN filter) */
static bool e1000_rx_accept(const struct e1000 *e, const uint8_t *f, size_t len)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	uint32_t rctl = e->r.rctl;
	bool ok = false;

	if ((rctl & RCTL_VFE) && len >= 18 && ld16be(f + 12) == (uint16_t)e->r.vet) {
		unsigned vid = ld16be(f + 14) & 0xfff;

		if (!(e->r.vfta[vid >> 5] & (1u << (vid & 31))))
			return false;
	}
	if (!memcmp(f, bcast, 6))
		return (rctl & (RCTL_BAM | RCTL_MPE)) != 0;
	if (f[0] & 1) {
		if (rctl & RCTL_MPE)
			return true;
	} else if (rctl & RCTL_UPE) {
		return true;
	}
	for (unsigned i = 0; i < 16 && !ok; i++) {
		uint32_t lo = e->r.ra[2 * i], hi = e->r.ra[2 * i + 1];

		if (!(hi & RAH_AV) || (hi & RAH_AS_MASK))
			continue;   /* invalid, or a source-address filter */
		ok = ld32le(f) == lo && ld16le(f + 4) == (uint16_t)hi;
	}
	if (!ok && (f[0] & 1))
		ok = e1000_mta_match(e, f);
	return ok;
}

static bool e1000_rx_can_read(const struct e1000 *e)
{
	return (e->r.rctl & RCTL_EN) && e->bus_master && !e->rx_dead;
}

/* Complete a partial checksum the backend left (VIRTIO_NET_HDR_F_NEEDS_CSUM). */
static bool e1000_rx_fix_csum(uint8_t *f, size_t len, const uint8_t *vh)
{
	unsigned start = ld16le(vh + 6), off = ld16le(vh + 8);

	if ((size_t)start + off + 2 > len)
		return false;
	return e1000_csum_insert(f, len, start, 0, start + off, true);
}

/*
 * Read the next frame from the backend into rx_buf and make it what the
 * guest will see. 1: one is pending, 2: one was read and discarded,
 * 0: none waiting, -1: the backend failed.
 */
static int e1000_rx_read(struct e1000 *e)
{
	size_t hdr = e->be->vnet_hdr ? NET_VNET_HDR_LEN : 0, len, max;
	uint8_t *f;
	ssize_t rc;

	rc = net_backend_recv(e->be, e->rx_buf, E1000_RX_BUF_LEN - 64);
	if (rc == -EAGAIN || rc == -EINTR)
		return 0;
	if (rc < 0) {
		e->stats.rx_dropped++;
		if (rc == -EMSGSIZE || rc == -ENOBUFS)
			return 2;
		log_err(E1000_TAG, "%s backend: receive failed: %s; no longer receiving", e->be->kind,
			strerror((int)-rc));
		e->rx_dead = true;
		return -1;
	}
	if ((size_t)rc < hdr + ETH_HLEN) {
		e->stats.rx_dropped++;
		return 2;
	}
	f = e->rx_buf + hdr;
	len = (size_t)rc - hdr;
	e->r.stats[ST_TPR]++;
	e->r.stats[ST_TOR] += len + 4;
	if (hdr) {
		/* No offloads were enabled: a segmented frame cannot be delivered. */
		if (e->rx_buf[1] != 0 || ((e->rx_buf[0] & 1) && !e1000_rx_fix_csum(f, len, e->rx_buf))) {
			e->stats.rx_dropped++;
			log_guest(&e->rl, E1000_TAG, "%s backend: dropping a frame with offloads", e->be->kind);
			return 2;
		}
	}
	if (!e1000_rx_accept(e, f, len)) {
		e->stats.rx_filtered++;
		return 2;
	}
	max = (e->r.rctl & RCTL_LPE) ? E1000_RX_MAX_LPE : E1000_RX_MAX_STD;
	if (len + 4 > max) {
		e->r.stats[ST_ROC]++;
		e->stats.rx_dropped++;
		return 2;
	}
	e->rx_wire_len = (len < E1000_MIN_FRAME ? E1000_MIN_FRAME : len) + 4;
	if (!memcmp(f, "\xff\xff\xff\xff\xff\xff", 6))
		e->r.stats[ST_BPRC]++;
	else if (f[0] & 1)
		e->r.stats[ST_MPRC]++;
	e->rx_vlan = false;
	if ((e->r.ctrl & CTRL_VME) && len >= 18 && ld16be(f + 12) == (uint16_t)e->r.vet) {
		e->rx_vlan = true;
		e->rx_tci = ld16be(f + 14);
		memmove(f + 4, f, 12);
		f += 4;
		len -= 4;
	}
	if (len < E1000_MIN_FRAME) {
		memset(f + len, 0, E1000_MIN_FRAME - len);
		len = E1000_MIN_FRAME;
	}
	if (!(e->r.rctl & RCTL_SECRC)) {
		uint32_t fcs = e1000_fcs(e, f, len);

		for (unsigned i = 0; i < 4; i++)
			f[len + i] = (uint8_t)(fcs >> (8 * i));
		len += 4;
	}
	e->rx_off = (size_t)(f - e->rx_buf);
	e->rx_len = len;
	e->rx_pending = true;
	return 1;
}

/* A descriptor at RDH whose buffer cannot be written: error it, drop the frame. */
static void e1000_rx_bad_buffer(struct e1000 *e, uint64_t base, uint32_t count, uint64_t buf)
{
	uint8_t wb[8] = { 0 };

	wb[4] = RXD_STA_DD | RXD_STA_EOP;
	wb[5] = RXD_ERR_RXE;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	/* Cannot fail: the descriptor is inside the ring e1000_ring() found in guest RAM. */
	KESTREL_IGNORE(gm_write(e->gm, base + (uint64_t)e->r.rdh * 16 + 8, wb, sizeof(wb)));
	e->r.rdh = (e->r.rdh + 1) % count;
	e->rx_pending = false;
	e->stats.rx_dropped++;
	log_guest(&e->rl, E1000_TAG, "receive buffer at %#llx is outside guest RAM", (unsigned long long)buf);
	e1000_raise(e, ICR_RXT0);
}

/*
 * Copy the pending frame into descriptors from RDH. 1: delivered (or
 * dropped for good), 0: not enough descriptors yet, -1: no usable ring.
 */
static int e1000_rx_deliver(struct e1000 *e)
{
	unsigned bufsize = e1000_rx_bufsize(e->r.rctl);
	uint64_t base, bufs[E1000_RX_MAX_DESC];
	uint32_t count, avail, need, thr;
	size_t left = e->rx_len;
	const uint8_t *p = e->rx_buf + e->rx_off;

	if (!e1000_ring(e, "receive", e->r.rdbal, e->r.rdbah, e->r.rdlen, e->r.rdh, e->r.rdt, &base, &count))
		return -1;
	need = (uint32_t)((e->rx_len + bufsize - 1) / bufsize);
	if (need > E1000_RX_MAX_DESC || need >= count) {
		/* The ring can never hold it. */
		e->rx_pending = false;
		e->stats.rx_dropped++;
		e->r.stats[ST_MPC]++;
		log_guest(&e->rl, E1000_TAG, "a %zu-byte frame needs %u buffers; the ring has %u", e->rx_len,
			  need, count);
		return 1;
	}
	avail = (e->r.rdt + count - e->r.rdh) % count;
	if (avail < need) {
		e->r.stats[ST_RNBC]++;
		e->stats.rx_no_desc++;
		return 0;
	}
	/* Copy the buffer addresses out once, check them all, then write. */
	for (uint32_t i = 0; i < need; i++) {
		uint8_t d[8];
		uint64_t gpa = base + (uint64_t)((e->r.rdh + i) % count) * 16;
		size_t chunk = left < bufsize ? left : bufsize;

		/* Cannot fail: the descriptor is inside the ring e1000_ring() found in guest RAM. */
		KESTREL_IGNORE(gm_read(e->gm, gpa, d, sizeof(d)));
		bufs[i] = ld64le(d);
		if (!gm_ptr(e->gm, bufs[i], chunk)) {
			e1000_rx_bad_buffer(e, base, count, bufs[i]);
			return 1;
		}
		left -= chunk;
	}
	left = e->rx_len;
	for (uint32_t i = 0; i < need; i++) {
		uint64_t gpa = base + (uint64_t)e->r.rdh * 16;
		size_t chunk = left < bufsize ? left : bufsize;
		uint8_t wb[8] = { 0 };

		/* Neither write can fail: the buffer passed gm_ptr() above, the descriptor is in the ring. */
		KESTREL_IGNORE(gm_write(e->gm, bufs[i], p, chunk));
		st16le(wb, (uint16_t)chunk);
		wb[4] = RXD_STA_DD | RXD_STA_IXSM | (i + 1 == need ? RXD_STA_EOP : 0) |
			(e->rx_vlan ? RXD_STA_VP : 0);
		if (e->rx_vlan)
			st16le(wb + 6, e->rx_tci);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		KESTREL_IGNORE(gm_write(e->gm, gpa + 8, wb, sizeof(wb)));
		p += chunk;
		left -= chunk;
		e->r.rdh = (e->r.rdh + 1) % count;
	}
	e->rx_pending = false;
	e->stats.rx_packets++;
	e->stats.rx_bytes += e->rx_wire_len - 4;
	e->r.stats[ST_GPRC]++;
	e->r.stats[ST_GORC] += e->rx_wire_len;
	e1000_size_bin(e, ST_PRC64, e->rx_wire_len);
	/* RXDMT0 when the free descriptors fall to the RDMTS fraction of the ring. */
	thr = count >> (((e->r.rctl >> RCTL_RDMTS_SHIFT) & 3) + 1);
	e1000_raise(e, ICR_RXT0 | (avail > thr && avail - need <= thr ? ICR_RXDMT0 : 0));
	return 1;
}

/* Move up to `budget` frames from the backend to the guest. Caller holds e->lock. */
static void e1000_rx(struct e1000 *e, unsigned budget)
{
	unsigned frames = 0;

	while (frames < budget) {
		int rc;

		if (!e1000_rx_can_read(e))
			return;
		if (!e->rx_pending) {
			/* Read nothing the guest has no room for: the backend keeps it queued. */
			uint64_t base;
			uint32_t count;

			if (!e1000_ring(e, "receive", e->r.rdbal, e->r.rdbah, e->r.rdlen, e->r.rdh, e->r.rdt,
					&base, &count) || e->r.rdh == e->r.rdt) {
				e->rx_blocked = true;
				return;
			}
			rc = e1000_rx_read(e);
			if (rc <= 0)
				return;
			frames++;
			if (rc == 2)
				continue;
		}
		rc = e1000_rx_deliver(e);
		if (rc <= 0) {
			e->rx_blocked = true;
			return;
		}
	}
}

/* ---- register file ---- */

/* Registers that only hold a value: where, and which bits are writable. */
#define PLAIN(r, f, m) { r, (uint16_t)offsetof(struct e1000_regs, f), m }

const struct e1000_plain e1000_plain_regs[] = {
	PLAIN(R_CTRL_EXT, ctrl_ext, 0xffffffffu & ~CTRL_EXT_EE_RST),
	PLAIN(R_FCAL, fcal, 0xffffffffu),
	PLAIN(R_FCAH, fcah, 0x0000ffffu),
	PLAIN(R_FCT, fct, 0x0000ffffu),
	PLAIN(R_VET, vet, 0x0000ffffu),
	PLAIN(R_ITR, itr, 0x0000ffffu),
	PLAIN(R_FCTTV, fcttv, 0x0000ffffu),
	PLAIN(R_TXCW, txcw, 0xc0000fffu),
	PLAIN(R_TIPG, tipg, 0x3fffffffu),
	PLAIN(R_AIT, ait, 0x0000ffffu),
	PLAIN(R_LEDCTL, ledctl, 0xffffffffu),
	PLAIN(R_FCRTL, fcrtl, 0x8000fff8u),
	PLAIN(R_FCRTH, fcrth, 0x0000fff8u),
	PLAIN(R_RDTR, rdtr, 0x0000ffffu),
	PLAIN(R_RXDCTL, rxdctl, 0x013f3f3fu),
	PLAIN(R_RADV, radv, 0x0000ffffu),
	PLAIN(R_RSRPD, rsrpd, 0x00000fffu),
	PLAIN(R_TXDMAC, txdmac, 0x00000001u),
	PLAIN(R_TIDV, tidv, 0x0000ffffu),
	PLAIN(R_TXDCTL, txdctl, 0x013f3f3fu),
	PLAIN(R_TADV, tadv, 0x0000ffffu),
	PLAIN(R_TSPMT, tspmt, 0xffffffffu),
	PLAIN(R_RXCSUM, rxcsum, 0x000003ffu),
	PLAIN(R_WUC, wuc, 0x0000000fu),
	PLAIN(R_WUFC, wufc, 0xffffffffu),
	PLAIN(R_MANC, manc, 0xffffffffu),
	PLAIN(R_IPAV, ipav, 0x00010001u),
};
const size_t e1000_plain_count = sizeof(e1000_plain_regs) / sizeof(e1000_plain_regs[0]);

static const struct e1000_plain *e1000_plain_find(uint32_t off)
{
	for (size_t i = 0; i < e1000_plain_count; i++)
		if (e1000_plain_regs[i].reg == off)
			return &e1000_plain_regs[i];
	return NULL;
}

static uint32_t *e1000_plain_ptr(struct e1000 *e, const struct e1000_plain *pl)
{
	return (uint32_t *)(void *)((uint8_t *)&e->r + pl->field);
}

/* Statistics: 32-bit clear-on-read counters; the 64-bit octet counters clear when their high half is read. */
static uint32_t e1000_stat_read(struct e1000 *e, unsigned idx)
{
	uint64_t v;

	switch (idx) {
	case ST_GORC: case ST_GOTC: case ST_TOR: case ST_TOT:
		return (uint32_t)e->r.stats[idx];
	case ST_GORC + 1: case ST_GOTC + 1: case ST_TOR + 1: case ST_TOT + 1:
		v = e->r.stats[idx - 1];
		e->r.stats[idx - 1] = 0;
		return (uint32_t)(v >> 32);
	default:
		v = e->r.stats[idx];
		e->r.stats[idx] = 0;
		return v > 0xffffffffu ? 0xffffffffu : (uint32_t)v;
	}
}

static void e1000_unimplemented(struct e1000 *e, const char *what, uint32_t off)
{
	log_guest(&e->rl_reg, E1000_TAG, "%s of register %#x, which is not implemented", what, off);
}

/* off: 4-byte aligned, inside the register file. Caller holds e->lock. */
static uint32_t e1000_reg_read(struct e1000 *e, uint32_t off)
{
	const struct e1000_plain *pl;
	uint32_t v;

	switch (off) {
	case R_CTRL: return e->r.ctrl;
	case R_STATUS: return e1000_status(e);
	case R_EECD: return e1000_eecd_read(e);
	case R_EERD: return e->r.eerd;
	case R_MDIC: return e->r.mdic;
	case R_ICR:
		v = e->r.icr;
		e->r.icr = 0;
		e1000_update_irq(e);
		return v;
	case R_ICS: case R_IMC: return 0;
	case R_IMS: return e->r.ims;
	case R_RCTL: return e->r.rctl;
	case R_TCTL: return e->r.tctl;
	case R_PBA: return (e->r.pba & 0xffff) | ((64u - (e->r.pba & 0x3f)) & 0xffff) << 16;
	case R_RDBAL: return e->r.rdbal;
	case R_RDBAH: return e->r.rdbah;
	case R_RDLEN: return e->r.rdlen;
	case R_RDH: return e->r.rdh;
	case R_RDT: return e->r.rdt;
	case R_TDBAL: return e->r.tdbal;
	case R_TDBAH: return e->r.tdbah;
	case R_TDLEN: return e->r.tdlen;
	case R_TDH: return e->r.tdh;
	case R_TDT: return e->r.tdt;
	case R_WUS: return e->r.wus;
	default:
		break;
	}
	if (off >= R_STATS && off < R_STATS + 4 * ST_COUNT)
		return e1000_stat_read(e, (off - R_STATS) / 4);
	if (off >= R_MTA && off < R_MTA + 4 * 128)
		return e->r.mta[(off - R_MTA) / 4];
	if (off >= R_RA && off < R_RA + 4 * 32)
		return e->r.ra[(off - R_RA) / 4];
	if (off >= R_VFTA && off < R_VFTA + 4 * 128)
		return e->r.vfta[(off - R_VFTA) / 4];
	pl = e1000_plain_find(off);
	if (pl)
		return *e1000_plain_ptr(e, pl);
	e1000_unimplemented(e, "read", off);
	return 0;
}

static void e1000_ctrl_write(struct e1000 *e, uint32_t v)
{
	bool was_up = e1000_link_up(e);

	if (v & CTRL_RST) {
		e1000_mac_reset(e);
		return;
	}
	if ((v & CTRL_PHY_RST) && !(e->r.ctrl & CTRL_PHY_RST))
		e1000_phy_reset(e);
	e->r.ctrl = v;
	if (e1000_link_up(e) != was_up) {
		e1000_raise(e, ICR_LSC);
		e->kick |= WORK_TX | WORK_RX;
	}
}

static void e1000_len_write(struct e1000 *e, uint32_t *reg, uint32_t v, const char *name)
{
	if (v & 0x7f)
		log_guest(&e->rl, E1000_TAG, "%s %#x is not a multiple of 128; using %#x", name, v, v & 0xfff80u);
	*reg = v & 0xfff80u;
}

static void e1000_reg_write(struct e1000 *e, uint32_t off, uint32_t v)
{
	const struct e1000_plain *pl;

	switch (off) {
	case R_CTRL: e1000_ctrl_write(e, v); return;
	case R_STATUS: return;
	case R_EECD: e1000_eecd_write(e, v); return;
	case R_EERD: e1000_eerd_write(e, v); return;
	case R_MDIC: e1000_mdic_write(e, v); return;
	case R_ICR:
		e->r.icr &= ~v;
		e1000_update_irq(e);
		return;
	case R_ICS: e1000_raise(e, v & ICR_MASK); return;
	case R_IMS:
		e->r.ims |= v & ICR_MASK;
		e1000_update_irq(e);
		return;
	case R_IMC:
		e->r.ims &= ~v;
		e1000_update_irq(e);
		return;
	case R_RCTL:
		e->r.rctl = v & 0x07ffbffeu;
		e->kick |= WORK_RX;
		return;
	case R_TCTL:
		e->r.tctl = v & 0x03fffffau;
		e->kick |= WORK_TX;
		return;
	case R_PBA: e->r.pba = v & 0xffff; return;
	case R_RDBAL: e->r.rdbal = v & ~0xfu; e->kick |= WORK_RX; return;
	case R_RDBAH: e->r.rdbah = v; e->kick |= WORK_RX; return;
	case R_RDLEN: e1000_len_write(e, &e->r.rdlen, v, "RDLEN"); e->kick |= WORK_RX; return;
	case R_RDH: e->r.rdh = v & 0xffff; e->kick |= WORK_RX; return;
	case R_RDT:
		e->r.rdt = v & 0xffff;
		e->stats.rdt_writes++;
		e->kick |= WORK_RX;
		return;
	case R_TDBAL: e->r.tdbal = v & ~0xfu; return;
	case R_TDBAH: e->r.tdbah = v; return;
	case R_TDLEN: e1000_len_write(e, &e->r.tdlen, v, "TDLEN"); return;
	case R_TDH: e->r.tdh = v & 0xffff; return;
	case R_TDT:
		e->r.tdt = v & 0xffff;
		e->stats.tdt_writes++;
		e->kick |= WORK_TX;
		return;
	case R_WUS: e->r.wus &= ~v; return;
	default:
		break;
	}
	if (off >= R_STATS && off < R_STATS + 4 * ST_COUNT)
		return;   /* read-only */
	if (off >= R_MTA && off < R_MTA + 4 * 128) {
		e->r.mta[(off - R_MTA) / 4] = v;
		return;
	}
	if (off >= R_RA && off < R_RA + 4 * 32) {
		unsigned i = (off - R_RA) / 4;

		e->r.ra[i] = (i & 1) ? v & (RAH_AV | RAH_AS_MASK | 0xffff) : v;
		return;
	}
	if (off >= R_VFTA && off < R_VFTA + 4 * 128) {
		e->r.vfta[(off - R_VFTA) / 4] = v;
		return;
	}
	pl = e1000_plain_find(off);
	if (pl) {
		uint32_t *p = e1000_plain_ptr(e, pl);

		*p = (*p & ~pl->wmask) | (v & pl->wmask);
		return;
	}
	e1000_unimplemented(e, "write", off);
}

/* ---- BAR0: memory-mapped registers ---- */

static bool e1000_access_ok(struct e1000 *e, uint64_t off, unsigned size, const char *what)
{
	if (size == 4 && !(off & 3) && off < E1000_MMIO_SIZE)
		return true;
	log_guest(&e->rl, E1000_TAG, "ignoring a %u-byte %s at register offset %#llx (dword accesses only)",
		  size, what, (unsigned long long)off);
	return false;
}

static uint64_t e1000_mmio_read(void *opaque, uint64_t off, unsigned size)
{
	struct e1000 *e = opaque;
	uint32_t v = 0;

	e1000_lock(e);
	e->stats.mmio_exits++;
	e1000_check_deferred(e);
	if (e1000_access_ok(e, off, size, "read"))
		v = e1000_reg_read(e, (uint32_t)off);
	e1000_unlock(e);
	return v;
}

static void e1000_mmio_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	struct e1000 *e = opaque;

	e1000_lock(e);
	e->stats.mmio_exits++;
	e1000_check_deferred(e);
	if (e1000_access_ok(e, off, size, "write"))
		e1000_reg_write(e, (uint32_t)off, (uint32_t)value);
	e1000_unlock(e);
}

static const struct bus_dev_ops e1000_mmio_ops = { .read = e1000_mmio_read, .write = e1000_mmio_write };

/* ---- BAR1: IOADDR (0) selects a register, IODATA (4) accesses it ---- */

static bool e1000_ioaddr_ok(struct e1000 *e)
{
	if (e->ioaddr < E1000_MMIO_SIZE)
		return true;
	log_guest(&e->rl, E1000_TAG, "IOADDR %#x is outside the register file", e->ioaddr);
	return false;
}

static uint64_t e1000_io_read(void *opaque, uint64_t off, unsigned size)
{
	struct e1000 *e = opaque;
	uint32_t v = 0;

	e1000_lock(e);
	e->stats.pio_exits++;
	e1000_check_deferred(e);
	if (size != 4 || (off != 0 && off != 4))
		log_guest(&e->rl, E1000_TAG, "ignoring a %u-byte I/O read at %#llx", size, (unsigned long long)off);
	else if (off == 0)
		v = e->ioaddr;
	else if (e1000_ioaddr_ok(e))
		v = e1000_reg_read(e, e->ioaddr & ~3u);
	e1000_unlock(e);
	return v;
}

static void e1000_io_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	struct e1000 *e = opaque;

	e1000_lock(e);
	e->stats.pio_exits++;
	e1000_check_deferred(e);
	if (size != 4 || (off != 0 && off != 4))
		log_guest(&e->rl, E1000_TAG, "ignoring a %u-byte I/O write at %#llx", size, (unsigned long long)off);
	else if (off == 0)
		e->ioaddr = (uint32_t)value;
	else if (e1000_ioaddr_ok(e))
		e1000_reg_write(e, e->ioaddr & ~3u, (uint32_t)value);
	e1000_unlock(e);
}

static const struct bus_dev_ops e1000_io_ops = { .read = e1000_io_read, .write = e1000_io_write };

/* ---- PCI config: command register and MSI ---- */

/*
 * Bring MSI in line with the capability. fire: send the message for a line
 * already asserted when MSI turns on (not on restore). Caller holds e->lock.
 */
void e1000_msi_update(struct e1000 *e, bool fire)
{
	const struct pci_dev *pd = &e->pci;
	unsigned cap = e->msi_cap;
	bool enable = pci_get16(pd, cap + 2) & MSI_CTRL_ENABLE, was = e->msi_enabled;
	uint64_t addr = pci_get32(pd, cap + 4) | (uint64_t)pci_get32(pd, cap + 8) << 32;
	uint32_t data = pci_get16(pd, cap + 12);
	const struct msi_host_ops *ops = e->msi->ops;

	if (enable) {
		int rc = 0;

		if (e->msi_gsi < 0) {
			int gsi = ops->route_alloc(e->msi->opaque);

			if (gsi < 0) {
				log_guest(&e->rl, E1000_TAG, "MSI: no GSI route available");
				enable = false;
			} else {
				e->msi_gsi = gsi;
				rc = ops->route_set(e->msi->opaque, (unsigned)gsi, addr, data);
				if (rc == 0)
					rc = ops->irqfd(e->msi->opaque, e->msi_fd, (unsigned)gsi, true);
				if (rc < 0) {
					ops->route_free(e->msi->opaque, (unsigned)gsi);
					e->msi_gsi = -1;
				}
			}
		} else {
			rc = ops->route_set(e->msi->opaque, (unsigned)e->msi_gsi, addr, data);
		}
		if (rc < 0) {
			log_guest(&e->rl, E1000_TAG, "MSI: route setup failed (%d)", rc);
			enable = false;
		}
	}
	e->msi_enabled = enable;
	if (enable && !was && e->line && fire)
		e1000_msi_fire(e);
	e1000_intx_sync(e);
}

static void e1000_cfg_write(struct pci_dev *pd, unsigned off, unsigned size, uint32_t value)
{
	struct e1000 *e = pd->opaque;
	bool cmd = off < PCI_COMMAND + 2 && off + size > PCI_COMMAND;
	bool msi = e->msi_cap && off < e->msi_cap + MSI_CAP_LEN && off + size > e->msi_cap + 2;
	uint16_t c;

	if (!cmd && !msi)
		return;
	e1000_lock(e);
	if (cmd) {
		c = pci_get16(pd, PCI_COMMAND);
		if ((c & PCI_CMD_MASTER) && !e->bus_master)
			e->kick |= WORK_TX | WORK_RX;
		e->bus_master = c & PCI_CMD_MASTER;
		e->intx_off = c & PCI_CMD_INTX_OFF;
		e1000_intx_sync(e);
	}
	if (msi)
		e1000_msi_update(e, true);
	e1000_unlock(e);
}

static const struct pci_dev_ops e1000_pci_ops = { .cfg_write = e1000_cfg_write };

/* ---- I/O thread ---- */

static void e1000_do_work(struct e1000 *e, uint32_t work)
{
	bool inline_work = e->loop == NULL;

	e1000_check_deferred(e);
	if (work & WORK_TX)
		e1000_tx(e, inline_work ? UINT32_MAX : E1000_TX_BUDGET);
	if (work & WORK_RX) {
		e->rx_blocked = false;
		e1000_rx(e, E1000_RX_BUDGET);
	}
}

/* I/O thread: poll the backend for what the device can take now. */
static void e1000_update_events(struct e1000 *e)
{
	uint32_t ev = 0;
	bool more;

	e1000_lock(e);
	if (!e->loop) {
		pthread_mutex_unlock(&e->lock);
		return;
	}
	if (e->rx_dead && e->be_registered) {
		/* A dead tap reports EPOLLERR for ever: stop polling it. */
		loop_del(e->loop, e->be->fd);
		e->be_registered = false;
	}
	if (e1000_rx_can_read(e) && !e->rx_blocked)
		ev |= EPOLLIN;
	if (e->tx_pending)
		ev |= EPOLLOUT;
	if (e->be_registered && ev != e->be_events && loop_mod(e->loop, e->be->fd, ev) == 0)
		e->be_events = ev;
	more = e->tx_more;
	pthread_mutex_unlock(&e->lock);
	if (more)
		e1000_schedule(e, WORK_TX);
}

static void e1000_work_cb(void *opaque)
{
	struct e1000 *e = opaque;

	e1000_lock(e);
	e1000_do_work(e, __atomic_exchange_n(&e->work, 0, __ATOMIC_ACQ_REL));
	pthread_mutex_unlock(&e->lock);
	e1000_update_events(e);
}

static void e1000_backend_cb(void *opaque, uint32_t events)
{
	struct e1000 *e = opaque;

	e1000_lock(e);
	if (events & (EPOLLOUT | EPOLLERR))
		e1000_tx(e, E1000_TX_BUDGET);
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		e1000_rx(e, E1000_RX_BUDGET);
	pthread_mutex_unlock(&e->lock);
	e1000_update_events(e);
}

static void e1000_timer_cb(void *opaque)
{
	struct e1000 *e = opaque;

	e1000_lock(e);
	e1000_check_deferred(e);
	pthread_mutex_unlock(&e->lock);
}

/* ---- public API ---- */

struct pci_dev *e1000_pci(struct e1000 *e)
{
	return &e->pci;
}

void e1000_set_irq(struct e1000 *e, struct irq *intx)
{
	e1000_lock(e);
	e->intx = intx;
	e->intx_level = false;
	if (intx)
		irq_set_level(intx, false);
	e1000_intx_sync(e);
	pthread_mutex_unlock(&e->lock);
}

void e1000_poll(struct e1000 *e)
{
	e1000_lock(e);
	e1000_do_work(e, WORK_TX | WORK_RX);
	pthread_mutex_unlock(&e->lock);
}

void e1000_get_stats(struct e1000 *e, struct e1000_stats *st)
{
	e1000_lock(e);
	*st = e->stats;
	st->backend_dropped = __atomic_load_n(&e->be->dropped, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&e->lock);
}

int e1000_attach(struct e1000 *e, struct loop *l)
{
	int rc;

	if (e->loop)
		return -EBUSY;
	/* Registered idle; e1000_update_events() turns on what the device state allows. */
	rc = loop_add(l, e->be->fd, 0, e1000_backend_cb, e);
	if (rc < 0)
		return rc;
	rc = net_backend_attach(e->be, l);
	if (rc < 0)
		goto err_be;
	loop_timer_init(&e->itr_timer, l, e1000_timer_cb, e);
	e1000_lock(e);
	e->be_events = 0;
	e->be_registered = true;
	e->loop = l;
	if (e->irq_deferred)
		e1000_timer_arm(e, e->deferred_until_ns);
	pthread_mutex_unlock(&e->lock);
	e1000_schedule(e, WORK_TX | WORK_RX | WORK_EVENTS);
	return 0;

err_be:
	loop_del(l, e->be->fd);
	return rc;
}

void e1000_detach(struct e1000 *e)
{
	struct loop *l;

	e1000_lock(e);
	l = e->loop;
	e->loop = NULL;
	pthread_mutex_unlock(&e->lock);
	if (!l)
		return;
	net_backend_detach(e->be, l);
	if (e->be_registered)
		loop_del(l, e->be->fd);
	e->be_registered = false;
	loop_timer_cancel(&e->itr_timer);
	loop_work_cancel(l, &e->work_post);
}

int e1000_new(struct e1000 **out, const struct e1000_config *cfg, const struct guest_mem *gm,
	      const struct msi_host *msi, char *err, size_t errlen)
{
	struct e1000 *e;
	int rc, cap;

	struct net_backend *be = cfg->backend;

	*out = NULL;
	if (!gm) {
		snprintf(err, errlen, "e1000: no guest memory");
		net_backend_free(be);
		return -EINVAL;
	}
	if (!be) {
		rc = net_backend_open(&be, &cfg->net, err, errlen);
		if (rc < 0)
			return rc;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		net_backend_free(be);
		snprintf(err, errlen, "e1000: out of memory");
		return -ENOMEM;
	}
	e->be = be;
	e->msi_fd = -1;
	loop_work_init(&e->work_post, e1000_work_cb, e);
	e->msi_gsi = -1;
	e->tx_buf = malloc(E1000_TX_MAX);
	e->rx_buf = malloc(E1000_RX_BUF_LEN);
	if (!e->tx_buf || !e->rx_buf) {
		rc = -ENOMEM;
		snprintf(err, errlen, "e1000: out of memory");
		goto err_free;
	}
	/* The MSI message goes out through KVM's irqfd on this eventfd. */
	e->msi_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (e->msi_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "e1000: eventfd: %s", strerror(errno));
		goto err_free;
	}
	/* Frames come with full checksums and unsegmented: the 82540 offers no receive offload. */
	rc = net_backend_set_offload(e->be, 0);
	if (rc < 0) {
		snprintf(err, errlen, "e1000: %s backend: cannot turn offloads off: %s", e->be->kind, strerror(-rc));
		goto err_free;
	}
	e->gm = gm;
	e->msi = msi && msi->ops ? msi : NULL;
	memcpy(e->mac, cfg->mac, sizeof(e->mac));
	e->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	e->rl_reg = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	pthread_mutex_init(&e->lock, NULL);
	e1000_eeprom_init(e);
	e1000_phy_reset(e);
	e1000_mac_reset(e);

	pci_dev_init(&e->pci, E1000_VENDOR_ID, E1000_DEVICE_ID, E1000_CLASS, 0, "e1000");
	pci_set16(&e->pci, PCI_SUBSYS_VENDOR, E1000_VENDOR_ID);
	pci_set16(&e->pci, PCI_SUBSYS_ID, E1000_SUBSYS_ID);
	e->pci.ops = &e1000_pci_ops;
	e->pci.opaque = e;
	rc = pci_dev_set_bar(&e->pci, 0, E1000_MMIO_SIZE, 0, &e1000_mmio_ops, e);
	if (rc == 0)
		rc = pci_dev_set_bar(&e->pci, 1, E1000_IO_SIZE, PCI_BAR_IO, &e1000_io_ops, e);
	if (rc == 0 && e->msi) {
		cap = pci_dev_add_cap(&e->pci, 0x05, MSI_CAP_LEN);
		if (cap < 0) {
			rc = cap;
		} else {
			e->msi_cap = (unsigned)cap;
			pci_set16(&e->pci, (unsigned)cap + 2, MSI_CTRL_64BIT);
			/* Enable and Multiple Message Enable; one vector (MMC 0). */
			e->pci.wmask[cap + 2] = 0x71;
			for (unsigned i = 4; i < 12; i++)
				e->pci.wmask[cap + i] = 0xff;
			e->pci.wmask[cap + 4] = 0xfc;
			e->pci.wmask[cap + 12] = 0xff;
			e->pci.wmask[cap + 13] = 0xff;
		}
	}
	if (rc < 0) {
		snprintf(err, errlen, "e1000: PCI setup failed: %s", strerror(-rc));
		pthread_mutex_destroy(&e->lock);
		goto err_free;
	}
	*out = e;
	return 0;

err_free:
	if (e->msi_fd >= 0)
		close(e->msi_fd);
	net_backend_free(e->be);
	free(e->tx_buf);
	free(e->rx_buf);
	free(e);
	return rc;
}

void e1000_free(struct e1000 *e)
{
	if (!e)
		return;
	e1000_detach(e);
	if (e->msi && e->msi_gsi >= 0) {
		e->msi->ops->irqfd(e->msi->opaque, e->msi_fd, (unsigned)e->msi_gsi, false);
		e->msi->ops->route_free(e->msi->opaque, (unsigned)e->msi_gsi);
	}
	net_backend_free(e->be);
	close(e->msi_fd);
	pthread_mutex_destroy(&e->lock);
	free(e->tx_buf);
	free(e->rx_buf);
	free(e);
}

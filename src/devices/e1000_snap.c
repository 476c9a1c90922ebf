/*
 * e1000 pause and snapshot: quiesce the transmit ring, save the whole device
 * in one section, validate a section completely before loading any of it.
 */
#include "devices/e1000_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/snap.h"

/* ---- pause and snapshot ---- */

void e1000_quiesce(struct e1000 *e)
{
	pthread_mutex_lock(&e->lock);
	e1000_check_deferred(e);
	/* The whole ring in one go: only a backend EAGAIN can leave work behind, and that is saved. */
	e1000_tx(e, UINT32_MAX);
	pthread_mutex_unlock(&e->lock);
}

void e1000_resume_work(struct e1000 *e)
{
	bool loop;

	pthread_mutex_lock(&e->lock);
	loop = e->loop != NULL;
	pthread_mutex_unlock(&e->lock);
	if (loop)
		e1000_schedule(e, WORK_TX | WORK_RX | WORK_EVENTS);
}

/* The register file goes out as its 32-bit words in declaration order, then the statistics. */
#define E1000_REGS_WORDS (offsetof(struct e1000_regs, vfta) / 4 + 128)
_Static_assert(E1000_REGS_WORDS == 335 && sizeof(struct e1000_regs) == 336 * 4 + 8 * ST_COUNT,
	       "struct e1000_regs changed: update the snapshot layout and E1000_SNAP_VERSION");

/* The longest ITR interval (ITR is 16 bits of 256 ns): older history does not matter. */
#define E1000_ITR_MAX_NS (0xffffull * 256)

/* Everything e1000_load reads, checked before any of it reaches the device. */
struct e1000_snap {
	struct pci_dev_snap pci;
	struct e1000_regs r;
	uint16_t phy[PHY_NREGS];
	uint16_t eeprom[EE_WORDS];
	uint8_t ee_mode, ee_nbits, ee_bitpos;
	uint32_t ee_shift;
	uint16_t ee_addr, ee_data;
	bool ee_do;
	bool line, irq_deferred, irq_ever;
	uint64_t since_irq_ns, deferred_left_ns;
	uint32_t ioaddr;
	struct e1000_txctx ctx, tx_ctx;
	bool tx_started, tx_bad, tx_legacy, tx_tso, tx_pending, tx_more;
	uint8_t tx_bad_code, tx_cmd, tx_eop_cmd, tx_popts, tx_css, tx_cso;
	uint16_t tx_special;
	uint32_t tx_next_seg, tx_len;
	bool rx_pending, rx_vlan;
	uint16_t rx_tci;
	uint32_t rx_len, rx_wire_len;
	uint8_t tx_buf[E1000_TX_MAX];
	uint8_t rx_buf[E1000_RX_MAX_LPE];
};

static void e1000_put_txctx(struct snap_writer *w, const struct e1000_txctx *c)
{
	snap_put_u8(w, c->ipcss);
	snap_put_u8(w, c->ipcso);
	snap_put_u8(w, c->tucss);
	snap_put_u8(w, c->tucso);
	snap_put_u8(w, c->tucmd);
	snap_put_u8(w, c->hdrlen);
	snap_put_u16(w, c->ipcse);
	snap_put_u16(w, c->tucse);
	snap_put_u16(w, c->mss);
	snap_put_u32(w, c->paylen);
}

static void e1000_get_txctx(struct snap_sec *s, struct e1000_txctx *c)
{
	c->ipcss = snap_get_u8(s);
	c->ipcso = snap_get_u8(s);
	c->tucss = snap_get_u8(s);
	c->tucso = snap_get_u8(s);
	c->tucmd = snap_get_u8(s);
	c->hdrlen = snap_get_u8(s);
	c->ipcse = snap_get_u16(s);
	c->tucse = snap_get_u16(s);
	c->mss = snap_get_u16(s);
	c->paylen = snap_get_u32(s);
}

static uint8_t e1000_tx_bad_code(const char *why)
{
	for (uint8_t i = 1; i < TX_BAD_COUNT; i++)
		if (why == e1000_tx_bad_whys[i])
			return i;
	return TX_BAD_NONE;
}

void e1000_save(const struct e1000 *e, struct snap_writer *w)
{
	pthread_mutex_t *lock = (pthread_mutex_t *)&e->lock;
	uint64_t now = loop_now_ns(), since = 0, left = 0;

	/* The host lock first, alone: the order is host -> e1000. */
	pci_dev_save(&e->pci, w);
	pthread_mutex_lock(lock);
	for (size_t i = 0; i < E1000_REGS_WORDS; i++) {
		uint32_t v;

		memcpy(&v, (const uint8_t *)&e->r + 4 * i, 4);
		snap_put_u32(w, v);
	}
	for (unsigned i = 0; i < ST_COUNT; i++)
		snap_put_u64(w, e->r.stats[i]);
	for (unsigned i = 0; i < PHY_NREGS; i++)
		snap_put_u16(w, e->phy[i]);
	for (unsigned i = 0; i < EE_WORDS; i++)
		snap_put_u16(w, e->eeprom[i]);

	snap_put_u8(w, (uint8_t)e->ee_mode);
	snap_put_u8(w, (uint8_t)e->ee_nbits);
	snap_put_u8(w, (uint8_t)e->ee_bitpos);
	snap_put_u32(w, e->ee_shift);
	snap_put_u16(w, e->ee_addr);
	snap_put_u16(w, e->ee_data);
	snap_put_bool(w, e->ee_do);

	/* Absolute CLOCK_MONOTONIC times mean nothing in another process: save them relative to now. */
	if (e->irq_ever)
		since = now - e->last_irq_ns < E1000_ITR_MAX_NS ? now - e->last_irq_ns : E1000_ITR_MAX_NS;
	if (e->irq_deferred && e->deferred_until_ns > now)
		left = e->deferred_until_ns - now < E1000_ITR_MAX_NS ? e->deferred_until_ns - now : E1000_ITR_MAX_NS;
	snap_put_bool(w, e->line);
	snap_put_bool(w, e->irq_deferred);
	snap_put_bool(w, e->irq_ever);
	snap_put_u64(w, since);
	snap_put_u64(w, left);
	snap_put_u32(w, e->ioaddr);

	e1000_put_txctx(w, &e->ctx);
	e1000_put_txctx(w, &e->tx_ctx);
	snap_put_bool(w, e->tx_started);
	snap_put_bool(w, e->tx_bad);
	snap_put_bool(w, e->tx_legacy);
	snap_put_bool(w, e->tx_tso);
	snap_put_bool(w, e->tx_pending);
	snap_put_bool(w, e->tx_more);
	snap_put_u8(w, e->tx_bad ? e1000_tx_bad_code(e->tx_bad_why) : TX_BAD_NONE);
	snap_put_u8(w, e->tx_cmd);
	snap_put_u8(w, e->tx_eop_cmd);
	snap_put_u8(w, e->tx_popts);
	snap_put_u8(w, e->tx_css);
	snap_put_u8(w, e->tx_cso);
	snap_put_u16(w, e->tx_special);
	snap_put_u32(w, e->tx_next_seg);
	snap_put_u32(w, (uint32_t)e->tx_len);
	snap_put(w, e->tx_buf, e->tx_len);

	snap_put_bool(w, e->rx_pending);
	snap_put_bool(w, e->rx_pending && e->rx_vlan);
	snap_put_u16(w, e->rx_pending ? e->rx_tci : 0);
	snap_put_u32(w, e->rx_pending ? (uint32_t)e->rx_len : 0);
	snap_put_u32(w, e->rx_pending ? (uint32_t)e->rx_wire_len : 0);
	if (e->rx_pending)
		snap_put(w, e->rx_buf + e->rx_off, e->rx_len);
	pthread_mutex_unlock(lock);
}

/* Values the register writes can produce; anything else never came from a guest. NULL: fine. */
static const char *e1000_regs_check(const struct e1000_regs *r)
{
	const struct e1000_plain *pl = e1000_plain_regs;

	for (size_t i = 0; i < e1000_plain_count; i++, pl++) {
		uint32_t v;

		memcpy(&v, (const uint8_t *)r + pl->field, 4);
		if (v & ~pl->wmask)
			return "a register has bits set that are not writable";
	}
	if ((r->eecd & ~EECD_WMASK) || (r->icr & ~ICR_MASK) || (r->ims & ~ICR_MASK))
		return "EECD, ICR or IMS has reserved bits set";
	if ((r->rctl & ~0x07ffbffeu) || (r->tctl & ~0x03fffffau) || (r->pba & ~0xffffu))
		return "RCTL, TCTL or PBA has reserved bits set";
	if ((r->rdbal & 0xf) || (r->tdbal & 0xf) || (r->rdlen & ~0xfff80u) || (r->tdlen & ~0xfff80u))
		return "a ring base or length is misaligned";
	if (r->rdh > 0xffff || r->rdt > 0xffff || r->tdh > 0xffff || r->tdt > 0xffff)
		return "a ring head or tail is out of range";
	for (unsigned i = 1; i < 32; i += 2)
		if (r->ra[i] & ~(RAH_AV | RAH_AS_MASK | 0xffffu))
			return "a receive address high register has reserved bits set";
	return NULL;
}

/* Read the section after the PCI part into t. NULL, or why it is refused. */
static const char *e1000_snap_read(struct snap_sec *s, struct e1000_snap *t)
{
	const char *why;

	for (size_t i = 0; i < E1000_REGS_WORDS; i++) {
		uint32_t v = snap_get_u32(s);

		memcpy((uint8_t *)&t->r + 4 * i, &v, 4);
	}
	for (unsigned i = 0; i < ST_COUNT; i++)
		t->r.stats[i] = snap_get_u64(s);
	for (unsigned i = 0; i < PHY_NREGS; i++)
		t->phy[i] = snap_get_u16(s);
	for (unsigned i = 0; i < EE_WORDS; i++)
		t->eeprom[i] = snap_get_u16(s);
	t->ee_mode = snap_get_u8(s);
	t->ee_nbits = snap_get_u8(s);
	t->ee_bitpos = snap_get_u8(s);
	t->ee_shift = snap_get_u32(s);
	t->ee_addr = snap_get_u16(s);
	t->ee_data = snap_get_u16(s);
	t->ee_do = snap_get_bool(s);
	t->line = snap_get_bool(s);
	t->irq_deferred = snap_get_bool(s);
	t->irq_ever = snap_get_bool(s);
	t->since_irq_ns = snap_get_u64(s);
	t->deferred_left_ns = snap_get_u64(s);
	t->ioaddr = snap_get_u32(s);
	e1000_get_txctx(s, &t->ctx);
	e1000_get_txctx(s, &t->tx_ctx);
	t->tx_started = snap_get_bool(s);
	t->tx_bad = snap_get_bool(s);
	t->tx_legacy = snap_get_bool(s);
	t->tx_tso = snap_get_bool(s);
	t->tx_pending = snap_get_bool(s);
	t->tx_more = snap_get_bool(s);
	t->tx_bad_code = snap_get_u8(s);
	t->tx_cmd = snap_get_u8(s);
	t->tx_eop_cmd = snap_get_u8(s);
	t->tx_popts = snap_get_u8(s);
	t->tx_css = snap_get_u8(s);
	t->tx_cso = snap_get_u8(s);
	t->tx_special = snap_get_u16(s);
	t->tx_next_seg = snap_get_u32(s);
	t->tx_len = snap_get_u32(s);
	if (s->err)
		return "section truncated or malformed";
	if (t->tx_len > E1000_TX_MAX)
		return "the transmit frame is longer than 64 KiB";
	snap_get(s, t->tx_buf, t->tx_len);
	t->rx_pending = snap_get_bool(s);
	t->rx_vlan = snap_get_bool(s);
	t->rx_tci = snap_get_u16(s);
	t->rx_len = snap_get_u32(s);
	t->rx_wire_len = snap_get_u32(s);
	if (s->err)
		return "section truncated or malformed";
	if (t->rx_pending ? t->rx_len < E1000_MIN_FRAME || t->rx_len > E1000_RX_MAX_LPE ||
			    t->rx_wire_len < E1000_MIN_FRAME + 4 || t->rx_wire_len > E1000_RX_MAX_LPE
			  : t->rx_len || t->rx_wire_len)
		return "the pending receive frame has an impossible length";
	snap_get(s, t->rx_buf, t->rx_len);
	if (s->err)
		return "section truncated or malformed";

	why = e1000_regs_check(&t->r);
	if (why)
		return why;
	if (t->ee_mode > EE_IGNORE || t->ee_nbits > 3 + EE_ADDR_BITS || t->ee_bitpos > 16 ||
	    t->ee_addr >= EE_WORDS)
		return "EEPROM bit-bang state out of range";
	if (t->since_irq_ns > E1000_ITR_MAX_NS || t->deferred_left_ns > E1000_ITR_MAX_NS)
		return "interrupt throttling times out of range";
	/* The invariants e1000_update_irq keeps. */
	if ((t->line || t->irq_deferred) && !(t->r.icr & t->r.ims))
		return "interrupt asserted with no unmasked cause";
	if (t->line && t->irq_deferred)
		return "interrupt both asserted and deferred";
	if (t->tx_bad_code >= TX_BAD_COUNT || t->tx_bad != (t->tx_bad_code != TX_BAD_NONE))
		return "bad transmit error state";
	if (t->tx_started && t->tx_pending)
		return "transmit frame both gathering and waiting";
	if (t->tx_pending) {
		if (t->tx_len < ETH_HLEN)
			return "the waiting transmit frame is shorter than an Ethernet header";
		if (t->tx_tso && (t->tx_next_seg > E1000_TSO_MAX_SEGS ||
				  e1000_tso_check(t->tx_len, t->tx_popts, &t->tx_ctx)))
			return "the waiting TSO frame does not match its context";
	}
	return NULL;
}

/* Caller holds e->lock. */
static void e1000_snap_commit(struct e1000 *e, const struct e1000_snap *t)
{
	uint16_t cmd = pci_get16(&e->pci, PCI_COMMAND);
	uint64_t now = loop_now_ns();
	bool level;

	e->r = t->r;
	memcpy(e->phy, t->phy, sizeof(e->phy));
	memcpy(e->eeprom, t->eeprom, sizeof(e->eeprom));
	e->ee_mode = (enum e1000_ee_mode)t->ee_mode;
	e->ee_nbits = t->ee_nbits;
	e->ee_bitpos = t->ee_bitpos;
	e->ee_shift = t->ee_shift;
	e->ee_addr = t->ee_addr;
	e->ee_data = t->ee_data;
	e->ee_do = t->ee_do;

	e->bus_master = cmd & PCI_CMD_MASTER;
	e->intx_off = cmd & PCI_CMD_INTX_OFF;
	e->line = t->line;
	e->irq_deferred = t->irq_deferred;
	e->irq_ever = t->irq_ever;
	e->last_irq_ns = now > t->since_irq_ns ? now - t->since_irq_ns : 0;
	e->deferred_until_ns = now + t->deferred_left_ns;
	e->ioaddr = t->ioaddr;

	e->ctx = t->ctx;
	e->tx_ctx = t->tx_ctx;
	e->tx_started = t->tx_started;
	e->tx_bad = t->tx_bad;
	e->tx_bad_why = t->tx_bad ? e1000_tx_bad_whys[t->tx_bad_code] : NULL;
	e->tx_legacy = t->tx_legacy;
	e->tx_tso = t->tx_tso;
	e->tx_pending = t->tx_pending;
	e->tx_more = t->tx_more;
	e->tx_cmd = t->tx_cmd;
	e->tx_eop_cmd = t->tx_eop_cmd;
	e->tx_popts = t->tx_popts;
	e->tx_css = t->tx_css;
	e->tx_cso = t->tx_cso;
	e->tx_special = t->tx_special;
	e->tx_next_seg = t->tx_next_seg;
	e->tx_len = t->tx_len;
	memcpy(e->tx_buf, t->tx_buf, t->tx_len);

	e->rx_pending = t->rx_pending;
	e->rx_off = 0;
	e->rx_len = t->rx_len;
	e->rx_wire_len = t->rx_wire_len;
	e->rx_vlan = t->rx_vlan;
	e->rx_tci = t->rx_tci;
	memcpy(e->rx_buf, t->rx_buf, t->rx_len);
	e->rx_blocked = false;
	e->kick = 0;

	/* Host-side effects of the restored state: MSI route and irqfd, the INTx level, the ITR timer. */
	if (e->msi_cap)
		e1000_msi_update(e, false);
	else
		e->msi_enabled = false;
	level = e->line && !e->msi_enabled && !e->intx_off;
	e->intx_level = level;
	irq_set_level(e->intx, level);
	if (e->loop && e->irq_deferred)
		e1000_timer_arm(e, e->deferred_until_ns);
}

int e1000_load(struct e1000 *e, struct snap_sec *s)
{
	struct e1000_snap *t;
	const char *why = NULL;
	bool loop;
	int rc;

	if (s->version != E1000_SNAP_VERSION) {
		log_err("snapshot", "e1000: unknown section version %u", s->version);
		snap_sec_fail(s);
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		snap_sec_fail(s);
		return -ENOMEM;
	}
	/* Every check first, the PCI part included: a refused section changes nothing. */
	rc = pci_dev_load_check(&e->pci, s, &t->pci);
	if (rc == 0) {
		why = e1000_snap_read(s, t);
		if (why) {
			log_err("snapshot", "e1000: %s", why);
			snap_sec_fail(s);
			rc = -EINVAL;
		}
	}
	if (rc < 0) {
		free(t);
		return rc;
	}
	pci_dev_load_apply(&e->pci, &t->pci);
	pthread_mutex_lock(&e->lock);
	e1000_snap_commit(e, t);
	loop = e->loop != NULL;
	pthread_mutex_unlock(&e->lock);
	free(t);
	if (loop)
		e1000_schedule(e, WORK_TX | WORK_RX | WORK_EVENTS);
	return 0;
}

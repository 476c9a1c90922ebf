/*
 * e1000 transmit: the descriptor ring walk (legacy, context and data
 * descriptors), gathering a frame out of guest memory, checksum insertion
 * (IXSM/TXSM, legacy IC), TCP segmentation (TSE) and handing frames to the
 * backend. Runs under e->lock, on the I/O thread (or inline without a loop).
 */
#include "devices/e1000_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/bytes.h"
#include "util/csum.h"

/* ---- transmit ---- */

static void e1000_tx_drop(struct e1000 *e, const char *why, size_t len)
{
	e->stats.tx_dropped++;
	log_guest(&e->rl, E1000_TAG, "dropping a %zu-byte transmit frame: %s", len, why);
}

/*
 * Hand one frame to the backend: `a` (at least an Ethernet header's worth of
 * MAC addresses) then `b`, with the VLAN tag inserted after the addresses
 * when asked and short frames padded. Returns what the backend returned.
 */
static ssize_t e1000_tx_send(struct e1000 *e, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	static const uint8_t zeros[E1000_MIN_FRAME];
	struct iovec iov[6];
	uint8_t tag[4];
	bool vlan = (e->tx_eop_cmd & TXD_VLE) && (e->r.ctrl & CTRL_VME);
	size_t len = alen + blen + (vlan ? 4 : 0), pad = 0;
	const uint8_t *dst = a;
	int n = 0;
	ssize_t rc;

	if (e->be->vnet_hdr) {
		iov[n].iov_base = (void *)zeros;
		iov[n++].iov_len = NET_VNET_HDR_LEN;
	}
	if (vlan) {
		st16be(tag, (uint16_t)e->r.vet);
		st16be(tag + 2, e->tx_special);
		iov[n].iov_base = (void *)a;
		iov[n++].iov_len = 12;
		iov[n].iov_base = tag;
		iov[n++].iov_len = 4;
		iov[n].iov_base = (void *)(a + 12);
		iov[n++].iov_len = alen - 12;
	} else {
		iov[n].iov_base = (void *)a;
		iov[n++].iov_len = alen;
	}
	if (blen) {
		iov[n].iov_base = (void *)b;
		iov[n++].iov_len = blen;
	}
	if (len < E1000_MIN_FRAME && (e->r.tctl & TCTL_PSP)) {
		pad = E1000_MIN_FRAME - len;
		iov[n].iov_base = (void *)zeros;
		iov[n++].iov_len = pad;
	}
	rc = net_backend_send(e->be, iov, n);
	if (rc == -EAGAIN)
		return rc;
	if (rc < 0) {
		e1000_tx_drop(e, strerror((int)-rc), len);
		return rc;
	}
	len += pad;
	e->stats.tx_packets++;
	e->stats.tx_bytes += len;
	e->r.stats[ST_GPTC]++;
	e->r.stats[ST_TPT]++;
	e->r.stats[ST_GOTC] += len + 4;
	e->r.stats[ST_TOT] += len + 4;
	if (dst[0] & 1)
		e->r.stats[memcmp(dst, "\xff\xff\xff\xff\xff\xff", 6) ? ST_MPTC : ST_BPTC]++;
	e1000_size_bin(e, ST_PTC64, len + 4);
	return rc;
}

/*
 * Put the one's-complement checksum of p[start, end] (end inclusive; 0 means
 * the end of the frame) at p[at]. false when the offsets make no sense.
 */
bool e1000_csum_insert(uint8_t *p, size_t len, unsigned start, unsigned end, unsigned at, bool l4)
{
	size_t stop = end ? (size_t)end + 1 : len;
	uint16_t c;

	if (stop > len)
		stop = len;
	if (start >= stop || (size_t)at + 2 > len)
		return false;
	c = (uint16_t)~csum_fold(csum_add(0, p + start, stop - start, 0));
	if (l4 && c == 0)
		c = 0xffff;   /* 0 would mean "no checksum" to UDP */
	st16be(p + at, c);
	return true;
}

/* TSO: is the context consistent with the frame? NULL if so, else why not. */
const char *e1000_tso_check(size_t tx_len, uint8_t popts, const struct e1000_txctx *c)
{
	bool ipv4 = c->tucmd & TUCMD_IP, tcp = c->tucmd & TUCMD_TCP;
	unsigned h = c->hdrlen;

	if (h < ETH_HLEN || h > E1000_TSO_MAX_HDR)
		return "TSO header length out of range";
	if (h > tx_len)
		return "TSO header longer than the frame";
	if (c->mss == 0)
		return "TSO with MSS 0";
	if ((unsigned)c->ipcss + (ipv4 ? 20u : 40u) > h)
		return "TSO IP header outside the header";
	if ((unsigned)c->tucss + (tcp ? 20u : 8u) > h || c->tucss < c->ipcss)
		return "TSO TCP/UDP header outside the header";
	if ((popts & POPTS_IXSM) && (!ipv4 || (unsigned)c->ipcso + 2 > h))
		return "TSO IP checksum offset outside the header";
	if ((popts & POPTS_TXSM) && (unsigned)c->tucso + 2 > h)
		return "TSO TCP/UDP checksum offset outside the header";
	if (tx_len - h > (size_t)E1000_TSO_MAX_SEGS * c->mss)
		return "TSO needs too many segments";
	return NULL;
}

/* Segment tx_buf from segment tx_next_seg on. 0, or -EAGAIN (resume later at tx_next_seg). */
static int e1000_tx_tso(struct e1000 *e)
{
	const struct e1000_txctx *c = &e->tx_ctx;
	bool ipv4 = c->tucmd & TUCMD_IP, tcp = c->tucmd & TUCMD_TCP;
	size_t h = c->hdrlen, payload = e->tx_len - h;
	unsigned nsegs = payload ? (unsigned)((payload + c->mss - 1) / c->mss) : 1;
	uint32_t seq0 = tcp ? ld32be(e->tx_buf + c->tucss + 4) : 0;
	uint16_t id0 = ipv4 ? ld16be(e->tx_buf + c->ipcss + 4) : 0;
	uint8_t hdr[E1000_TSO_MAX_HDR];

	for (unsigned s = e->tx_next_seg; s < nsegs; s++) {
		size_t off = (size_t)s * c->mss;
		size_t plen = payload - off < c->mss ? payload - off : c->mss;
		size_t seglen = h + plen;
		const uint8_t *data = e->tx_buf + h + off;
		ssize_t rc;

		memcpy(hdr, e->tx_buf, h);
		if (ipv4) {
			st16be(hdr + c->ipcss + 2, (uint16_t)(seglen - c->ipcss));
			st16be(hdr + c->ipcss + 4, (uint16_t)(id0 + s));
		} else {
			st16be(hdr + c->ipcss + 4, (uint16_t)(seglen - c->ipcss - 40));
		}
		if (tcp) {
			st32be(hdr + c->tucss + 4, seq0 + (uint32_t)off);
			if (s + 1 < nsegs)
				hdr[c->tucss + 13] &= (uint8_t)~0x09;   /* FIN and PSH: last segment only */
		} else {
			st16be(hdr + c->tucss + 4, (uint16_t)(seglen - c->tucss));
		}
		if ((e->tx_popts & POPTS_IXSM) && ipv4) {
			size_t end = c->ipcse ? (size_t)c->ipcse + 1 : h;

			if (end > h)
				end = h;
			st16be(hdr + c->ipcso, 0);
			if (end > c->ipcss)
				st16be(hdr + c->ipcso,
				       (uint16_t)~csum_fold(csum_add(0, hdr + c->ipcss, end - c->ipcss, 0)));
		}
		if (e->tx_popts & POPTS_TXSM) {
			/* The field holds the pseudo-header sum without the length; add it. */
			uint64_t sum = csum_add(0, hdr + c->tucss, h - c->tucss, 0);
			uint16_t cs;

			sum = csum_add(sum, data, plen, h - c->tucss);
			sum += (uint16_t)(seglen - c->tucss);
			cs = (uint16_t)~csum_fold(sum);
			st16be(hdr + c->tucso, cs ? cs : 0xffff);
		}
		rc = e1000_tx_send(e, hdr, h, data, plen);
		if (rc == -EAGAIN) {
			e->tx_next_seg = s;
			return -EAGAIN;
		}
	}
	e->r.stats[ST_TSCTC]++;
	e->stats.tx_tso++;
	return 0;
}

/* Send the frame in tx_buf (offloads applied). 0 or -EAGAIN. */
static int e1000_tx_emit(struct e1000 *e)
{
	if (e->tx_tso)
		return e1000_tx_tso(e);
	return e1000_tx_send(e, e->tx_buf, e->tx_len, NULL, 0) == -EAGAIN ? -EAGAIN : 0;
}

/* A whole frame was gathered (EOP). */
static void e1000_tx_frame(struct e1000 *e)
{
	const struct e1000_txctx *c = &e->tx_ctx;
	const char *why;

	e->tx_next_seg = 0;
	if (e->tx_len < ETH_HLEN) {
		e1000_tx_drop(e, "shorter than an Ethernet header", e->tx_len);
		e->tx_len = 0;
		return;
	}
	if (e->tx_tso) {
		why = e1000_tso_check(e->tx_len, e->tx_popts, c);
		if (why) {
			e->r.stats[ST_TSCTFC]++;
			e1000_tx_drop(e, why, e->tx_len);
			e->tx_len = 0;
			return;
		}
	} else if (e->tx_legacy) {
		if ((e->tx_cmd & TXD_IC) && !e1000_csum_insert(e->tx_buf, e->tx_len, e->tx_css, 0, e->tx_cso, true))
			log_guest(&e->rl, E1000_TAG, "legacy checksum offsets %u/%u outside a %zu-byte frame",
				  e->tx_css, e->tx_cso, e->tx_len);
	} else {
		/* IP first: a TCP/UDP checksum over a range that includes it then sees the final value. */
		if ((e->tx_popts & POPTS_IXSM) &&
		    !e1000_csum_insert(e->tx_buf, e->tx_len, c->ipcss, c->ipcse, c->ipcso, false))
			log_guest(&e->rl, E1000_TAG, "IP checksum offsets outside a %zu-byte frame", e->tx_len);
		if ((e->tx_popts & POPTS_TXSM) &&
		    !e1000_csum_insert(e->tx_buf, e->tx_len, c->tucss, c->tucse, c->tucso, true))
			log_guest(&e->rl, E1000_TAG, "TCP/UDP checksum offsets outside a %zu-byte frame", e->tx_len);
	}
	if (e1000_tx_emit(e) == -EAGAIN) {
		e->tx_pending = true;
		return;
	}
	e->tx_len = 0;
}

/* Retry what the backend refused. true when nothing waits any more. */
static bool e1000_tx_flush(struct e1000 *e)
{
	if (!e->tx_pending)
		return true;
	if (e1000_tx_emit(e) == -EAGAIN)
		return false;
	e->tx_pending = false;
	e->tx_len = 0;
	return true;
}

static void e1000_tx_context(struct e1000 *e, const uint8_t *d)
{
	struct e1000_txctx *c = &e->ctx;

	c->ipcss = d[0];
	c->ipcso = d[1];
	c->ipcse = ld16le(d + 2);
	c->tucss = d[4];
	c->tucso = d[5];
	c->tucse = ld16le(d + 6);
	c->paylen = ld32le(d + 8) & 0xfffff;
	c->tucmd = d[11];
	c->hdrlen = d[13];
	c->mss = ld16le(d + 14);
}

const char *const e1000_tx_bad_whys[TX_BAD_COUNT] = {
	[TX_BAD_NONE] = "malformed",
	[TX_BAD_LONG] = "longer than 64 KiB",
	[TX_BAD_RAM] = "buffer outside guest RAM",
};

/* One legacy or data descriptor: append its buffer, finish the frame at EOP. */
static void e1000_tx_data(struct e1000 *e, const uint8_t *d, bool ext)
{
	uint64_t addr = ld64le(d);
	uint32_t len = ext ? ld32le(d + 8) & 0xfffff : ld16le(d + 8);
	uint8_t cmd = d[11];

	if (!e->tx_started) {
		e->tx_started = true;
		e->tx_bad = false;
		e->tx_len = 0;
		e->tx_legacy = !ext;
		e->tx_cmd = cmd;
		e->tx_cso = d[10];
		e->tx_css = d[13];
		e->tx_popts = ext ? d[13] : 0;
		e->tx_tso = ext && (cmd & TXD_TSE);
		e->tx_ctx = e->ctx;
	}
	if (!e->tx_bad && len) {
		if (len > E1000_TX_MAX - e->tx_len) {
			e->tx_bad = true;
			e->tx_bad_why = e1000_tx_bad_whys[TX_BAD_LONG];
		} else if (gm_read(e->gm, addr, e->tx_buf + e->tx_len, len) < 0) {
			e->tx_bad = true;
			e->tx_bad_why = e1000_tx_bad_whys[TX_BAD_RAM];
		} else {
			e->tx_len += len;
		}
	}
	if (!(cmd & TXD_EOP))
		return;
	e->tx_started = false;
	e->tx_eop_cmd = cmd;
	e->tx_special = ld16le(d + 14);
	if (e->tx_bad) {
		e1000_tx_drop(e, e->tx_bad_why, e->tx_len);
		e->tx_len = 0;
		e->tx_bad = false;
		return;
	}
	e1000_tx_frame(e);
}

/*
 * Walk TDH..TDT, at most `budget` descriptors (and never more than the ring
 * holds). Caller holds e->lock.
 */
void e1000_tx(struct e1000 *e, unsigned budget)
{
	uint64_t base;
	uint32_t count;
	unsigned done = 0;
	bool wrote_back = false;

	e->tx_more = false;
	if (!(e->r.tctl & TCTL_EN) || !e->bus_master)
		return;
	if (!e1000_tx_flush(e))
		return;   /* EPOLLOUT on the backend resumes us */
	if (!e1000_ring(e, "transmit", e->r.tdbal, e->r.tdbah, e->r.tdlen, e->r.tdh, e->r.tdt, &base, &count))
		return;
	if (budget > count)
		budget = count;
	while (e->r.tdh != e->r.tdt) {
		uint64_t gpa = base + (uint64_t)e->r.tdh * 16;
		uint8_t d[16];
		uint8_t cmd;

		if (done == budget) {
			e->tx_more = true;
			break;
		}
		if (gm_read(e->gm, gpa, d, sizeof(d)) < 0)
			break;   /* cannot happen: the ring was checked to be RAM */
		cmd = d[11];
		if (cmd & TXD_DEXT) {
			unsigned dtyp = (ld32le(d + 8) >> 20) & 0xf;

			if (dtyp == TXD_DTYP_CTX)
				e1000_tx_context(e, d);
			else if (dtyp == TXD_DTYP_DATA)
				e1000_tx_data(e, d, true);
			else
				log_guest(&e->rl, E1000_TAG, "transmit descriptor %u has type %u", e->r.tdh, dtyp);
		} else {
			e1000_tx_data(e, d, false);
		}
		if (cmd & TXD_RS) {
			uint8_t sta = (uint8_t)(d[12] | TXD_STA_DD);

			__atomic_thread_fence(__ATOMIC_RELEASE);
			/* Cannot fail: the descriptor is inside the ring e1000_ring() found in guest RAM. */
			KESTREL_IGNORE(gm_write(e->gm, gpa + 12, &sta, 1));
			wrote_back = true;
		}
		e->r.tdh = (e->r.tdh + 1) % count;
		done++;
		if (e->tx_pending)
			break;
	}
	if (!done)
		return;
	e->r.icr |= wrote_back ? ICR_TXDW : 0;
	if (e->r.tdh == e->r.tdt)
		e->r.icr |= ICR_TXQE;
	e1000_update_irq(e);
}

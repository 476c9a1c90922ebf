/* SPDX-License-Identifier: MIT */
/*
 * guest-vnet: virtio-net transmit benchmark driver. Finds a modern
 * virtio-net PCI function (1af4:1041; a transitional 1af4:1000 with the
 * modern capabilities also does) on bus 0, assigns its BARs if no firmware
 * did, brings it up with VERSION_1 only (no MRG_RXBUF, no offloads), posts a
 * few receive buffers on queue 0 (never looked at until the end) and sends
 * `n` Ethernet frames on queue 1, keeping the transmit ring full: whenever
 * `batch` descriptors are free it adds `batch` frames and kicks once. The
 * used ring is polled, with no interrupts (MSI-X on, every vector
 * NO_VECTOR).
 *
 * Each frame is one descriptor: the 12-byte struct virtio_net_hdr (all
 * zero: no checksum offload, GSO_NONE; with VERSION_1 the header always
 * has num_buffers, Virtio 1.2 5.1.6) followed by the frame: destination
 * ff:ff:ff:ff:ff:ff (or dst=unicast: 02:00:00:00:00:02), source
 * 02:00:00:00:00:01, ethertype 0x88b5 (IEEE 802 local experimental, no
 * host protocol handles it), a payload of a frame counter and filler.
 *
 * Everything after the IDT/TSS setup runs at CPL3.
 *
 * Cmdline:
 *   n=COUNT (100000) frames in total
 *   size=BYTES (64; the Ethernet frame without FCS, 14..1514)
 *   batch=N (32) frames per kick
 *   qsize=N (256; rounded down to a power of two, capped by the device)
 *   dst=broadcast|unicast (broadcast)
 *   rxbufs=N (16) receive buffers of 2048 bytes posted on queue 0
 *   pci=auto|conf1|ecam, ecam=ADDR, barbase=ADDR, barend=ADDR (as guest-vblk)
 *   timeout_ms=N (10000) without any completion before giving up
 *   rxwait=N (0) after sending, wait (timeout_ms) until N receive buffers
 *     are used, as an echoing back-end fills them; N <= rxbufs
 *
 * Output: a line describing the device, then
 *   kestrel-guest: vnet done n=N size=S batch=B frames=F tsc_cycles=T
 *     tsc_mhz=M us=U kpps=P mbit_s=R kicks=K rx=X
 *   and with rxwait=: "kestrel-guest: vnet echoed rx_own=O of rx=X"
 * tsc_cycles: from the first frame made available to the last one used;
 * kicks: notify writes the guest made; rx: frames the device put in the
 * receive buffers meanwhile (host chatter, if any). Exit status 0; 1 with
 * a "kestrel-guest: vnet error: ..." line for any failure.
 */
#include "lib/cpu.h"
#include "lib/virtio.h"

#define VIRTIO_NET_MODERN       0x1041
#define VIRTIO_NET_TRANSITIONAL 0x1000

#define NET_HDR_LEN   12u   /* struct virtio_net_hdr with num_buffers (5.1.6) */
#define FRAME_MAX     1514u
#define SLOT_BYTES    2048u /* header + frame, per descriptor */
#define RX_BUF_BYTES  2048u /* >= 1526: 5.1.6.3 without MRG_RXBUF/GUEST_TSO */
#define MAX_QSIZE     1024
#define MAX_RXBUFS    64
#define RXQ 0
#define TXQ 1

struct vnet {
	uint64_t n, size, batch, qsize_want, rxbufs, timeout_ms, rxwait;
	bool unicast;
	char pci_how[8];
	uint64_t ecam, bar_lo, bar_hi;
	uint64_t tsc_hz;
	uint64_t mem_lo, mem_hi;
	/* results (written at CPL3) */
	char err[192];
	uint64_t tsc, done, kicks, rx, len_nonzero, rx_own;
};

static struct vnet vn;
static uint16_t free_ids[MAX_QSIZE];
static bool in_flight[MAX_QSIZE];

extern char __image_end[];

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static void *alloc(struct vnet *b, uint64_t size, uint64_t align)
{
	uint64_t a = align_up(b->mem_lo, align);

	if (a + size > b->mem_hi)
		return NULL;
	b->mem_lo = a + size;
	memset((void *)(uintptr_t)a, 0, size);
	return (void *)(uintptr_t)a;
}

/* Free RAM after the image, inside the write-back part of the map. */
static bool find_ram(struct vnet *b)
{
	const struct hvm_start_info *si = guest_start_info();
	uint64_t lo = align_up((uint64_t)(uintptr_t)__image_end, 2ull << 20);

	if (!si || si->version < 1 || !si->memmap_paddr || !si->memmap_entries)
		return false;
	const struct hvm_memmap_table_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
	for (uint32_t i = 0; i < si->memmap_entries; i++) {
		if (e[i].type != HVM_MEMMAP_TYPE_RAM || e[i].addr > lo || e[i].addr + e[i].size <= lo)
			continue;
		b->mem_lo = lo;
		b->mem_hi = e[i].addr + e[i].size;
		if (b->mem_hi > 0xc0000000ull)
			b->mem_hi = 0xc0000000ull;
		return true;
	}
	return false;
}

static uint16_t pick_qsize(uint64_t want, uint16_t max)
{
	uint64_t s = want < max ? want : max;

	if (s > MAX_QSIZE)
		s = MAX_QSIZE;
	while (s & (s - 1))
		s &= s - 1;
	return (uint16_t)s;
}

/* Header (zero) and frame into one transmit slot. */
static void fill_slot(uint8_t *p, const struct vnet *b)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t ucast[6] = { 0x02, 0, 0, 0, 0, 0x02 };
	static const uint8_t src[6] = { 0x02, 0, 0, 0, 0, 0x01 };
	uint8_t *f = p + NET_HDR_LEN;

	memset(p, 0, NET_HDR_LEN);
	memcpy(f, b->unicast ? ucast : bcast, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x88;
	f[13] = 0xb5;
	for (uint64_t i = 14; i < b->size; i++)
		f[i] = (uint8_t)i;
}

/* Runs at CPL3. Returns 0, or 1 with b->err set. */
static uint64_t vnet_user(uint64_t arg)
{
	struct vnet *b = (struct vnet *)(uintptr_t)arg;
	struct virtio_pci v;
	struct virtq rq, tq;
	uint64_t features;
	int bdf;

	enum pci_method pm = pci_init(b->pci_how, b->ecam);
	if (pm == PCI_NONE) {
		guest_snprintf(b->err, sizeof(b->err), "unknown pci=%s", b->pci_how);
		return 1;
	}
	bdf = pci_find_device(VIRTIO_PCI_VENDOR, VIRTIO_NET_MODERN, -1);
	if (bdf < 0)
		bdf = pci_find_device(VIRTIO_PCI_VENDOR, VIRTIO_NET_TRANSITIONAL, -1);
	if (bdf < 0) {
		guest_snprintf(b->err, sizeof(b->err),
			       "no virtio-net PCI device (1af4:1041) on bus 0 (pci=%s ecam=0x%lx)",
			       pci_method_name(pm), b->ecam);
		return 1;
	}
	if (!virtio_pci_open((unsigned)bdf, b->bar_lo, b->bar_hi, &v, b->err, sizeof(b->err)))
		return 1;
	/* VERSION_1 only: no MRG_RXBUF, no checksum or segmentation offloads. */
	if (!virtio_init_features(&v, 1ull << VIRTIO_F_VERSION_1, &features, b->err, sizeof(b->err)))
		return 1;
	virtio_no_interrupts(&v);

	uint16_t rmax = virtio_queue_max(&v, RXQ), tmax = virtio_queue_max(&v, TXQ);
	uint16_t rsize = pick_qsize(b->rxbufs, rmax);
	uint16_t tsize = pick_qsize(b->qsize_want, tmax);
	if (!rsize || !tsize || b->batch > tsize) {
		guest_snprintf(b->err, sizeof(b->err),
			       "queue sizes: rx %u (max %u), tx %u (max %u), batch=%lu", rsize, rmax,
			       tsize, tmax, b->batch);
		return 1;
	}
	void *rdesc = alloc(b, virtq_desc_bytes(rsize), 4096);
	void *ravail = alloc(b, virtq_avail_bytes(rsize), 4096);
	void *rused = alloc(b, virtq_used_bytes(rsize), 4096);
	uint8_t *rbufs = alloc(b, (uint64_t)rsize * RX_BUF_BYTES, 4096);
	void *tdesc = alloc(b, virtq_desc_bytes(tsize), 4096);
	void *tavail = alloc(b, virtq_avail_bytes(tsize), 4096);
	void *tused = alloc(b, virtq_used_bytes(tsize), 4096);
	uint8_t *slots = alloc(b, (uint64_t)tsize * SLOT_BYTES, 4096);
	if (!rdesc || !ravail || !rused || !rbufs || !tdesc || !tavail || !tused || !slots) {
		guest_snprintf(b->err, sizeof(b->err), "out of RAM for rings and buffers");
		return 1;
	}
	if (!virtio_queue_setup(&v, RXQ, rsize, &rq, rdesc, ravail, rused, b->err, sizeof(b->err)) ||
	    !virtio_queue_setup(&v, TXQ, tsize, &tq, tdesc, tavail, tused, b->err, sizeof(b->err)))
		return 1;

	/* 5.1.5 step 3: receive buffers before DRIVER_OK, device-writable. */
	for (uint16_t i = 0; i < rsize; i++) {
		rq.desc[i] = (struct virtq_desc){ (uint64_t)(uintptr_t)(rbufs + (uint64_t)i * RX_BUF_BYTES),
						  RX_BUF_BYTES, VIRTQ_DESC_F_WRITE, 0 };
		rq.avail->ring[i] = i;
	}
	rq.avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	tq.avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	__asm__ volatile("" : : : "memory");
	*(volatile uint16_t *)&rq.avail->idx = rsize;

	/* One fixed descriptor per transmit slot, device-readable. */
	for (uint16_t i = 0; i < tsize; i++) {
		uint8_t *p = slots + (uint64_t)i * SLOT_BYTES;

		fill_slot(p, b);
		tq.desc[i] = (struct virtq_desc){ (uint64_t)(uintptr_t)p,
						  (uint32_t)(NET_HDR_LEN + b->size), 0, 0 };
		free_ids[i] = i;
	}

	virtio_set_status(&v, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK |
				      VIRTIO_S_DRIVER_OK);
	if (virtio_get_status(&v) & (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED)) {
		guest_snprintf(b->err, sizeof(b->err), "device status 0x%x after DRIVER_OK",
			       virtio_get_status(&v));
		return 1;
	}
	virtq_kick(&rq);

	guest_printf("kestrel-guest: vnet device %02x:%02x.%x id 1af4:%04x pci=%s common=0x%lx "
		     "notify=0x%lx features=0x%lx rx qsize=%u (max %u) tx qsize=%u (max %u)\n",
		     PCI_BDF_BUS(bdf), PCI_BDF_DEV(bdf), PCI_BDF_FN(bdf),
		     pci_read16((unsigned)bdf, PCI_DEVICE_ID), pci_method_name(pm), v.common,
		     tq.notify_addr, features, rsize, rmax, tsize, tmax);

	volatile uint16_t *avail_idx_p = &tq.avail->idx;
	volatile uint16_t *used_idx_p = &tq.used->idx;
	volatile uint16_t *used_flags_p = &tq.used->flags;
	uint16_t avail_idx = 0, used_seen = 0, mask = (uint16_t)(tsize - 1);
	unsigned nfree = tsize;
	uint64_t submitted = 0, done = 0, kicks = 0, counter = 0;
	uint64_t timeout = b->timeout_ms * (b->tsc_hz / 1000);
	uint64_t t0 = rdtsc(), t_last = t0, t_progress = t0;

	for (;;) {
		/* Refill in whole batches (a short one only for the last frames). */
		while (submitted < b->n) {
			uint64_t k = b->n - submitted < b->batch ? b->n - submitted : b->batch;

			if (nfree < k)
				break;
			for (uint64_t j = 0; j < k; j++) {
				uint16_t id = free_ids[--nfree];
				uint8_t *f = slots + (uint64_t)id * SLOT_BYTES + NET_HDR_LEN;

				if (b->size >= 22)
					memcpy(f + 14, &counter, 8);
				counter++;
				in_flight[id] = true;
				tq.avail->ring[avail_idx & mask] = id;
				avail_idx++;
			}
			submitted += k;
			/* Ring entries before the index (x86 keeps stores in order). */
			__asm__ volatile("" : : : "memory");
			*avail_idx_p = avail_idx;
			/* The index must be visible before the device's flag is read (2.7.13). */
			__asm__ volatile("mfence" : : : "memory");
			if (!(*used_flags_p & VIRTQ_USED_F_NO_NOTIFY)) {
				virtq_kick(&tq);
				kicks++;
			}
		}
		if (done == b->n)
			break;

		uint16_t u;
		unsigned spins = 0;
		while ((u = *used_idx_p) == used_seen) {
			cpu_relax();
			if (++spins == 4096) {
				spins = 0;
				if (rdtsc() - t_progress > timeout) {
					guest_snprintf(b->err, sizeof(b->err),
						       "timeout: %lu of %lu frames used, %lu made available, "
						       "used idx %u, avail idx %u, device status 0x%x",
						       done, b->n, submitted, u, avail_idx, virtio_get_status(&v));
					return 1;
				}
			}
		}
		__asm__ volatile("" : : : "memory");
		t_last = t_progress = rdtsc();
		for (; used_seen != u; used_seen++) {
			struct virtq_used_elem e = tq.used->ring[used_seen & mask];

			if (e.id >= tsize || !in_flight[e.id]) {
				guest_snprintf(b->err, sizeof(b->err),
					       "tx used ring entry %u has id %u: not in flight", used_seen, e.id);
				return 1;
			}
			/* 2.7.8: the device writes nothing into a transmit buffer. */
			if (e.len)
				b->len_nonzero++;
			in_flight[e.id] = false;
			free_ids[nfree++] = (uint16_t)e.id;
			done++;
		}
	}

	b->tsc = t_last - t0;
	b->done = done;
	b->kicks = kicks;
	/*
	 * rxwait=N: a back-end that echoes frames fills N receive buffers in
	 * time; rx_own counts those holding one of this guest's frames (its
	 * ethertype), wherever the back-end put the MAC addresses.
	 */
	if (b->rxwait) {
		uint64_t t_rx = rdtsc();

		while (*(volatile uint16_t *)&rq.used->idx < b->rxwait) {
			cpu_relax();
			if (rdtsc() - t_rx > timeout) {
				guest_snprintf(b->err, sizeof(b->err), "timeout: %u of %lu receive buffers used",
					       *(volatile uint16_t *)&rq.used->idx, b->rxwait);
				return 1;
			}
		}
		__asm__ volatile("" : : : "memory");
		for (uint16_t i = 0; i < *(volatile uint16_t *)&rq.used->idx && i < rsize; i++) {
			struct virtq_used_elem e = rq.used->ring[i];
			const uint8_t *f = rbufs + (uint64_t)e.id * RX_BUF_BYTES + NET_HDR_LEN;

			if (e.id < rsize && e.len >= NET_HDR_LEN + 14 && f[12] == 0x88 && f[13] == 0xb5)
				b->rx_own++;
		}
	}
	b->rx = *(volatile uint16_t *)&rq.used->idx;
	virtio_set_status(&v, 0);
	return 0;
}

static bool parse_args(struct vnet *b)
{
	char dst[16] = "broadcast";

	b->n = cmdline_u64("n", 100000);
	b->size = cmdline_u64("size", 64);
	b->batch = cmdline_u64("batch", 32);
	b->qsize_want = cmdline_u64("qsize", 256);
	b->rxbufs = cmdline_u64("rxbufs", 16);
	b->rxwait = cmdline_u64("rxwait", 0);
	b->timeout_ms = cmdline_u64("timeout_ms", 10000);
	b->ecam = cmdline_u64("ecam", 0xe0000000);
	b->bar_lo = cmdline_u64("barbase", 0xc0000000);
	b->bar_hi = cmdline_u64("barend", 0xd0000000);
	if (!cmdline_get("pci", b->pci_how, sizeof(b->pci_how)))
		memcpy(b->pci_how, "auto", 5);
	cmdline_get("dst", dst, sizeof(dst));
	if (!strcmp(dst, "unicast")) {
		b->unicast = true;
	} else if (strcmp(dst, "broadcast")) {
		guest_printf("kestrel-guest: vnet error: dst=%s is not broadcast or unicast\n", dst);
		return false;
	}
	if (b->size < 14 || b->size > FRAME_MAX) {
		guest_printf("kestrel-guest: vnet error: size=%lu must be 14..%u\n", b->size, FRAME_MAX);
		return false;
	}
	if (!b->n || !b->batch || !b->qsize_want || b->qsize_want > 32768 || !b->rxbufs ||
	    b->rxbufs > MAX_RXBUFS) {
		guest_printf("kestrel-guest: vnet error: n, batch, qsize (<= 32768) and rxbufs (<= %u) "
			     "must be positive\n", MAX_RXBUFS);
		return false;
	}
	if (b->rxwait > b->rxbufs) {
		guest_printf("kestrel-guest: vnet error: rxwait=%lu is more than rxbufs=%lu\n", b->rxwait, b->rxbufs);
		return false;
	}
	if (b->bar_hi <= b->bar_lo || b->bar_hi > 0x100000000ull || b->bar_lo < 0xc0000000ull) {
		guest_printf("kestrel-guest: vnet error: BAR window 0x%lx..0x%lx is not inside 3..4 GiB\n",
			     b->bar_lo, b->bar_hi);
		return false;
	}
	return true;
}

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	if (!parse_args(&vn))
		return 1;
	if (!find_ram(&vn)) {
		guest_printf("kestrel-guest: vnet error: no memmap RAM range above the image\n");
		return 1;
	}
	vn.tsc_hz = tsc_hz(); /* at CPL0: it may need kvmclock's MSR */
	guest_printf("kestrel-guest: vnet n=%lu size=%lu batch=%lu qsize=%lu dst=%s\n", vn.n, vn.size,
		     vn.batch, vn.qsize_want, vn.unicast ? "unicast" : "broadcast");
	cpu_setup_traps();
	if (run_user(vnet_user, (uint64_t)(uintptr_t)&vn)) {
		guest_printf("kestrel-guest: vnet error: %s\n", vn.err);
		return 1;
	}

	uint64_t mhz = vn.tsc_hz / 1000000;
	uint64_t us = vn.tsc / (mhz ? mhz : 1);
	uint64_t kpps = us ? vn.done * 1000 / us : 0;
	uint64_t mbit = us ? vn.done * vn.size * 8 / us : 0;

	if (vn.len_nonzero)
		guest_printf("kestrel-guest: vnet note: %lu tx used lengths were not 0\n", vn.len_nonzero);
	guest_printf("kestrel-guest: vnet done n=%lu size=%lu batch=%lu frames=%lu tsc_cycles=%lu "
		     "tsc_mhz=%lu us=%lu kpps=%lu mbit_s=%lu kicks=%lu rx=%lu\n",
		     vn.n, vn.size, vn.batch, vn.done, vn.tsc, mhz, us, kpps, mbit, vn.kicks, vn.rx);
	if (vn.rxwait)
		guest_printf("kestrel-guest: vnet echoed rx_own=%lu of rx=%lu\n", vn.rx_own, vn.rx);
	return 0;
}

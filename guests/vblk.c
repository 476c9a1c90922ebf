/* SPDX-License-Identifier: MIT */
/*
 * guest-vblk: virtio-blk benchmark driver. Finds a modern virtio-blk PCI
 * function (1af4:1042; a transitional 1af4:1001 with the modern
 * capabilities also does) on bus 0, assigns its BARs if no firmware did,
 * brings it up with VERSION_1 (and EVENT_IDX if asked) and one queue, and
 * then keeps `qd` requests in flight until `n` are done: polling the used
 * ring, with no interrupts (MSI-X on, every vector NO_VECTOR), kicking
 * through the notify address (an ioeventfd in kestrel: no exit).
 *
 * Everything after the IDT/TSS setup runs at CPL3 (native speed on the
 * development host; CPL0 is emulated there), including PCI enumeration.
 *
 * Cmdline:
 *   mode=randread|randwrite|seqread|seqwrite (randread)
 *   bs=BYTES (4096; a multiple of 512, at most 1 MiB)
 *   qd=N (32; requests in flight, at most qsize/3: 3 descriptors each)
 *   n=COUNT (10000) requests in total
 *   qsize=N (128; rounded down to a power of two, capped by the device)
 *   eventidx=0|1 (0; 1 negotiates VIRTIO_F_EVENT_IDX and kicks only when
 *     the device's avail_event asks for it)
 *   seed=N (1) for the random offsets
 *   pci=auto|conf1|ecam (auto: conf1 if present, else ECAM) ecam=ADDR
 *     (0xe0000000) barbase=ADDR (0xc0000000) barend=ADDR (0xd0000000)
 *   timeout_ms=N (10000) without any completion before giving up
 *
 * Output: a line describing the device, then
 *   kestrel-guest: vblk done mode=M n=N bs=B qd=Q requests=N tsc=T
 *     tsc_mhz=F us=U iops=I kib_s=K kicks=K
 * where tsc is the TSC cycles from the first submission to the last
 * completion and kicks the notify writes the guest made. Exit status 0;
 * 1 with a "kestrel-guest: vblk error: ..." line for any failure (no
 * device, a status byte that is not VIRTIO_BLK_S_OK, a timeout, ...).
 */
#include "lib/cpu.h"
#include "lib/virtio.h"

#define VIRTIO_BLK_MODERN       0x1042
#define VIRTIO_BLK_TRANSITIONAL 0x1001

/* 5.2.6 */
#define VIRTIO_BLK_T_IN  0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_S_OK  0
#define SECTOR 512u

#define MAX_QD    256
#define MAX_QSIZE 1024
#define MAX_BS    (1u << 20)

enum mode { RANDREAD, RANDWRITE, SEQREAD, SEQWRITE };
static const char *const mode_names[] = { "randread", "randwrite", "seqread", "seqwrite" };

/* Device-readable header and device-writable status of one request. */
struct blk_req {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
	uint8_t status;
	uint8_t pad[15];
};
_Static_assert(sizeof(struct blk_req) == 32, "blk_req layout");

struct vblk {
	/* parameters */
	enum mode mode;
	bool write, random;
	uint64_t n, bs, qd, qsize_want, seed, timeout_ms;
	bool eventidx;
	char pci_how[8];
	uint64_t ecam, bar_lo, bar_hi;
	uint64_t tsc_hz;
	/* RAM for rings and buffers */
	uint64_t mem_lo, mem_hi;
	/* results (written at CPL3) */
	char err[192];
	uint64_t tsc, done, kicks, len_mismatch;
};

static struct vblk vb;
static struct blk_req reqs[MAX_QD] __attribute__((aligned(64)));
static bool in_flight[MAX_QD];

extern char __image_end[];

static uint64_t rng_state;

static uint64_t rng_next(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Bump allocation from [mem_lo, mem_hi), zeroed. */
static void *alloc(struct vblk *b, uint64_t size, uint64_t align)
{
	uint64_t a = align_up(b->mem_lo, align);

	if (a + size > b->mem_hi)
		return NULL;
	b->mem_lo = a + size;
	memset((void *)(uintptr_t)a, 0, size);
	return (void *)(uintptr_t)a;
}

/* Free RAM after the image: the memmap RAM range that holds the 2 MiB
 * boundary above it. */
static bool find_ram(struct vblk *b)
{
	const struct hvm_start_info *si = guest_start_info();
	uint64_t lo = align_up((uint64_t)(uintptr_t)__image_end, 2ull << 20);

	if (!si || si->version < 1 || !si->memmap_paddr || !si->memmap_entries)
		return false;
	const struct hvm_memmap_table_entry *e =
		(const void *)(uintptr_t)si->memmap_paddr;
	for (uint32_t i = 0; i < si->memmap_entries; i++) {
		if (e[i].type != HVM_MEMMAP_TYPE_RAM || e[i].addr > lo ||
		    e[i].addr + e[i].size <= lo)
			continue;
		b->mem_lo = lo;
		b->mem_hi = e[i].addr + e[i].size;
		if (b->mem_hi > 0xc0000000ull)
			b->mem_hi = 0xc0000000ull; /* stay in the write-back part of the map */
		return true;
	}
	return false;
}

static uint64_t read_capacity(struct virtio_pci *v)
{
	uint32_t lo, hi;
	uint8_t gen;

	/* 4.1.3.1 / 2.5.1: re-read until the configuration generation is stable. */
	do {
		gen = virtio_config_generation(v);
		lo = mmio_read32(v->device);
		hi = mmio_read32(v->device + 4);
	} while (gen != virtio_config_generation(v));
	return ((uint64_t)hi << 32) | lo;
}

static uint64_t next_sector(struct vblk *b, uint64_t capacity, uint64_t *seq)
{
	uint64_t per = b->bs / SECTOR;

	if (b->random)
		return (rng_next() % (capacity / per)) * per;
	if (*seq + per > capacity)
		*seq = 0;
	uint64_t s = *seq;
	*seq += per;
	return s;
}

/* Runs at CPL3. Returns 0, or 1 with b->err set. */
static uint64_t vblk_user(uint64_t arg)
{
	struct vblk *b = (struct vblk *)(uintptr_t)arg;
	struct virtio_pci v;
	struct virtq q;
	uint64_t features, capacity, seq = 0;
	uint16_t qmax, qsize;
	int bdf;

	enum pci_method pm = pci_init(b->pci_how, b->ecam);
	if (pm == PCI_NONE) {
		guest_snprintf(b->err, sizeof(b->err), "unknown pci=%s", b->pci_how);
		return 1;
	}
	bdf = pci_find_device(VIRTIO_PCI_VENDOR, VIRTIO_BLK_MODERN, -1);
	if (bdf < 0)
		bdf = pci_find_device(VIRTIO_PCI_VENDOR, VIRTIO_BLK_TRANSITIONAL, -1);
	if (bdf < 0) {
		guest_snprintf(b->err, sizeof(b->err),
			       "no virtio-blk PCI device (1af4:1042) on bus 0 (pci=%s ecam=0x%lx)",
			       pci_method_name(pm), b->ecam);
		return 1;
	}
	if (!virtio_pci_open((unsigned)bdf, b->bar_lo, b->bar_hi, &v, b->err, sizeof(b->err)))
		return 1;
	if (v.device_len < 8) {
		guest_snprintf(b->err, sizeof(b->err), "no device configuration (capacity)");
		return 1;
	}

	uint64_t want = 1ull << VIRTIO_F_VERSION_1;
	if (b->eventidx)
		want |= 1ull << VIRTIO_F_EVENT_IDX;
	if (!virtio_init_features(&v, want, &features, b->err, sizeof(b->err)))
		return 1;
	if (b->eventidx && !(features & (1ull << VIRTIO_F_EVENT_IDX))) {
		guest_snprintf(b->err, sizeof(b->err), "eventidx=1 but the device lacks EVENT_IDX");
		return 1;
	}
	virtio_no_interrupts(&v);

	qmax = virtio_queue_max(&v, 0);
	qsize = (uint16_t)(b->qsize_want < qmax ? b->qsize_want : qmax);
	if (qsize > MAX_QSIZE)
		qsize = MAX_QSIZE;
	while (qsize & (qsize - 1))
		qsize &= (uint16_t)(qsize - 1);
	if (!qsize || b->qd * 3 > qsize) {
		guest_snprintf(b->err, sizeof(b->err), "qd=%lu needs %lu descriptors; queue size %u (max %u)",
			       b->qd, b->qd * 3, qsize, qmax);
		return 1;
	}

	struct virtq_desc *desc = alloc(b, virtq_desc_bytes(qsize), 4096);
	void *avail = alloc(b, virtq_avail_bytes(qsize), 4096);
	void *used = alloc(b, virtq_used_bytes(qsize), 4096);
	uint8_t *data = alloc(b, b->qd * b->bs, 4096);
	if (!desc || !avail || !used || !data) {
		guest_snprintf(b->err, sizeof(b->err), "out of RAM for rings and %lu x %lu bytes of buffers",
			       b->qd, b->bs);
		return 1;
	}
	if (!virtio_queue_setup(&v, 0, qsize, &q, desc, avail, used, b->err, sizeof(b->err)))
		return 1;
	virtio_set_status(&v, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK |
				      VIRTIO_S_DRIVER_OK);
	if (virtio_get_status(&v) & (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED)) {
		guest_snprintf(b->err, sizeof(b->err), "device status 0x%x after DRIVER_OK",
			       virtio_get_status(&v));
		return 1;
	}

	capacity = read_capacity(&v);
	guest_printf("kestrel-guest: vblk device %02x:%02x.%x id 1af4:%04x pci=%s common=0x%lx "
		     "notify=0x%lx mult=%u capacity=%lu sectors features=0x%lx qsize=%u (max %u)\n",
		     PCI_BDF_BUS(bdf), PCI_BDF_DEV(bdf), PCI_BDF_FN(bdf),
		     pci_read16((unsigned)bdf, PCI_DEVICE_ID), pci_method_name(pm), v.common,
		     q.notify_addr, v.notify_mult, capacity, features, qsize, qmax);
	if (capacity * SECTOR < b->bs) {
		guest_snprintf(b->err, sizeof(b->err), "disk of %lu sectors is smaller than bs=%lu",
			       capacity, b->bs);
		return 1;
	}

	/* One fixed chain per slot: header (out), data (in or out), status (in). */
	for (unsigned s = 0; s < b->qd; s++) {
		struct virtq_desc *d = &desc[3 * s];

		d[0] = (struct virtq_desc){ (uint64_t)(uintptr_t)&reqs[s], 16, VIRTQ_DESC_F_NEXT,
					    (uint16_t)(3 * s + 1) };
		d[1] = (struct virtq_desc){ (uint64_t)(uintptr_t)(data + s * b->bs), (uint32_t)b->bs,
					    (uint16_t)(VIRTQ_DESC_F_NEXT | (b->write ? 0 : VIRTQ_DESC_F_WRITE)),
					    (uint16_t)(3 * s + 2) };
		d[2] = (struct virtq_desc){ (uint64_t)(uintptr_t)&reqs[s].status, 1, VIRTQ_DESC_F_WRITE, 0 };
		if (b->write)
			memset(data + s * b->bs, 0xa0 + (int)(s & 0xf), b->bs);
	}

	volatile uint16_t *avail_idx_p = &q.avail->idx;
	volatile uint16_t *used_idx_p = &q.used->idx;
	volatile uint16_t *used_flags_p = &q.used->flags;
	uint16_t avail_idx = 0, used_seen = 0, mask = (uint16_t)(qsize - 1);
	uint32_t expect_len = b->write ? 1 : (uint32_t)b->bs + 1;
	uint64_t submitted = 0, done = 0, kicks = 0;
	uint64_t timeout = b->timeout_ms * (b->tsc_hz / 1000);

	if (!b->eventidx)
		q.avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	else
		*virtq_used_event(&q) = 0x8000; /* far ahead of the used index: no interrupts */

	uint64_t t0 = rdtsc(), t_last = t0, t_progress = t0;
	uint16_t old_idx = avail_idx;
	bool first = true;

	for (;;) {
		/* Refill: every free slot gets a new request (the first pass fills all qd). */
		if (first) {
			for (unsigned s = 0; s < b->qd && submitted < b->n; s++, submitted++) {
				reqs[s].type = b->write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
				reqs[s].sector = next_sector(b, capacity, &seq);
				reqs[s].status = 0xff;
				in_flight[s] = true;
				q.avail->ring[avail_idx & mask] = (uint16_t)(3 * s);
				avail_idx++;
			}
			first = false;
			t0 = t_progress = rdtsc();
		}
		if (avail_idx != old_idx) {
			__asm__ volatile("" : : : "memory"); /* ring entries before the index (x86: stores in order) */
			*avail_idx_p = avail_idx;
			/* The index store must be visible before the suppression field is read. */
			__asm__ volatile("mfence" : : : "memory");
			bool kick = b->eventidx ? virtq_need_event(*virtq_avail_event(&q), avail_idx, old_idx)
						: !(*used_flags_p & VIRTQ_USED_F_NO_NOTIFY);
			if (kick) {
				virtq_kick(&q);
				kicks++;
			}
			old_idx = avail_idx;
		}
		if (done == b->n)
			break;

		/* Poll the used ring. */
		uint16_t u;
		unsigned spins = 0;
		while ((u = *used_idx_p) == used_seen) {
			cpu_relax();
			if (++spins == 4096) {
				spins = 0;
				if (rdtsc() - t_progress > timeout) {
					guest_snprintf(b->err, sizeof(b->err),
						       "timeout: %lu of %lu requests done, %lu submitted, "
						       "used idx %u, avail idx %u, device status 0x%x",
						       done, b->n, submitted, u, avail_idx, virtio_get_status(&v));
					return 1;
				}
			}
		}
		__asm__ volatile("" : : : "memory"); /* ring entries after the index (x86: loads in order) */
		t_last = t_progress = rdtsc();
		for (; used_seen != u; used_seen++) {
			struct virtq_used_elem e = q.used->ring[used_seen & mask];
			unsigned s = e.id / 3;

			if (e.id % 3 || s >= b->qd || !in_flight[s]) {
				guest_snprintf(b->err, sizeof(b->err), "used ring entry %u has id %u: not in flight",
					       used_seen, e.id);
				return 1;
			}
			in_flight[s] = false;
			if (reqs[s].status != VIRTIO_BLK_S_OK) {
				guest_snprintf(b->err, sizeof(b->err),
					       "request %lu (%s sector %lu) ended with status %u", done,
					       b->write ? "write" : "read", reqs[s].sector, reqs[s].status);
				return 1;
			}
			if (e.len != expect_len)
				b->len_mismatch++;
			done++;
			if (submitted < b->n) {
				reqs[s].sector = next_sector(b, capacity, &seq);
				reqs[s].status = 0xff;
				in_flight[s] = true;
				q.avail->ring[avail_idx & mask] = (uint16_t)(3 * s);
				avail_idx++;
				submitted++;
			}
		}
		if (b->eventidx)
			/* Keep used_event half the index space ahead: the device never crosses it. */
			*virtq_used_event(&q) = (uint16_t)(used_seen + 0x8000);
	}

	b->tsc = t_last - t0;
	b->done = done;
	b->kicks = kicks;
	/* Leave the device quiet: a reset stops it touching the rings. */
	virtio_set_status(&v, 0);
	return 0;
}

static bool parse_args(struct vblk *b)
{
	char mode[16] = "randread";
	unsigned m;

	cmdline_get("mode", mode, sizeof(mode));
	for (m = 0; m < 4 && strcmp(mode, mode_names[m]); m++)
		;
	if (m == 4) {
		guest_printf("kestrel-guest: vblk error: unknown mode=%s\n", mode);
		return false;
	}
	b->mode = (enum mode)m;
	b->write = b->mode == RANDWRITE || b->mode == SEQWRITE;
	b->random = b->mode == RANDREAD || b->mode == RANDWRITE;
	b->bs = cmdline_u64("bs", 4096);
	b->qd = cmdline_u64("qd", 32);
	b->n = cmdline_u64("n", 10000);
	b->qsize_want = cmdline_u64("qsize", 128);
	b->eventidx = cmdline_u64("eventidx", 0) != 0;
	b->seed = cmdline_u64("seed", 1);
	b->timeout_ms = cmdline_u64("timeout_ms", 10000);
	b->ecam = cmdline_u64("ecam", 0xe0000000);
	b->bar_lo = cmdline_u64("barbase", 0xc0000000);
	b->bar_hi = cmdline_u64("barend", 0xd0000000);
	if (!cmdline_get("pci", b->pci_how, sizeof(b->pci_how)))
		memcpy(b->pci_how, "auto", 5);
	if (!b->bs || b->bs % SECTOR || b->bs > MAX_BS) {
		guest_printf("kestrel-guest: vblk error: bs=%lu must be a multiple of 512 up to %u\n",
			     b->bs, MAX_BS);
		return false;
	}
	if (!b->qd || b->qd > MAX_QD) {
		guest_printf("kestrel-guest: vblk error: qd=%lu must be 1..%u\n", b->qd, MAX_QD);
		return false;
	}
	if (!b->n || !b->qsize_want || b->qsize_want > 32768) {
		guest_printf("kestrel-guest: vblk error: n and qsize (<= 32768) must be positive\n");
		return false;
	}
	if (b->bar_hi <= b->bar_lo || b->bar_hi > 0x100000000ull || b->bar_lo < 0xc0000000ull) {
		guest_printf("kestrel-guest: vblk error: BAR window 0x%lx..0x%lx is not inside 3..4 GiB\n",
			     b->bar_lo, b->bar_hi);
		return false;
	}
	return true;
}

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	if (!parse_args(&vb))
		return 1;
	if (!find_ram(&vb)) {
		guest_printf("kestrel-guest: vblk error: no memmap RAM range above the image\n");
		return 1;
	}
	rng_state = vb.seed ? vb.seed : 1;
	vb.tsc_hz = tsc_hz(); /* at CPL0: it may need kvmclock's MSR */
	guest_printf("kestrel-guest: vblk mode=%s n=%lu bs=%lu qd=%lu qsize=%lu eventidx=%u\n",
		     mode_names[vb.mode], vb.n, vb.bs, vb.qd, vb.qsize_want, vb.eventidx ? 1 : 0);
	cpu_setup_traps();
	if (run_user(vblk_user, (uint64_t)(uintptr_t)&vb)) {
		guest_printf("kestrel-guest: vblk error: %s\n", vb.err);
		return 1;
	}

	uint64_t mhz = vb.tsc_hz / 1000000;
	uint64_t us = vb.tsc / (mhz ? mhz : 1);
	uint64_t iops = us ? vb.done * 1000000 / us : 0;
	uint64_t kib_s = us ? vb.done * vb.bs / 1024 * 1000000 / us : 0;

	if (vb.len_mismatch)
		guest_printf("kestrel-guest: vblk note: %lu used lengths differ from %lu\n",
			     vb.len_mismatch, vb.write ? 1ul : vb.bs + 1);
	guest_printf("kestrel-guest: vblk done mode=%s n=%lu bs=%lu qd=%lu requests=%lu tsc=%lu "
		     "tsc_mhz=%lu us=%lu iops=%lu kib_s=%lu kicks=%lu\n",
		     mode_names[vb.mode], vb.n, vb.bs, vb.qd, vb.done, vb.tsc, mhz, us, iops, kib_s,
		     vb.kicks);
	return 0;
}

/*
 * Pause and snapshot state of the virtio layer: queues saved mid-way and
 * loaded into fresh ones, virtio-pci (MSI-X, ISR/INTx, config space) and
 * virtio-mmio carried over to a freshly built function, blk completing what
 * is in flight when paused and refusing a different image, net giving back a
 * half-delivered frame's chains and delivering it after a restore, corrupted
 * sections refused without touching the target, and I/O threads that start
 * again after a stop. Guest RAM is shared between the "old" and "new"
 * device, as a restore maps the memory file.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "pci/pci.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "loop/iothread.h"
#include "loop/loop.h"
#include "snapshot/snap.h"
#include "virtio/mmio.h"
#include "virtio/pci.h"
#include "vring_driver.h"
#include "fakes.h"

/* ---- snapshot plumbing: write sections to a file, read them back ---- */

static struct snap_reader *reader_of(struct snap_writer *w)
{
	struct snap_reader *r = calloc(1, sizeof(*r));
	char path[] = "/tmp/kestrel-vstate-XXXXXX", err[256] = "";
	int fd = mkstemp(path);

	assert_non_null(r);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(snap_writer_save(w, path, err, sizeof(err)), 0);
	assert_int_equal(snap_reader_open(r, path, err, sizeof(err)), 0);
	unlink(path);
	snap_writer_free(w);
	return r;
}

static void reader_free(struct snap_reader *r)
{
	snap_reader_free(r);
	free(r);
}

static struct snap_sec find(const struct snap_reader *r, const char *name)
{
	struct snap_sec s;

	assert_int_equal(snap_find(r, name, &s), 0);
	return s;
}

/* A writable copy of a section, for corrupting it. */
static struct snap_sec sec_copy(const struct snap_sec *s, uint8_t **buf)
{
	struct snap_sec c = *s;

	*buf = malloc(s->len ? s->len : 1);
	assert_non_null(*buf);
	memcpy(*buf, s->p, s->len);
	c.p = *buf;
	c.off = 0;
	c.err = false;
	return c;
}

/* Refused sections are logged by the PCI layer; keep hundreds of those out of the test output. */
static int quiet_begin(void)
{
	int saved = dup(2), null = open("/dev/null", O_WRONLY);

	assert_true(saved >= 0 && null >= 0);
	dup2(null, 2);
	close(null);
	return saved;
}

static void quiet_end(int saved)
{
	dup2(saved, 2);
	close(saved);
}

/* ---- queues ---- */

static uint16_t post_in(struct vrd *d, uint32_t len)
{
	struct vrd_buf b = vrd_buf_data(d, NULL, len, true);
	uint16_t head = vrd_add_chain(d, &b, 1);

	vrd_publish(d, head);
	return head;
}

static void test_queue_midway(void **state)
{
	static struct vq_elem e;
	struct vrd d;
	struct virtq vq, fresh;
	struct snap_writer w;
	struct snap_reader *r;
	struct snap_sec s;
	uint16_t heads[4];
	uint32_t id, len;

	assert_int_equal(vrd_init(&d, 8), 0);
	assert_int_equal(vrd_setup_vq(&d, &vq, true, true), 0);
	vrd_start_at(&d, &vq, 0xfffe);     /* the indices wrap while the test runs */
	for (unsigned i = 0; i < 4; i++)
		heads[i] = post_in(&d, 64);
	/* Two requests used, two still available. */
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(vq_pop(&vq, &e), 0);
		assert_int_equal(e.head, heads[i]);
		vq_push(&vq, e.head, 64);
	}
	assert_true(vq_need_notify(&vq));

	snap_writer_init(&w);
	snap_begin(&w, "vq", 1);
	vq_save(&vq, &w);
	snap_end(&w);
	r = reader_of(&w);
	s = find(r, "vq");

	memset(&fresh, 0, sizeof(fresh));
	fresh.max_size = VQ_MAX_SIZE;
	assert_int_equal(vq_load(&fresh, &s, &d.gm), 0);
	assert_int_equal(snap_sec_end(&s), 0);
	assert_true(fresh.gm == &d.gm);
	assert_int_equal(fresh.size, 8);
	assert_int_equal(fresh.last_avail, vq.last_avail);
	assert_int_equal(fresh.used_idx, vq.used_idx);
	assert_int_equal(fresh.signalled_used, vq.signalled_used);
	assert_true(fresh.signalled_used_valid && fresh.event_idx && fresh.indirect && fresh.enabled);

	/* The new queue carries on exactly: the third request next, the used index continues. */
	assert_int_equal(vq_pop(&fresh, &e), 0);
	assert_int_equal(e.head, heads[2]);
	vq_push(&fresh, e.head, 7);
	assert_int_equal(vrd_used_idx(&d), (uint16_t)(0xfffe + 3));
	for (unsigned i = 0; i < 3; i++) {
		assert_true(vrd_get_used(&d, &id, &len));
		assert_int_equal(id, heads[i]);
		assert_int_equal(len, i < 2 ? 64 : 7);
	}
	assert_false(vrd_get_used(&d, &id, &len));
	assert_int_equal(vq_pop(&fresh, &e), 0);
	assert_int_equal(e.head, heads[3]);
	assert_int_equal(vq_pop(&fresh, &e), -ENOENT);
	reader_free(r);
	vrd_exit(&d);
}

static void test_queue_load_refuses(void **state)
{
	/* Byte offsets of a saved queue's fields. */
	enum { SIZE = 0, DESC = 5, ARMED = 29, LAST_AVAIL = 32, LEN = 40 };
	struct vrd d;
	struct virtq vq, idle, target, before;
	struct snap_writer w;
	struct snap_reader *r;
	struct snap_sec s, c;
	uint8_t *buf;

	assert_int_equal(vrd_init(&d, 8), 0);
	assert_int_equal(vrd_setup_vq(&d, &vq, false, false), 0);
	memset(&idle, 0, sizeof(idle));
	idle.max_size = 8;
	idle.size = 8;
	snap_writer_init(&w);
	snap_begin(&w, "armed", 1);
	vq_save(&vq, &w);
	snap_end(&w);
	snap_begin(&w, "idle", 1);
	vq_save(&idle, &w);
	snap_end(&w);
	r = reader_of(&w);

	memset(&target, 0, sizeof(target));
	target.max_size = 8;
	target.size = 4;
	target.last_avail = 3;
	before = target;

	s = find(r, "armed");
	assert_int_equal(s.len, LEN);
	/* Every truncation. */
	for (size_t n = 0; n < s.len; n++) {
		c = sec_copy(&s, &buf);
		c.len = n;
		assert_int_equal(vq_load(&target, &c, &d.gm), -EINVAL);
		assert_memory_equal(&target, &before, sizeof(target));
		free(buf);
	}
	/* A size that is not a power of two, or beyond max_size, for an armed queue. */
	for (unsigned k = 0; k < 3; k++) {
		static const uint16_t bad[] = { 6, 16, 0 };

		c = sec_copy(&s, &buf);
		buf[SIZE] = (uint8_t)bad[k];
		buf[SIZE + 1] = 0;
		assert_int_equal(vq_load(&target, &c, &d.gm), -EINVAL);
		assert_true(c.err);
		assert_memory_equal(&target, &before, sizeof(target));
		free(buf);
	}
	/* Rings outside guest RAM, or misaligned. */
	c = sec_copy(&s, &buf);
	buf[DESC + 3] = 0x7f;
	assert_int_equal(vq_load(&target, &c, &d.gm), -EINVAL);
	free(buf);
	c = sec_copy(&s, &buf);
	buf[DESC] |= 8;
	assert_int_equal(vq_load(&target, &c, &d.gm), -EINVAL);
	free(buf);
	/* A bool that is not 0/1. */
	c = sec_copy(&s, &buf);
	buf[ARMED] = 2;
	assert_int_equal(vq_load(&target, &c, &d.gm), -EINVAL);
	free(buf);
	assert_memory_equal(&target, &before, sizeof(target));
	/* The real thing loads. */
	c = sec_copy(&s, &buf);
	assert_int_equal(vq_load(&target, &c, &d.gm), 0);
	assert_true(target.gm == &d.gm);
	free(buf);

	/* A queue never activated: any size is a register value, but no device-side state. */
	target = before;
	s = find(r, "idle");
	c = sec_copy(&s, &buf);
	assert_int_equal(vq_load(&target, &c, &d.gm), 0);
	assert_null(target.gm);
	assert_int_equal(target.last_avail, 0);
	free(buf);
	c = sec_copy(&s, &buf);
	buf[LAST_AVAIL] = 1;
	target = before;
	assert_int_equal(vq_load(&target, &c, &d.gm), -EINVAL);
	assert_memory_equal(&target, &before, sizeof(target));
	free(buf);
	reader_free(r);
	vrd_exit(&d);
}

static void test_queue_unpop_and_dirty(void **state)
{
	static struct vq_elem e;
	struct vrd d;
	struct virtq vq;
	uint16_t h0, h1;
	uint64_t page;

	assert_int_equal(vrd_init(&d, 8), 0);
	assert_int_equal(gm_dirty_track(&d.gm, true), 0);
	assert_int_equal(vrd_setup_vq(&d, &vq, true, false), 0);
	/* A writable buffer on a page of its own, far from the rings. */
	d.data_next = d.ram_gpa + (1u << 20);
	h0 = post_in(&d, 100);
	h1 = post_in(&d, 100);
	memset(d.gm.dirty, 0, d.gm.dirty_words * sizeof(uint64_t));

	assert_int_equal(vq_pop(&vq, &e), 0);
	assert_int_equal(e.head, h0);
	page = (e.gpa[0] - d.ram_gpa) >> 12;
	assert_true(d.gm.dirty[page / 64] & (1ull << (page % 64)));        /* marked at pop */
	assert_int_equal(vq_pop(&vq, &e), 0);
	assert_int_equal(e.head, h1);
	/* Give the second back: the next pop returns it again. */
	vq_unpop(&vq, 1);
	assert_int_equal(vq_pop(&vq, &e), 0);
	assert_int_equal(e.head, h1);
	assert_int_equal(vq_pop(&vq, &e), -ENOENT);

	memset(d.gm.dirty, 0, d.gm.dirty_words * sizeof(uint64_t));
	vq_push(&vq, h0, 1);
	page = (d.used_gpa - d.ram_gpa) >> 12;
	assert_true(d.gm.dirty[page / 64] & (1ull << (page % 64)));        /* used ring written */
	assert_int_equal(gm_dirty_track(&d.gm, false), 0);
	vrd_exit(&d);
}

/* ---- virtio-pci ---- */

#define BAR0 0xc0000000ull
#define BAR2 0xc0010000ull
#define SLOT 1

static void intx_set(struct irq *irq, bool level)
{
}

static const struct irq_ops intx_ops = { .set_level = intx_set };

struct pfx {
	struct bus pio, mmio;
	struct pci_host host;
	struct fake_msi fm;
	struct msi_host msi;
	struct loop *loop;
	struct virtio_rng rng;
	struct virtio_pci vp;
};

/* A machine with one virtio-rng on PCI over `d`'s RAM; `place_bars`: what firmware does. */
static struct pfx *pfx_new(struct vrd *d, bool place_bars)
{
	struct pfx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(bus_init(&f->pio, "pio"), 0);
	assert_int_equal(bus_init(&f->mmio, "mmio"), 0);
	assert_int_equal(pci_host_init(&f->host, &f->pio, &f->mmio, NULL), 0);
	f->fm.next_gsi = 24;
	f->msi = (struct msi_host){ &fake_msi_ops, &f->fm };
	f->loop = loop_new();
	assert_non_null(f->loop);
	rng_init(&f->rng, &d->gm);
	assert_int_equal(virtio_pci_init(&f->vp, &f->rng.vdev, &f->msi, f->loop), 0);
	f->vp.intx = (struct irq){ .ops = &intx_ops };
	assert_int_equal(pci_host_add(&f->host, &f->vp.pci, 1), SLOT);
	if (place_bars) {
		pci_host_cfg_write(&f->host, 0, SLOT, 0, PCI_BAR0, 4, (uint32_t)BAR0);
		pci_host_cfg_write(&f->host, 0, SLOT, 0, PCI_BAR0 + 4, 4, 0);
		pci_host_cfg_write(&f->host, 0, SLOT, 0, PCI_BAR0 + 8, 4, (uint32_t)BAR2);
		pci_host_cfg_write(&f->host, 0, SLOT, 0, PCI_BAR0 + 12, 4, 0);
		pci_host_cfg_write(&f->host, 0, SLOT, 0, PCI_COMMAND, 2, PCI_CMD_MEM | PCI_CMD_MASTER);
	}
	return f;
}

static void pfx_free(struct pfx *f)
{
	virtio_pci_exit(&f->vp);
	loop_free(f->loop);
	pci_host_exit(&f->host);
	bus_exit(&f->pio);
	bus_exit(&f->mmio);
	free(f);
}

static uint32_t cfg_rd(struct pfx *f, unsigned off, unsigned size)
{
	return pci_host_cfg_read(&f->host, 0, SLOT, 0, off, size);
}

static void cfg_wr(struct pfx *f, unsigned off, unsigned size, uint32_t v)
{
	pci_host_cfg_write(&f->host, 0, SLOT, 0, off, size, v);
}

static uint64_t mm_rd(struct pfx *f, uint64_t a, unsigned size)
{
	uint64_t v;

	assert_int_equal(bus_read(&f->mmio, a, size, &v), 0);
	return v;
}

static void mm_wr(struct pfx *f, uint64_t a, unsigned size, uint64_t v)
{
	assert_int_equal(bus_write(&f->mmio, a, size, v), 0);
}

enum { DFSEL = 0, DF = 4, GFSEL = 8, GF = 0xc, MSIXCFG = 0x10, NUMQ = 0x12, STATUS = 0x14, CFGGEN = 0x15,
       QSEL = 0x16, QSIZE = 0x18, QMSIX = 0x1a, QEN = 0x1c, QNOFF = 0x1e, QDESC = 0x20,
       QAVAIL = 0x28, QUSED = 0x30 };

static unsigned msix_cap(struct pfx *f)
{
	for (unsigned p = cfg_rd(f, PCI_CAP_PTR, 1); p; p = cfg_rd(f, p + 1, 1))
		if (cfg_rd(f, p, 1) == 0x11)
			return p;
	return 0;
}

/* The driver's bring-up: EVENT_IDX, queue 0 on vector 1 and config on vector 0 (MSI-X), or INTx. */
static void bring_up(struct pfx *f, struct vrd *d, bool msix)
{
	mm_wr(f, BAR0 + STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mm_wr(f, BAR0 + GFSEL, 4, 1);
	mm_wr(f, BAR0 + GF, 4, 1);                 /* VERSION_1 */
	mm_wr(f, BAR0 + GFSEL, 4, 0);
	mm_wr(f, BAR0 + GF, 4, 1u << VIRTIO_F_EVENT_IDX);
	mm_wr(f, BAR0 + STATUS, 1, 0x0b);
	if (msix) {
		for (unsigned v = 0; v < 2; v++) {
			mm_wr(f, BAR2 + v * 16, 4, 0xfee00000 + 0x1000 * v);
			mm_wr(f, BAR2 + v * 16 + 4, 4, 0);
			mm_wr(f, BAR2 + v * 16 + 8, 4, 0x40 + v);
			mm_wr(f, BAR2 + v * 16 + 12, 4, 0);
		}
		cfg_wr(f, msix_cap(f) + 2, 2, 0x8000);
		mm_wr(f, BAR0 + MSIXCFG, 2, 0);
	}
	mm_wr(f, BAR0 + QSEL, 2, 0);
	mm_wr(f, BAR0 + QSIZE, 2, d->size);
	mm_wr(f, BAR0 + QDESC, 8, d->desc_gpa);
	mm_wr(f, BAR0 + QAVAIL, 8, d->avail_gpa);
	mm_wr(f, BAR0 + QUSED, 8, d->used_gpa);
	if (msix)
		mm_wr(f, BAR0 + QMSIX, 2, 1);
	mm_wr(f, BAR0 + QEN, 2, 1);
	mm_wr(f, BAR0 + STATUS, 1, 0x0f);
	assert_int_equal(mm_rd(f, BAR0 + STATUS, 1), 0x0f);
}

static uint64_t drain(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

/* What a driver can read without side effects: common config (all queues), MSI-X table and PBA, config space. */
struct pci_view {
	uint64_t common[2][16];
	uint32_t table[2][4];
	uint64_t pba;
	uint32_t cfg[64];
};

static void pci_view(struct pfx *f, struct pci_view *v)
{
	static const unsigned off[16] = { DFSEL, DF, GFSEL, GF, MSIXCFG, NUMQ, STATUS, CFGGEN, QSEL, QSIZE,
					  QMSIX, QEN, QNOFF, QDESC, QAVAIL, QUSED };
	static const unsigned size[16] = { 4, 4, 4, 4, 2, 2, 1, 1, 2, 2, 2, 2, 2, 8, 8, 8 };
	uint64_t qsel = mm_rd(f, BAR0 + QSEL, 2);

	memset(v, 0, sizeof(*v));
	for (unsigned q = 0; q < 2; q++) {         /* queue 1 does not exist: reads as absent */
		mm_wr(f, BAR0 + QSEL, 2, q);
		for (unsigned i = 0; i < 16; i++)
			v->common[q][i] = mm_rd(f, BAR0 + off[i], size[i]);
	}
	mm_wr(f, BAR0 + QSEL, 2, qsel);
	for (unsigned e = 0; e < 2; e++)
		for (unsigned i = 0; i < 4; i++)
			v->table[e][i] = (uint32_t)mm_rd(f, BAR2 + 16 * e + 4 * i, 4);
	v->pba = mm_rd(f, BAR2 + VPCI_MSIX_PBA_OFF, 8);
	for (unsigned i = 0; i < 64; i++)
		v->cfg[i] = cfg_rd(f, 4 * i, 4);
}

static struct snap_reader *pci_snapshot(struct pfx *f)
{
	struct snap_writer w;

	virtio_dev_quiesce(&f->rng.vdev);
	snap_writer_init(&w);
	snap_begin(&w, "vdev.0", 1);
	virtio_pci_save(&f->vp, &w);
	snap_end(&w);
	return reader_of(&w);
}

static void test_pci_msix_roundtrip(void **state)
{
	struct vrd d;
	struct pfx *a, *b;
	struct pci_view va, vb;
	struct snap_reader *r;
	struct snap_sec s;
	char err[256] = "";
	uint32_t id, len;
	uint16_t head;

	assert_int_equal(vrd_init(&d, 16), 0);
	a = pfx_new(&d, true);
	bring_up(a, &d, true);
	/* One request done (kick through the notify area, its MSI sent)... */
	head = post_in(&d, 32);
	mm_wr(a, BAR0 + VPCI_NOTIFY_OFF, 2, 0);
	assert_true(loop_run_once(a->loop, 1000) >= 1);
	assert_true(vrd_get_used(&d, &id, &len));
	assert_int_equal(id, head);
	assert_int_equal(drain(a->vp.vec_fd[1]), 1);
	/* ...one made available but never kicked, the config vector masked with an interrupt pending. */
	head = post_in(&d, 48);
	vrd_set_used_event(&d, 1);                 /* EVENT_IDX: interrupt me for the next one */
	mm_wr(a, BAR2 + 12, 4, 1);
	virtio_notify_config(&a->rng.vdev);
	assert_int_equal(drain(a->vp.vec_fd[0]), 0);
	mm_wr(a, BAR0 + DFSEL, 4, 1);
	mm_wr(a, BAR0 + GFSEL, 4, 1);
	pci_view(a, &va);
	assert_int_equal(va.pba, 1);

	r = pci_snapshot(a);
	b = pfx_new(&d, false);                    /* fresh: nothing mapped, no routes */
	assert_int_equal(b->fm.routes_set, 0);
	s = find(r, "vdev.0");
	assert_int_equal(virtio_pci_load(&b->vp, &s, false, err, sizeof(err)), 0);
	assert_int_equal(b->fm.nioevent, 0);       /* a check changes nothing */
	s = find(r, "vdev.0");
	assert_int_equal(virtio_pci_load(&b->vp, &s, true, err, sizeof(err)), 0);
	assert_int_equal(snap_sec_end(&s), 0);

	/* The driver reads the same everywhere: BARs are back where it put them. */
	pci_view(b, &vb);
	assert_memory_equal(&va, &vb, sizeof(va));
	assert_int_equal(b->vp.dfselect, 1);
	assert_true(b->vp.msix_enabled);
	assert_false(b->vp.msix_masked);
	/* Host side: the notify ioeventfd, a route and irqfd for the unmasked vector only. */
	assert_int_equal(b->fm.nioevent, 1);
	assert_int_equal(b->fm.ioevent_addr[0], BAR0 + VPCI_NOTIFY_OFF);
	assert_int_equal(b->vp.vec_gsi[0], -1);
	assert_true(b->vp.vec_gsi[1] >= 24);
	assert_int_equal(b->fm.route_addr[b->vp.vec_gsi[1]], 0xfee01000);
	assert_int_equal(b->fm.route_data[b->vp.vec_gsi[1]], 0x41);
	assert_int_equal(b->fm.route_irqfd[b->vp.vec_gsi[1]], b->vp.vec_fd[1]);

	/* The request made available before the snapshot is served: a kick was queued by the load. */
	assert_true(loop_run_once(b->loop, 1000) >= 1);
	assert_true(vrd_get_used(&d, &id, &len));
	assert_int_equal(id, head);
	assert_int_equal(len, 48);
	assert_int_equal(vrd_used_idx(&d), 2);
	assert_int_equal(drain(b->vp.vec_fd[1]), 1);
	/* Unmasking the config vector delivers what was pending at the snapshot. */
	mm_wr(b, BAR2 + 12, 4, 0);
	assert_int_equal(drain(b->vp.vec_fd[0]), 1);
	assert_int_equal(mm_rd(b, BAR2 + VPCI_MSIX_PBA_OFF, 8), 0);
	/* And new work goes on: kick through the restored notify area. */
	head = post_in(&d, 16);
	vrd_set_used_event(&d, 2);
	mm_wr(b, BAR0 + VPCI_NOTIFY_OFF, 2, 0);
	assert_true(loop_run_once(b->loop, 1000) >= 1);
	assert_true(vrd_get_used(&d, &id, &len));
	assert_int_equal(id, head);
	assert_int_equal(drain(b->vp.vec_fd[1]), 1);

	reader_free(r);
	pfx_free(a);
	pfx_free(b);
	vrd_exit(&d);
}

static void test_pci_intx_roundtrip(void **state)
{
	struct vrd d;
	struct pfx *a, *b;
	struct snap_reader *r;
	struct snap_sec s;
	char err[256] = "";
	uint32_t id, len;

	assert_int_equal(vrd_init(&d, 16), 0);
	a = pfx_new(&d, true);
	bring_up(a, &d, false);
	post_in(&d, 32);
	mm_wr(a, BAR0 + VPCI_NOTIFY_OFF, 2, 0);
	assert_true(loop_run_once(a->loop, 1000) >= 1);
	assert_true(vrd_get_used(&d, &id, &len));
	assert_true(a->vp.intx.level);
	r = pci_snapshot(a);
	b = pfx_new(&d, false);
	s = find(r, "vdev.0");
	assert_int_equal(virtio_pci_load(&b->vp, &s, true, err, sizeof(err)), 0);
	assert_true(b->vp.intx.level);                           /* the line is up again */
	assert_int_equal(b->fm.routes_set, 0);
	assert_int_equal(mm_rd(b, BAR0 + VPCI_ISR_OFF, 1), 1);   /* queue interrupt, and read-to-clear */
	assert_false(b->vp.intx.level);
	reader_free(r);
	pfx_free(a);
	pfx_free(b);
	vrd_exit(&d);
}

/* Section layout of a virtio-pci rng (2 vectors, 1 queue), for aiming corruptions. */
enum {
	P_NVEC = 4, P_CFGVEC = 18, P_ISR = 20, P_TABLE = 21, P_PBA = P_TABLE + 32, P_CORE = P_PBA + 16,
	C_VERSION = P_CORE, C_ID = P_CORE + 4, C_NQ = P_CORE + 6, C_DRV = P_CORE + 18, C_STATUS = P_CORE + 26,
	C_Q0 = P_CORE + 28, Q_SIZE = 0, Q_MSIX = 3, Q_DESC = 5, Q_ARMED = 29, Q_EVENT_IDX = 30, Q_LAST_AVAIL = 32,
	P_PCI = C_Q0 + 40, P_LEN = P_PCI + 4 + PCI_CFG_SIZE,
};

struct corruption {
	unsigned off;
	uint8_t value;
	bool or;           /* OR the value in rather than store it */
	const char *why;   /* a word the error must contain */
};

static void test_pci_corrupt_refused(void **state)
{
	static const struct corruption cases[] = {
		{ P_NVEC, 3, false, "vectors" },
		{ P_CFGVEC, 5, false, "vector 5" },
		{ P_ISR, 4, false, "ISR" },
		{ P_TABLE + 12, 2, false, "reserved" },
		{ P_PBA, 4, false, "pending" },
		{ C_VERSION, 9, false, "version" },
		{ C_ID, 1, false, "device id" },
		{ C_NQ, 2, false, "queues" },
		{ C_DRV + 3, 0x80, true, "does not offer" },
		{ C_STATUS, 0x07, false, "without FEATURES_OK" },
		{ C_STATUS, 0x10, true, "status" },
		{ C_Q0 + Q_SIZE, 6, false, "queue 0" },
		{ C_Q0 + Q_MSIX, 7, false, "vector 7" },
		{ C_Q0 + Q_DESC + 3, 0x7f, false, "queue 0" },
		{ C_Q0 + Q_ARMED, 0, false, "queue 0" },
		{ C_Q0 + Q_EVENT_IDX, 0, false, "ring features" },
		{ C_Q0 + Q_LAST_AVAIL + 1, 0x40, false, "queue 0" },   /* 0x4000 chains in flight */
		{ P_PCI + 4, 0x86, false, "PCI" },          /* vendor id */
		{ P_PCI + 4 + 0x0e, 0x80, false, "PCI" },   /* header type: read-only */
	};
	struct vrd d;
	struct pfx *a, *b;
	struct snap_reader *r;
	struct snap_sec s, c;
	struct virtio_pci *vp_before = malloc(sizeof(*vp_before));
	struct virtio_rng rng_before;
	struct fake_msi fm_before;
	char err[256];
	uint8_t *buf;
	int quiet;

	assert_non_null(vp_before);
	assert_int_equal(vrd_init(&d, 16), 0);
	a = pfx_new(&d, true);
	bring_up(a, &d, true);
	r = pci_snapshot(a);
	b = pfx_new(&d, false);
	memcpy(vp_before, &b->vp, sizeof(*vp_before));
	rng_before = b->rng;
	fm_before = b->fm;
	s = find(r, "vdev.0");
	assert_int_equal(s.len, P_LEN);

#define UNCHANGED() do { \
		assert_memory_equal(&b->vp, vp_before, sizeof(*vp_before)); \
		assert_memory_equal(&b->rng, &rng_before, sizeof(rng_before)); \
		assert_memory_equal(&b->fm, &fm_before, sizeof(fm_before)); \
	} while (0)

	quiet = quiet_begin();
	for (unsigned k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		c = sec_copy(&s, &buf);
		if (cases[k].or)
			buf[cases[k].off] |= cases[k].value;
		else
			buf[cases[k].off] = cases[k].value;
		err[0] = '\0';
		assert_int_equal(virtio_pci_load(&b->vp, &c, true, err, sizeof(err)), -EINVAL);
		if (!strstr(err, cases[k].why))
			fail_msg("case %u: error '%s' does not mention '%s'", k, err, cases[k].why);
		assert_true(c.err);
		UNCHANGED();
		free(buf);
	}
	/* Every truncation. */
	for (size_t n = 0; n < s.len; n++) {
		c = sec_copy(&s, &buf);
		c.len = n;
		assert_int_equal(virtio_pci_load(&b->vp, &c, true, err, sizeof(err)), -EINVAL);
		UNCHANGED();
		free(buf);
	}
	quiet_end(quiet);
	/* The untouched section still loads into the untouched function. */
	c = sec_copy(&s, &buf);
	assert_int_equal(virtio_pci_load(&b->vp, &c, true, err, sizeof(err)), 0);
	assert_int_equal(b->rng.vdev.status, 0x0f);
	free(buf);
#undef UNCHANGED
	reader_free(r);
	free(vp_before);
	pfx_free(a);
	pfx_free(b);
	vrd_exit(&d);
}

/* ---- virtio-mmio ---- */

#define MMIO_BASE 0xd0000000ull

struct mfx {
	struct loop *loop;
	struct virtio_rng rng;
	struct virtio_mmio vm;
	struct fake_msi fm;
	struct msi_host msi;
};

static struct mfx *mfx_new(struct vrd *d)
{
	struct mfx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->loop = loop_new();
	f->msi = (struct msi_host){ &fake_msi_ops, &f->fm };
	rng_init(&f->rng, &d->gm);
	assert_int_equal(virtio_mmio_init(&f->vm, &f->rng.vdev, &f->msi, f->loop, MMIO_BASE), 0);
	f->vm.irq = (struct irq){ .ops = &intx_ops };
	return f;
}

static void mfx_free(struct mfx *f)
{
	virtio_mmio_exit(&f->vm);
	loop_free(f->loop);
	free(f);
}

static void mw(struct mfx *f, unsigned off, uint32_t v)
{
	virtio_mmio_ops.write(&f->vm, off, v, 4);
}

static uint32_t mr(struct mfx *f, unsigned off)
{
	return (uint32_t)virtio_mmio_ops.read(&f->vm, off, 4);
}

static void test_mmio_roundtrip(void **state)
{
	static const unsigned regs[] = { 0x000, 0x004, 0x008, 0x010, 0x034, 0x044, 0x060, 0x070, 0x0fc };
	struct vrd d;
	struct mfx *a, *b;
	struct snap_writer w;
	struct snap_reader *r;
	struct snap_sec s, c;
	char err[256] = "";
	uint32_t id, len;
	uint16_t head;
	uint8_t *buf;

	assert_int_equal(vrd_init(&d, 16), 0);
	a = mfx_new(&d);
	mw(a, 0x070, 3);
	mw(a, 0x024, 1);
	mw(a, 0x020, 1);
	mw(a, 0x024, 0);
	mw(a, 0x020, 0);
	mw(a, 0x070, 0x0b);
	mw(a, 0x030, 0);
	mw(a, 0x038, d.size);
	mw(a, 0x080, (uint32_t)d.desc_gpa);
	mw(a, 0x090, (uint32_t)d.avail_gpa);
	mw(a, 0x0a0, (uint32_t)d.used_gpa);
	mw(a, 0x044, 1);
	mw(a, 0x070, 0x0f);
	head = post_in(&d, 24);
	mw(a, 0x050, 0);
	assert_true(loop_run_once(a->loop, 1000) >= 1);
	assert_true(vrd_get_used(&d, &id, &len));
	assert_int_equal(id, head);
	assert_true(a->vm.irq.level);
	mw(a, 0x014, 1);
	head = post_in(&d, 40);                     /* available, not kicked */

	snap_writer_init(&w);
	snap_begin(&w, "vdev.0", 1);
	virtio_mmio_save(&a->vm, &w);
	snap_end(&w);
	r = reader_of(&w);
	b = mfx_new(&d);
	s = find(r, "vdev.0");
	/* A different window is refused, and so is any truncation. */
	c = sec_copy(&s, &buf);
	buf[4 + 3] ^= 1;
	assert_int_equal(virtio_mmio_load(&b->vm, &c, true, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "0xd0000000"));
	free(buf);
	for (size_t n = 0; n < s.len; n++) {
		c = sec_copy(&s, &buf);
		c.len = n;
		assert_int_equal(virtio_mmio_load(&b->vm, &c, true, err, sizeof(err)), -EINVAL);
		assert_int_equal(b->rng.vdev.status, 0);
		free(buf);
	}
	assert_int_equal(virtio_mmio_load(&b->vm, &s, true, err, sizeof(err)), 0);
	assert_int_equal(snap_sec_end(&s), 0);
	for (unsigned i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		assert_int_equal(mr(b, regs[i]), mr(a, regs[i]));
	assert_true(b->vm.irq.level);
	assert_int_equal(b->vm.dfselect, 1);
	assert_true(loop_run_once(b->loop, 1000) >= 1);   /* the queued kick */
	assert_true(vrd_get_used(&d, &id, &len));
	assert_int_equal(id, head);
	assert_int_equal(len, 40);
	mw(b, 0x064, 1);
	assert_false(b->vm.irq.level);
	reader_free(r);
	mfx_free(a);
	mfx_free(b);
	vrd_exit(&d);
}

/* ---- virtio-blk ---- */

struct bfx {
	struct vrd drv;
	struct virtio_blk *b;
	struct virtio_dev *d;
	char path[64];
	unsigned notifies;
};

static void bfx_notify_queue(struct virtio_dev *d, unsigned q)
{
	((struct bfx *)d->transport)->notifies++;
}

static void bfx_notify_config(struct virtio_dev *d)
{
}

static const struct virtio_transport_ops bfx_tops = { .notify_queue = bfx_notify_queue, .notify_config = bfx_notify_config };

static struct bfx *bfx_new(size_t img_size, const char *opts)
{
	struct bfx *f = calloc(1, sizeof(*f));
	struct blk_config cfg;
	char spec[128], err[256] = "";
	uint8_t *img = malloc(img_size);
	int fd;

	assert_non_null(f);
	assert_non_null(img);
	snprintf(f->path, sizeof(f->path), "/tmp/kestrel-vstate-blk-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	for (size_t i = 0; i < img_size; i++)
		img[i] = (uint8_t)(i * 7 + (i >> 9));
	assert_int_equal(write(fd, img, img_size), (ssize_t)img_size);
	close(fd);
	free(img);
	snprintf(spec, sizeof(spec), "%s%s", f->path, opts);
	assert_int_equal(blk_parse_spec(spec, &cfg, err, sizeof(err)), 0);
	assert_int_equal(vrd_init_ram(&f->drv, 16, 4ull << 20), 0);
	assert_int_equal(blk_new(&f->b, &cfg, &f->drv.gm, err, sizeof(err)), 0);
	f->d = blk_virtio(f->b);
	f->d->tops = &bfx_tops;
	f->d->transport = f;
	virtio_set_status(f->d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	virtio_set_driver_features(f->d, 0, (uint32_t)f->d->host_features);
	virtio_set_driver_features(f->d, 1, (uint32_t)(f->d->host_features >> 32));
	virtio_set_status(f->d, 0x0b);
	f->d->queues[0].size = f->drv.size;
	f->d->queues[0].desc_gpa = f->drv.desc_gpa;
	f->d->queues[0].avail_gpa = f->drv.avail_gpa;
	f->d->queues[0].used_gpa = f->drv.used_gpa;
	f->d->queues[0].enabled = true;
	virtio_set_status(f->d, 0x0f);
	assert_int_equal(f->d->status, 0x0f);
	return f;
}

static void bfx_free(struct bfx *f)
{
	blk_free(f->b);
	vrd_exit(&f->drv);
	unlink(f->path);
	free(f);
}

static void test_blk_quiesce_completes_inflight(void **state)
{
	static const char *const opts[] = { ",engine=uring", ",engine=sync" };

	for (unsigned k = 0; k < 2; k++) {
		struct bfx *f = bfx_new(1u << 20, opts[k]);
		uint8_t hdr[16] = { 0 }, ff = 0xff, want[4096];
		struct vrd_buf b[3];
		uint32_t id, len;
		uint16_t head;

		hdr[8] = 8;                                 /* IN, sector 8 */
		b[0] = vrd_buf_data(&f->drv, hdr, 16, false);
		b[1] = vrd_buf_data(&f->drv, NULL, 4096, true);
		b[2] = vrd_buf_data(&f->drv, &ff, 1, true);
		head = vrd_add_chain(&f->drv, b, 3);
		vrd_publish(&f->drv, head);
		f->d->ops->queue_notify(f->d, 0);
		if (block_engine_used(blk_backend(f->b)) == BLOCK_ENGINE_URING) {
			/* Submitted; its completion waits for the I/O thread, which is "stopped". */
			assert_int_equal(vrd_used_idx(&f->drv), 0);
			assert_int_equal(f->notifies, 0);
		}
		virtio_dev_quiesce(f->d);
		assert_true(vrd_get_used(&f->drv, &id, &len));
		assert_int_equal(id, head);
		assert_int_equal(len, 4097);
		assert_int_equal(*(uint8_t *)vrd_host(&f->drv, b[2].gpa, 1), 0);
		for (size_t i = 0; i < sizeof(want); i++)
			want[i] = (uint8_t)((8 * 512 + i) * 7 + ((8 * 512 + i) >> 9));
		assert_memory_equal(vrd_host(&f->drv, b[1].gpa, 4096), want, 4096);
		assert_int_equal(f->notifies, 1);
		assert_int_equal(block_inflight(blk_backend(f->b)), 0);
		bfx_free(f);
	}
}

static void test_blk_other_image_refused(void **state)
{
	struct bfx *a = bfx_new(1u << 20, ""), *b = bfx_new(2u << 20, ""), *c = bfx_new(1u << 20, ",ro");
	struct snap_writer w;
	struct snap_reader *r;
	struct snap_sec s;
	char err[256] = "";

	snap_writer_init(&w);
	snap_begin(&w, "blk", 1);
	a->d->ops->save(a->d, &w);
	snap_end(&w);
	r = reader_of(&w);
	s = find(r, "blk");
	assert_int_equal(b->d->ops->load(b->d, &s, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "image is 4096 sectors, snapshot had 2048"));
	s = find(r, "blk");
	assert_int_equal(c->d->ops->load(c->d, &s, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "read-write"));
	s = find(r, "blk");
	assert_int_equal(a->d->ops->load(a->d, &s, true, err, sizeof(err)), 0);
	assert_int_equal(snap_sec_end(&s), 0);
	reader_free(r);
	bfx_free(a);
	bfx_free(b);
	bfx_free(c);
}

/*
 * A request the rate limiter held at pause goes back to the ring; a device
 * restored from that state takes it without any new kick from the driver.
 */
static void test_blk_held_request_restored(void **state)
{
	struct bfx *a = bfx_new(1u << 20, ",engine=sync,iops=1");
	uint8_t hdr[2][16] = { { 0 }, { 0 } }, ff = 0xff;
	struct vrd_buf b[2][3];
	struct virtio_blk *nb;
	struct virtio_dev *nd;
	struct virtq q0;
	uint64_t features;
	uint8_t status;
	struct blk_config cfg;
	char spec[128], err[256] = "";
	uint32_t id, len;
	uint16_t head[2];

	for (unsigned i = 0; i < 2; i++) {
		hdr[i][8] = (uint8_t)(8 + i);                /* IN, sectors 8 and 9 */
		b[i][0] = vrd_buf_data(&a->drv, hdr[i], 16, false);
		b[i][1] = vrd_buf_data(&a->drv, NULL, 512, true);
		b[i][2] = vrd_buf_data(&a->drv, &ff, 1, true);
		head[i] = vrd_add_chain(&a->drv, b[i], 3);
		vrd_publish(&a->drv, head[i]);
	}
	a->d->ops->queue_notify(a->d, 0);
	assert_true(vrd_get_used(&a->drv, &id, &len));
	assert_int_equal(id, head[0]);
	assert_false(vrd_get_used(&a->drv, &id, &len));      /* the second is held */
	virtio_dev_quiesce(a->d);
	assert_int_equal(a->d->queues[0].last_avail, 1);       /* ...and given back */

	/* A fresh device on the same ring, in the state a snapshot would carry (the old one gone: it holds the image's lock). */
	features = a->d->driver_features;
	status = a->d->status;
	q0 = a->d->queues[0];
	blk_free(a->b);
	snprintf(spec, sizeof(spec), "%s,engine=sync,iops=1", a->path);
	assert_int_equal(blk_parse_spec(spec, &cfg, err, sizeof(err)), 0);
	assert_int_equal(blk_new(&nb, &cfg, &a->drv.gm, err, sizeof(err)), 0);
	a->b = nb;
	nd = a->d = blk_virtio(nb);
	nd->tops = &bfx_tops;
	nd->transport = a;
	nd->driver_features = features;
	nd->status = status;
	nd->queues[0] = q0;
	assert_int_equal(virtio_dev_restored(nd), 0);
	/* What the I/O thread does when it starts: no kick involved. */
	blk_process_completions(nb);
	assert_true(vrd_get_used(&a->drv, &id, &len));
	assert_int_equal(id, head[1]);
	assert_int_equal(len, 513);
	assert_int_equal(*(uint8_t *)vrd_host(&a->drv, b[1][2].gpa, 1), 0);
	bfx_free(a);
}

/* ---- virtio-net: a frame half delivered when paused ---- */

struct nfx {
	struct virtio_net *n;
	struct virtio_dev *d;
	struct fake_be *be;
	unsigned notified;
};

static void nfx_notify_queue(struct virtio_dev *d, unsigned q)
{
	((struct nfx *)d->transport)->notified++;
}

static const struct virtio_transport_ops nfx_tops = { .notify_queue = nfx_notify_queue, .notify_config = bfx_notify_config };

/* virtio-net with MRG_RXBUF; rx queue on `rx`, tx queue on `tx` (both in rx's RAM). */
static struct nfx *nfx_new(struct vrd *rx, struct vrd *tx, bool start)
{
	struct nfx *x = calloc(1, sizeof(*x));
	struct vnet_config cfg = { .mac = { 0x52, 0x54, 0, 1, 2, 3 }, .queue_size = rx->size };
	char err[256] = "";
	uint64_t f = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) |
		     VIRTIO_BIT(VIRTIO_F_EVENT_IDX);

	assert_non_null(x);
	x->be = fb_new(false);                      /* no vnet header from this backend */
	cfg.custom = &x->be->be;
	assert_int_equal(vnet_new(&x->n, &cfg, &rx->gm, err, sizeof(err)), 0);
	x->d = vnet_virtio(x->n);
	x->d->tops = &nfx_tops;
	x->d->transport = x;
	if (!start)
		return x;
	for (unsigned q = 0; q < 2; q++) {
		const struct vrd *v = q ? tx : rx;

		x->d->queues[q].size = v->size;
		x->d->queues[q].desc_gpa = v->desc_gpa;
		x->d->queues[q].avail_gpa = v->avail_gpa;
		x->d->queues[q].used_gpa = v->used_gpa;
		x->d->queues[q].enabled = true;
	}
	virtio_set_status(x->d, 3);
	virtio_set_driver_features(x->d, 0, (uint32_t)f);
	virtio_set_driver_features(x->d, 1, (uint32_t)(f >> 32));
	virtio_set_status(x->d, 0x0b);
	virtio_set_status(x->d, 0x0f);
	assert_int_equal(x->d->status, 0x0f);
	return x;
}

static void nfx_free(struct nfx *x)
{
	vnet_free(x->n);
	free(x);
}

static void test_net_partial_frame(void **state)
{
	enum { FRAME = 3000, BUF = 1000 };
	struct vrd rx, tx;
	struct nfx *a, *b;
	struct snap_writer w;
	struct snap_reader *r;
	struct virtio_dev_snap *st = malloc(sizeof(*st));
	struct snap_sec s, c, dev_at;
	struct vrd_buf bufs[4];
	uint16_t heads[4];
	uint8_t frame[FRAME], got[FRAME + 12], *copy;
	char err[256] = "";
	uint32_t id = 0, len = 0;
	size_t off = 0;

	assert_non_null(st);
	assert_int_equal(vrd_init_ram(&rx, 8, 4ull << 20), 0);
	tx = rx;
	tx.desc_gpa = rx.ram_gpa + (2u << 20);
	tx.avail_gpa = tx.desc_gpa + 16 * 8;
	tx.used_gpa = tx.avail_gpa + 32;
	a = nfx_new(&rx, &tx, true);
	for (unsigned i = 0; i < FRAME; i++)
		frame[i] = (uint8_t)(i * 3 + 1);
	/* Room for two of the four buffers the frame needs. */
	for (unsigned i = 0; i < 2; i++) {
		bufs[i] = vrd_buf_data(&rx, NULL, BUF, true);
		heads[i] = vrd_add_chain(&rx, &bufs[i], 1);
		vrd_publish(&rx, heads[i]);
	}
	fb_push(a->be, frame, FRAME);
	vnet_poll(a->n);
	assert_int_equal(a->d->queues[NET_RX_QUEUE].last_avail, 2);    /* two chains held */
	assert_int_equal(vrd_used_idx(&rx), 0);

	/* Pause: the held chains go back to the ring; nothing is published half done. */
	virtio_dev_quiesce(a->d);
	assert_int_equal(a->d->queues[NET_RX_QUEUE].last_avail, 0);
	assert_int_equal(vrd_used_idx(&rx), 0);

	snap_writer_init(&w);
	snap_begin(&w, "net", 1);
	virtio_dev_save(a->d, &w);
	a->d->ops->save(a->d, &w);
	snap_end(&w);
	r = reader_of(&w);

	/* A fresh device takes it over; the frame is not in its backend, only in the snapshot. */
	b = nfx_new(&rx, &tx, false);
	s = find(r, "net");
	assert_int_equal(virtio_dev_load_check(b->d, &s, st, err, sizeof(err)), 0);
	assert_int_equal(virtio_dev_load_check_device(b->d, &s, &dev_at, err, sizeof(err)), 0);
	assert_int_equal(snap_sec_end(&s), 0);
	assert_int_equal(virtio_dev_load_commit(b->d, st, &dev_at, err, sizeof(err)), 0);
	assert_int_equal(snap_sec_end(&dev_at), 0);
	assert_int_equal(virtio_dev_restored(b->d), 0);
	assert_int_equal(b->be->offload_calls, 1);
	assert_int_equal(b->d->status, 0x0f);

	/* The driver adds the missing buffers: the whole frame arrives, in order, once. */
	for (unsigned i = 2; i < 4; i++) {
		bufs[i] = vrd_buf_data(&rx, NULL, BUF, true);
		heads[i] = vrd_add_chain(&rx, &bufs[i], 1);
		vrd_publish(&rx, heads[i]);
	}
	vnet_poll(b->n);
	assert_int_equal(vrd_used_idx(&rx), 4);
	for (unsigned i = 0; i < 4; i++) {
		assert_true(vrd_get_used(&rx, &id, &len));
		assert_int_equal(id, heads[i]);
		memcpy(got + off, vrd_host(&rx, bufs[i].gpa, len), len);
		off += len;
	}
	assert_int_equal(off, FRAME + 12);
	assert_int_equal(got[10] | got[11] << 8, 4);                 /* num_buffers */
	assert_memory_equal(got + 12, frame, FRAME);
	assert_true(b->notified >= 1);

	/* A MAC that differs is refused (the device's part follows the core's 108 bytes). */
	s = find(r, "net");
	c = sec_copy(&s, &copy);
	copy[108 + 4 + 5] ^= 1;
	assert_int_equal(virtio_dev_load_check(b->d, &c, st, err, sizeof(err)), 0);
	assert_int_equal(b->d->ops->load(b->d, &c, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "MAC"));
	free(copy);
	/* A saved frame longer than the section is. */
	c = sec_copy(&s, &copy);
	c.len -= 1;
	assert_int_equal(virtio_dev_load_check(b->d, &c, st, err, sizeof(err)), 0);
	assert_int_equal(b->d->ops->load(b->d, &c, false, err, sizeof(err)), -EINVAL);
	free(copy);
	reader_free(r);
	free(st);
	nfx_free(a);
	nfx_free(b);
	vrd_exit(&rx);
}

/* ---- I/O threads ---- */

static void count_cb(void *opaque, uint32_t events)
{
	int *fd = opaque;
	uint64_t v;

	if (read(fd[0], &v, sizeof(v)) == sizeof(v))
		__atomic_add_fetch(&fd[1], (int)v, __ATOMIC_RELEASE);
}

static bool wait_count(int *fd, int want)
{
	for (int i = 0; i < 1000; i++) {
		if (__atomic_load_n(&fd[1], __ATOMIC_ACQUIRE) == want)
			return true;
		usleep(1000);
	}
	return false;
}

static void test_iothread_restarts(void **state)
{
	struct iothread it;
	int fd[2] = { eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), 0 };
	uint64_t one = 1;

	assert_true(fd[0] >= 0);
	assert_int_equal(iothread_init(&it, "io-test", -1), 0);
	assert_int_equal(loop_add(it.loop, fd[0], POLLIN, count_cb, fd), 0);
	assert_int_equal(iothread_start(&it), 0);
	assert_int_equal(iothread_start(&it), 0);        /* already running: no second thread */
	assert_int_equal(write(fd[0], &one, 8), 8);
	assert_true(wait_count(fd, 1));
	iothread_stop(&it);
	/* While stopped, work waits in the fd... */
	assert_int_equal(write(fd[0], &one, 8), 8);
	usleep(20000);
	assert_int_equal(__atomic_load_n(&fd[1], __ATOMIC_ACQUIRE), 1);
	/* ...and is done once the thread runs again. */
	assert_int_equal(iothread_start(&it), 0);
	assert_true(wait_count(fd, 2));
	iothread_stop(&it);
	assert_int_equal(iothread_start(&it), 0);
	assert_int_equal(write(fd[0], &one, 8), 8);
	assert_true(wait_count(fd, 3));
	loop_del(it.loop, fd[0]);
	iothread_exit(&it);
	close(fd[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_queue_midway),
		cmocka_unit_test(test_queue_load_refuses),
		cmocka_unit_test(test_queue_unpop_and_dirty),
		cmocka_unit_test(test_pci_msix_roundtrip),
		cmocka_unit_test(test_pci_intx_roundtrip),
		cmocka_unit_test(test_pci_corrupt_refused),
		cmocka_unit_test(test_mmio_roundtrip),
		cmocka_unit_test(test_blk_quiesce_completes_inflight),
		cmocka_unit_test(test_blk_other_image_refused),
		cmocka_unit_test(test_blk_held_request_restored),
		cmocka_unit_test(test_net_partial_frame),
		cmocka_unit_test(test_iothread_restarts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

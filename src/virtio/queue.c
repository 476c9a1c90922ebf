/*
 * Split virtqueues (Virtio 1.2, section 2.7), device side.
 *
 * The rings live in guest memory that the driver may rewrite at any moment,
 * so every guest field is loaded exactly once (an atomic load for the ring
 * indices and heads, a copy followed by a compiler barrier for descriptors)
 * and only the local copy is checked and used. Host pointers to the rings
 * are looked up again on each call, for the current size, rather than kept
 * in struct virtq: even a transport that let the driver change the size
 * after activation could not make this code leave guest RAM.
 *
 * Bounded work: one vq_pop() walks at most VQ_MAX_SEGS buffer descriptors
 * plus one indirect descriptor, and nothing here loops on guest data beyond
 * that. A device bounds the work per notification by popping at most
 * vq->size elements per kick and rescheduling itself if more are left:
 *
 *	vq_disable_kicks(vq);
 *	do {
 *		for (n = 0; n < vq->size && vq_pop(vq, e) == 0; n++)
 *			handle(e), vq_push(vq, e->head, written);
 *		(on -EIO: virtio_fail(dev, "%s", vq->error), stop)
 *	} while (vq_enable_kicks(vq));     (or reschedule when n == size)
 *	if (vq_need_notify(vq)) interrupt;
 *
 * With VIRTIO_F_EVENT_IDX the driver learns where to kick from avail_event,
 * which only vq_enable_kicks() writes, so a kick handler must end with it.
 *
 * Zero-length buffers are accepted and left out of the element's iovecs:
 * they take no part in transfers, so their address is not checked; they
 * still count against VQ_MAX_SEGS and the readable-before-writable order.
 */
#include "virtio/queue.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "snapshot/snap.h"
#include "util/log.h"

#define VQ_DESC_ALIGN  16
#define VQ_AVAIL_ALIGN 2
#define VQ_USED_ALIGN  4

/* Byte offsets inside the rings (Virtio 1.2, 2.7.6 and 2.7.8). */
#define VQ_AVAIL_IDX      2
#define VQ_AVAIL_RING     4
#define VQ_USED_IDX       2
#define VQ_USED_RING      4
#define VQ_USED_ELEM_SIZE 8

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};
_Static_assert(sizeof(struct vring_used_elem) == VQ_USED_ELEM_SIZE, "virtq used element is 8 bytes");

static uint64_t vq_desc_bytes(uint16_t size)
{
	return 16ull * size;
}

static uint64_t vq_avail_bytes(uint16_t size)
{
	return 6ull + 2ull * size;   /* flags, idx, ring[size], used_event */
}

static uint64_t vq_used_bytes(uint16_t size)
{
	return 6ull + 8ull * size;   /* flags, idx, ring[size], avail_event */
}

static inline void vq_compiler_barrier(void)
{
	__asm__ __volatile__("" ::: "memory");
}

/* Guest ring fields: naturally aligned (checked by vq_activate), read and written once. */
static inline uint16_t vq_load16(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED));
}

static inline uint16_t vq_load16_acquire(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_ACQUIRE));
}

static inline void vq_store16(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELAXED);
}

static inline void vq_store16_release(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELEASE);
}

static inline void vq_store32(uint8_t *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)(void *)p, htole32(v), __ATOMIC_RELAXED);
}

static uint8_t *vq_avail(const struct virtq *vq)
{
	return gm_ptr(vq->gm, vq->avail_gpa, vq_avail_bytes(vq->size));
}

static uint8_t *vq_used(const struct virtq *vq)
{
	return gm_ptr(vq->gm, vq->used_gpa, vq_used_bytes(vq->size));
}

/*
 * The VMM's own writes into the used ring: KVM's dirty log does not see
 * them, so they are recorded for Diff snapshots (a no-op unless tracking).
 */
static void vq_used_dirty(const struct virtq *vq, uint64_t off, uint64_t len)
{
	gm_mark_dirty(vq->gm, vq->used_gpa + off, len);
}

static int vq_fail(struct virtq *vq, const char *why)
{
	vq->broken = true;
	vq->error = why;
	return -EIO;
}

void vq_reset(struct virtq *vq)
{
	/* The transport's registers (size, addresses, enabled, vector) are the transport's to reset. */
	vq->event_idx = false;
	vq->indirect = false;
	vq->last_avail = 0;
	vq->used_idx = 0;
	vq->signalled_used = 0;
	vq->signalled_used_valid = false;
	vq->broken = false;
	vq->error = NULL;
	vq->gm = NULL;
}

/* [gpa, gpa+len) lies in one RAM region and both gpa and its host address are aligned. */
static bool vq_ring_ok(const struct guest_mem *gm, uint64_t gpa, uint64_t len, uint64_t align)
{
	const void *p;

	if (gpa & (align - 1))
		return false;
	p = gm_ptr(gm, gpa, len);
	/* Host alignment matters for the atomic accesses; real RAM is page-aligned anyway. */
	return p && ((uintptr_t)p & (align - 1)) == 0;
}

/*
 * Ask for a kick on the next buffer: used->flags 0, and with EVENT_IDX
 * avail_event at the next slot we will read. The used ring is the device's
 * to write (2.7.10), so this is also done at activation rather than relying
 * on what the driver left there.
 */
static void vq_arm_kicks(struct virtq *vq)
{
	uint8_t *used = vq_used(vq);

	if (!used)
		return;
	vq_store16(used, 0);
	vq_used_dirty(vq, 0, 2);
	if (vq->event_idx) {
		vq_store16(used + VQ_USED_RING + VQ_USED_ELEM_SIZE * vq->size, vq->last_avail);
		vq_used_dirty(vq, VQ_USED_RING + VQ_USED_ELEM_SIZE * vq->size, 2);
	}
}

int vq_activate(struct virtq *vq, const struct guest_mem *gm, bool event_idx, bool indirect)
{
	uint16_t size = vq->size;

	vq_reset(vq);
	if (!gm || vq->max_size == 0 || vq->max_size > VQ_MAX_SIZE)
		return -EINVAL;
	if (size == 0 || size > vq->max_size || (size & (size - 1)))
		return -EINVAL;
	if (!vq_ring_ok(gm, vq->desc_gpa, vq_desc_bytes(size), VQ_DESC_ALIGN) ||
	    !vq_ring_ok(gm, vq->avail_gpa, vq_avail_bytes(size), VQ_AVAIL_ALIGN) ||
	    !vq_ring_ok(gm, vq->used_gpa, vq_used_bytes(size), VQ_USED_ALIGN))
		return -EINVAL;
	vq->event_idx = event_idx;
	vq->indirect = indirect;
	vq->gm = gm;
	vq_arm_kicks(vq);
	return 0;
}

/* One descriptor, copied out of guest memory once and decoded. */
static void vq_read_desc(const uint8_t *p, struct vring_desc *d)
{
	struct vring_desc raw;

	memcpy(&raw, p, sizeof(raw));
	/* Make sure only the copy is used from here on, never a re-read of guest memory. */
	vq_compiler_barrier();
	d->addr = le64toh(raw.addr);
	d->len = le32toh(raw.len);
	d->flags = le16toh(raw.flags);
	d->next = le16toh(raw.next);
}

/* A buffer descriptor (not one pointing at an indirect table) joins the element. */
static int vq_add_buf(struct virtq *vq, struct vq_elem *e, const struct vring_desc *d,
		      unsigned *segs, bool *seen_write)
{
	bool write = d->flags & VRING_DESC_F_WRITE;
	unsigned i;
	void *p;

	if (++*segs > VQ_MAX_SEGS)
		return vq_fail(vq, "descriptor chain has too many buffers");
	if (write)
		*seen_write = true;
	else if (*seen_write)
		return vq_fail(vq, "device-readable buffer after a device-writable one");
	if (d->len == 0)
		return 0;
	p = gm_ptr(vq->gm, d->addr, d->len);
	if (!p)
		return vq_fail(vq, "buffer is not in guest RAM");
	i = e->out_num + e->in_num;
	e->iov[i].iov_base = p;
	e->iov[i].iov_len = d->len;
	e->gpa[i] = d->addr;
	if (write) {
		e->in_num++;
		e->in_len += d->len;
		if (e->in_len > UINT32_MAX)
			return vq_fail(vq, "device-writable part is 4 GiB or longer");
	} else {
		e->out_num++;
		e->out_len += d->len;
		if (e->out_len > UINT32_MAX)
			return vq_fail(vq, "device-readable part is 4 GiB or longer");
	}
	return 0;
}

/*
 * Walk the chain at `head`: zero or more descriptors in the queue's table,
 * possibly ending in one that points at an indirect table, which is walked
 * in turn. `limit` counts the descriptors of the table being walked, so a
 * walk that visits more than that has met a loop.
 */
static int vq_walk(struct virtq *vq, uint16_t head, struct vq_elem *e)
{
	const uint8_t *table;
	unsigned limit = vq->size, count = 0, segs = 0, idx = head;
	bool in_indirect = false, seen_write = false;
	struct vring_desc d;
	int rc;

	e->head = head;
	e->out_num = e->in_num = 0;
	e->out_len = e->in_len = 0;
	if (head >= vq->size)
		return vq_fail(vq, "available ring names a head beyond the queue size");
	table = gm_ptr(vq->gm, vq->desc_gpa, vq_desc_bytes(vq->size));
	if (!table)
		return vq_fail(vq, "descriptor table is not in guest RAM");

	for (;;) {
		if (++count > limit)
			return vq_fail(vq, "descriptor chain loops or is longer than its table");
		vq_read_desc(table + 16ull * idx, &d);

		if (d.flags & VRING_DESC_F_INDIRECT) {
			if (!vq->indirect)
				return vq_fail(vq, "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
			if (in_indirect)
				return vq_fail(vq, "indirect descriptor inside an indirect table");
			if (d.flags & VRING_DESC_F_NEXT)
				return vq_fail(vq, "descriptor has both INDIRECT and NEXT");
			if (d.len == 0 || d.len % 16)
				return vq_fail(vq, "indirect table length is 0 or not a multiple of 16");
			table = gm_ptr(vq->gm, d.addr, d.len);
			if (!table)
				return vq_fail(vq, "indirect table is not in guest RAM");
			/* Its WRITE flag means nothing (2.7.5.3.2); the table's entries decide. */
			in_indirect = true;
			limit = d.len / 16;
			count = 0;
			idx = 0;
			continue;
		}

		rc = vq_add_buf(vq, e, &d, &segs, &seen_write);
		if (rc)
			return rc;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		idx = d.next;
		if (idx >= limit)
			return vq_fail(vq, "descriptor's next is beyond its table");
	}
}

int vq_pop(struct virtq *vq, struct vq_elem *e)
{
	uint16_t avail_idx, pending, head;
	uint8_t *avail;

	if (vq->broken)
		return -EIO;
	if (!vq->gm)
		return -ENOENT;
	avail = vq_avail(vq);
	if (!avail)
		return vq_fail(vq, "available ring is not in guest RAM");
	/* Acquire: the ring entries and descriptors behind idx were written before it. */
	avail_idx = vq_load16_acquire(avail + VQ_AVAIL_IDX);
	pending = (uint16_t)(avail_idx - vq->last_avail);
	if (pending > vq->size)
		return vq_fail(vq, "available index ran more than the queue size ahead");
	if (pending == 0)
		return -ENOENT;
	head = vq_load16(avail + VQ_AVAIL_RING + 2u * (vq->last_avail & (vq->size - 1u)));
	if (vq_walk(vq, head, e))
		return -EIO;
	/*
	 * Conservatively dirty now everything the device may write: what it
	 * writes through these host pointers is invisible to KVM's dirty log,
	 * and a device completes (or gives back) every chain before a snapshot.
	 */
	for (unsigned i = e->out_num; i < e->out_num + e->in_num; i++)
		gm_mark_dirty(vq->gm, e->gpa[i], e->iov[i].iov_len);
	vq->last_avail++;
	return 0;
}

void vq_unpop(struct virtq *vq, uint16_t n)
{
	vq->last_avail = (uint16_t)(vq->last_avail - n);
}

void vq_push(struct virtq *vq, uint16_t head, uint32_t written)
{
	uint8_t *used, *elem;

	if (!vq->gm)
		return;
	if (head >= vq->size) {
		/* A device bug, not the guest's: say so, and never write outside the ring. */
		log_err("virtq", "push of head %u on a queue of size %u", head, vq->size);
		return;
	}
	used = vq_used(vq);
	if (!used)
		return;
	elem = used + VQ_USED_RING + VQ_USED_ELEM_SIZE * (vq->used_idx & (vq->size - 1u));
	vq_store32(elem + offsetof(struct vring_used_elem, id), head);
	vq_store32(elem + offsetof(struct vring_used_elem, len), written);
	vq_used_dirty(vq, (uint64_t)(elem - used), VQ_USED_ELEM_SIZE);
	vq->used_idx++;
	/* Release: the element (and the data written into the buffers) before idx. */
	vq_store16_release(used + VQ_USED_IDX, vq->used_idx);
	vq_used_dirty(vq, VQ_USED_IDX, 2);
}

/* True when `event` lies in [old, new), the used entries written since the last check. */
static bool vq_need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1u) < (uint16_t)(new_idx - old_idx);
}

bool vq_need_notify(struct virtq *vq)
{
	uint16_t old, event;
	uint8_t *avail;
	bool valid;

	if (!vq->gm)
		return false;
	avail = vq_avail(vq);
	if (!avail)
		return false;
	/* Our used->idx store must be visible before we read the driver's suppression state. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(vq_load16(avail) & VRING_AVAIL_F_NO_INTERRUPT);

	event = vq_load16(avail + VQ_AVAIL_RING + 2u * vq->size);
	old = vq->signalled_used;
	valid = vq->signalled_used_valid;
	/*
	 * Remember where this check ended whether or not it notifies: the next
	 * check then covers exactly the entries written after it, which also
	 * keeps the [old, new) window shorter than 65536 entries.
	 */
	vq->signalled_used = vq->used_idx;
	vq->signalled_used_valid = true;
	return !valid || vq_need_event(event, vq->used_idx, old);
}

void vq_disable_kicks(struct virtq *vq)
{
	uint8_t *used;

	/*
	 * With EVENT_IDX the device must leave used->flags at 0 (2.7.10); the
	 * driver kicks only when its index passes avail_event, which stays where
	 * vq_enable_kicks() last put it, so at most one more kick arrives (until
	 * the 16-bit index comes round again; a spurious kick is harmless).
	 */
	if (!vq->gm || vq->event_idx)
		return;
	used = vq_used(vq);
	if (used) {
		vq_store16(used, VRING_USED_F_NO_NOTIFY);
		vq_used_dirty(vq, 0, 2);
	}
}

bool vq_enable_kicks(struct virtq *vq)
{
	if (!vq->gm)
		return false;
	vq_arm_kicks(vq);
	/* Re-arm before looking again, or a buffer added in between goes unnoticed. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return vq_has_work(vq);
}

bool vq_has_work(struct virtq *vq)
{
	uint8_t *avail;

	if (!vq->gm || vq->broken)
		return false;
	avail = vq_avail(vq);
	if (!avail)
		return false;
	return vq_load16_acquire(avail + VQ_AVAIL_IDX) != vq->last_avail;
}

/* Copy between a flat buffer and iov[first, first+num), starting `off` bytes in. */
static size_t vq_copy_iov(const struct vq_elem *e, unsigned first, unsigned num, size_t off,
			  void *buf, size_t len, bool to_iov)
{
	uint8_t *b = buf;
	size_t done = 0;

	if (first > VQ_MAX_SEGS || num > VQ_MAX_SEGS - first)
		return 0;
	for (unsigned i = first; i < first + num && done < len; i++) {
		size_t seg = e->iov[i].iov_len, n;
		uint8_t *p = e->iov[i].iov_base;

		if (off >= seg) {
			off -= seg;
			continue;
		}
		n = seg - off;
		if (n > len - done)
			n = len - done;
		if (to_iov)
			memcpy(p + off, b + done, n);
		else
			memcpy(b + done, p + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t vq_copy_from_out(const struct vq_elem *e, size_t off, void *dst, size_t len)
{
	return vq_copy_iov(e, 0, e->out_num, off, dst, len, false);
}

size_t vq_copy_to_in(const struct vq_elem *e, size_t off, const void *src, size_t len)
{
	return vq_copy_iov(e, e->out_num, e->in_num, off, (void *)src, len, true);
}

/* ---- snapshot ---- */

void vq_save(const struct virtq *vq, struct snap_writer *w)
{
	snap_put_u16(w, vq->size);
	snap_put_bool(w, vq->enabled);
	snap_put_u16(w, vq->msix_vector);
	snap_put_u64(w, vq->desc_gpa);
	snap_put_u64(w, vq->avail_gpa);
	snap_put_u64(w, vq->used_gpa);
	snap_put_bool(w, vq->gm != NULL);       /* armed: activated and in use */
	snap_put_bool(w, vq->event_idx);
	snap_put_bool(w, vq->indirect);
	snap_put_u16(w, vq->last_avail);
	snap_put_u16(w, vq->used_idx);
	snap_put_u16(w, vq->signalled_used);
	snap_put_bool(w, vq->signalled_used_valid);
	snap_put_bool(w, vq->broken);
}

int vq_load(struct virtq *vq, struct snap_sec *s, const struct guest_mem *gm)
{
	struct virtq q = *vq;
	bool armed;

	q.size = snap_get_u16(s);
	q.enabled = snap_get_bool(s);
	q.msix_vector = snap_get_u16(s);
	q.desc_gpa = snap_get_u64(s);
	q.avail_gpa = snap_get_u64(s);
	q.used_gpa = snap_get_u64(s);
	armed = snap_get_bool(s);
	q.event_idx = snap_get_bool(s);
	q.indirect = snap_get_bool(s);
	q.last_avail = snap_get_u16(s);
	q.used_idx = snap_get_u16(s);
	q.signalled_used = snap_get_u16(s);
	q.signalled_used_valid = snap_get_bool(s);
	q.broken = snap_get_bool(s);
	if (s->err)
		return -EINVAL;
	if (armed) {
		/* What vq_activate() checked when the driver armed it. */
		if (!gm || !q.enabled || q.max_size == 0 || q.max_size > VQ_MAX_SIZE ||
		    q.size == 0 || q.size > q.max_size || (q.size & (q.size - 1)) ||
		    !vq_ring_ok(gm, q.desc_gpa, vq_desc_bytes(q.size), VQ_DESC_ALIGN) ||
		    !vq_ring_ok(gm, q.avail_gpa, vq_avail_bytes(q.size), VQ_AVAIL_ALIGN) ||
		    !vq_ring_ok(gm, q.used_gpa, vq_used_bytes(q.size), VQ_USED_ALIGN))
			goto bad;
		/* More chains taken than returned than the ring holds: no device gets there (fuzz_devsnap). */
		if ((uint16_t)(q.last_avail - q.used_idx) > q.size)
			goto bad;
		q.gm = gm;
		q.error = q.broken ? "the queue was already broken when the snapshot was taken" : NULL;
	} else {
		/* Never activated (or reset): vq_reset() left nothing behind. */
		if (q.event_idx || q.indirect || q.last_avail || q.used_idx || q.signalled_used ||
		    q.signalled_used_valid || q.broken)
			goto bad;
		q.gm = NULL;
		q.error = NULL;
	}
	*vq = q;
	return 0;

bad:
	snap_sec_fail(s);
	return -EINVAL;
}

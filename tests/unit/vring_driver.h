/*
 * Driver side of a split virtqueue, for unit tests of the queue and of
 * virtio devices: fake guest RAM from calloc, the three rings laid out at its
 * start, a bump allocator for buffers and indirect tables behind them, and
 * helpers that build descriptor chains (direct, through an indirect table,
 * or direct descriptors ending in an indirect one), publish them in the
 * available ring and read the used ring back. Ring fields are written
 * little-endian, as a driver would. Raw accessors let tests write malicious
 * descriptors and indices. Header-only: each test program includes it.
 */
#ifndef KESTREL_TEST_VRING_DRIVER_H
#define KESTREL_TEST_VRING_DRIVER_H

#include <endian.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem/gm.h"
#include "virtio/queue.h"
#include "mem/gm_test.h"

#define VRD_GPA      0x100000ull          /* where the fake RAM starts */
#define VRD_RAM_SIZE (2ull << 20)

struct vrd {
	struct guest_mem gm;
	uint8_t *ram;
	uint64_t ram_gpa, ram_size;
	uint16_t size;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint64_t data_start, data_next;   /* bump allocator, in guest addresses */
	uint16_t next_desc;               /* descriptors are handed out round-robin */
	uint16_t avail_idx;               /* the driver's shadow of avail->idx */
	uint16_t last_used;               /* next used entry the driver reads */
};

/* One buffer of a chain. */
struct vrd_buf {
	uint64_t gpa;
	uint32_t len;
	bool write;                        /* device-writable */
};

static inline void vrd_die(const char *what)
{
	fprintf(stderr, "vring_driver: %s\n", what);
	abort();
}

static inline void *vrd_host(struct vrd *d, uint64_t gpa, uint64_t len)
{
	void *p = gm_ptr(&d->gm, gpa, len);

	if (!p)
		vrd_die("address outside the fake RAM");
	return p;
}

static inline void vrd_w16(struct vrd *d, uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	memcpy(vrd_host(d, gpa, 2), &v, 2);
}

static inline void vrd_w32(struct vrd *d, uint64_t gpa, uint32_t v)
{
	v = htole32(v);
	memcpy(vrd_host(d, gpa, 4), &v, 4);
}

static inline uint16_t vrd_r16(struct vrd *d, uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, vrd_host(d, gpa, 2), 2);
	return le16toh(v);
}

static inline uint32_t vrd_r32(struct vrd *d, uint64_t gpa)
{
	uint32_t v;

	memcpy(&v, vrd_host(d, gpa, 4), 4);
	return le32toh(v);
}

/*
 * Zeroed RAM of `ram_size` bytes at VRD_GPA with the rings of a `size`-entry
 * queue at its start (descriptor table, available ring, used ring), and the
 * data area after them. 0 or -1 (size 0, or RAM too small).
 */
static inline int vrd_init_ram(struct vrd *d, uint16_t size, uint64_t ram_size)
{
	memset(d, 0, sizeof(*d));
	if (size == 0)
		return -1;
	d->ram = calloc(1, ram_size);
	if (!d->ram)
		return -1;
	d->ram_gpa = VRD_GPA;
	d->ram_size = ram_size;
	gm_init_fake(&d->gm, d->ram_gpa, d->ram, ram_size);
	d->size = size;
	d->desc_gpa = d->ram_gpa;
	d->avail_gpa = d->desc_gpa + 16ull * size;
	d->used_gpa = (d->avail_gpa + 6ull + 2ull * size + 3) & ~3ull;
	d->data_start = (d->used_gpa + 6ull + 8ull * size + 15) & ~15ull;
	d->data_next = d->data_start;
	if (d->data_start >= d->ram_gpa + ram_size) {
		free(d->ram);
		d->ram = NULL;
		return -1;
	}
	return 0;
}

static inline int vrd_init(struct vrd *d, uint16_t size)
{
	return vrd_init_ram(d, size, VRD_RAM_SIZE);
}

static inline void vrd_exit(struct vrd *d)
{
	free(d->ram);
	d->ram = NULL;
}

/* Program `vq` as the transport would (size, ring addresses) and activate it. */
static inline int vrd_setup_vq(struct vrd *d, struct virtq *vq, bool event_idx, bool indirect)
{
	memset(vq, 0, sizeof(*vq));
	vq->max_size = VQ_MAX_SIZE;
	vq->size = d->size;
	vq->msix_vector = 0xffff;
	vq->desc_gpa = d->desc_gpa;
	vq->avail_gpa = d->avail_gpa;
	vq->used_gpa = d->used_gpa;
	vq->enabled = true;
	return vq_activate(vq, &d->gm, event_idx, indirect);
}

/* `len` bytes (16-aligned) of the data area; aborts when it runs out (a test bug). */
static inline uint64_t vrd_alloc(struct vrd *d, uint64_t len)
{
	uint64_t gpa = d->data_next;

	if (len > d->ram_gpa + d->ram_size - gpa)
		vrd_die("data area exhausted");
	d->data_next = (gpa + len + 15) & ~15ull;
	return gpa;
}

/* A buffer holding a copy of `src` (device-readable unless `write`). */
static inline struct vrd_buf vrd_buf_data(struct vrd *d, const void *src, uint32_t len, bool write)
{
	struct vrd_buf b = { vrd_alloc(d, len ? len : 1), len, write };

	if (src && len)
		memcpy(vrd_host(d, b.gpa, len), src, len);
	return b;
}

/* Raw descriptor write: table at `table_gpa` (the queue's or an indirect one), entry `i`. */
static inline void vrd_write_desc(struct vrd *d, uint64_t table_gpa, unsigned i, uint64_t addr,
				  uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc raw = {
		.addr = htole64(addr),
		.len = htole32(len),
		.flags = htole16(flags),
		.next = htole16(next),
	};

	memcpy(vrd_host(d, table_gpa + 16ull * i, 16), &raw, 16);
}

static inline void vrd_set_desc(struct vrd *d, unsigned i, uint64_t addr, uint32_t len,
				uint16_t flags, uint16_t next)
{
	vrd_write_desc(d, d->desc_gpa, i, addr, len, flags, next);
}

static inline uint16_t vrd_take_desc(struct vrd *d)
{
	uint16_t i = d->next_desc;

	d->next_desc = (uint16_t)((d->next_desc + 1u) % d->size);
	return i;
}

/*
 * Build a chain of `n` buffers: the first n - n_indirect as descriptors in
 * the queue's table, the last n_indirect (if any) in an indirect table that
 * the final direct descriptor points at. Returns the head.
 */
static inline uint16_t vrd_add(struct vrd *d, const struct vrd_buf *b, unsigned n, unsigned n_indirect)
{
	unsigned n_direct = n - n_indirect, total = n_direct + (n_indirect ? 1 : 0);
	uint16_t idx[VQ_MAX_SIZE + 1];

	if (n_indirect > n || total == 0 || total > d->size)
		vrd_die("bad chain shape");
	for (unsigned i = 0; i < total; i++)
		idx[i] = vrd_take_desc(d);
	for (unsigned i = 0; i < n_direct; i++) {
		bool last = i + 1 == total;

		vrd_set_desc(d, idx[i], b[i].gpa, b[i].len,
			     (uint16_t)((b[i].write ? VRING_DESC_F_WRITE : 0) | (last ? 0 : VRING_DESC_F_NEXT)),
			     last ? 0 : idx[i + 1]);
	}
	if (n_indirect) {
		uint64_t table = vrd_alloc(d, 16ull * n_indirect);

		for (unsigned i = 0; i < n_indirect; i++) {
			const struct vrd_buf *x = &b[n_direct + i];
			bool last = i + 1 == n_indirect;

			vrd_write_desc(d, table, i, x->gpa, x->len,
				       (uint16_t)((x->write ? VRING_DESC_F_WRITE : 0) |
						  (last ? 0 : VRING_DESC_F_NEXT)),
				       last ? 0 : (uint16_t)(i + 1));
		}
		vrd_set_desc(d, idx[n_direct], table, 16u * n_indirect, VRING_DESC_F_INDIRECT, 0);
	}
	return idx[0];
}

static inline uint16_t vrd_add_chain(struct vrd *d, const struct vrd_buf *b, unsigned n)
{
	return vrd_add(d, b, n, 0);
}

static inline uint16_t vrd_add_indirect(struct vrd *d, const struct vrd_buf *b, unsigned n)
{
	return vrd_add(d, b, n, n);
}

/* Put `head` in the next available slot without exposing it yet. */
static inline void vrd_place(struct vrd *d, uint16_t head, unsigned ahead)
{
	vrd_w16(d, d->avail_gpa + 4 + 2ull * ((uint16_t)(d->avail_idx + ahead) % d->size), head);
}

static inline void vrd_set_avail_idx(struct vrd *d, uint16_t idx)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
	d->avail_idx = idx;
	vrd_w16(d, d->avail_gpa + 2, idx);
}

/* Make one chain available (ring entry, then idx). */
static inline void vrd_publish(struct vrd *d, uint16_t head)
{
	vrd_place(d, head, 0);
	vrd_set_avail_idx(d, (uint16_t)(d->avail_idx + 1));
}

/*
 * Start the driver (and a freshly activated `vq`) at index `idx` in both
 * rings, as if `idx` requests had come and gone; for wrap-around tests.
 */
static inline void vrd_start_at(struct vrd *d, struct virtq *vq, uint16_t idx)
{
	d->avail_idx = idx;
	d->last_used = idx;
	vrd_w16(d, d->avail_gpa + 2, idx);
	vrd_w16(d, d->used_gpa + 2, idx);
	vq->last_avail = idx;
	vq->used_idx = idx;
}

static inline uint16_t vrd_used_idx(struct vrd *d)
{
	return vrd_r16(d, d->used_gpa + 2);
}

/* Next used entry, if the device has written one. */
static inline bool vrd_get_used(struct vrd *d, uint32_t *id, uint32_t *len)
{
	uint64_t e;

	if (vrd_used_idx(d) == d->last_used)
		return false;
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	e = d->used_gpa + 4 + 8ull * (d->last_used % d->size);
	*id = vrd_r32(d, e);
	*len = vrd_r32(d, e + 4);
	d->last_used++;
	return true;
}

static inline void vrd_set_avail_flags(struct vrd *d, uint16_t flags)
{
	vrd_w16(d, d->avail_gpa, flags);
}

static inline void vrd_set_used_event(struct vrd *d, uint16_t v)
{
	vrd_w16(d, d->avail_gpa + 4 + 2ull * d->size, v);
}

static inline uint16_t vrd_used_flags(struct vrd *d)
{
	return vrd_r16(d, d->used_gpa);
}

static inline uint16_t vrd_avail_event(struct vrd *d)
{
	return vrd_r16(d, d->used_gpa + 4 + 8ull * d->size);
}

#endif

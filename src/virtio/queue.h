/*
 * Split virtqueues (Virtio 1.2, section 2.7) over guest memory. The guest is
 * hostile: every descriptor is copied out of guest memory once and then
 * validated (addresses against RAM with overflow checks, chain length,
 * loops, nested indirect tables, direction order), and the available index
 * may not run ahead by more than the queue size. Any violation marks the
 * queue broken and vq_pop() returns -EIO; the device then calls virtio_fail().
 */
#ifndef KESTREL_QUEUE_H
#define KESTREL_QUEUE_H

#include "util/compiler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "mem/gm.h"

#define VQ_MAX_SIZE   1024      /* largest queue size kestrel offers */
#define VQ_MAX_SEGS   1024      /* a chain (incl. indirect) never has more */

/* Ring layout (little-endian in guest memory). */
struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
_Static_assert(sizeof(struct vring_desc) == 16, "virtq descriptor is 16 bytes");

#define VRING_DESC_F_NEXT      1
#define VRING_DESC_F_WRITE     2
#define VRING_DESC_F_INDIRECT  4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY     1

struct virtq {
	/* Programmed by the driver through the transport. */
	uint16_t size;             /* power of two, 1..max_size */
	uint16_t max_size;
	bool enabled;              /* queue_enable / QueueReady */
	uint16_t msix_vector;      /* transport bookkeeping (PCI) */
	uint64_t desc_gpa, avail_gpa, used_gpa;

	/* Negotiated behaviour, set at activation. */
	bool event_idx;
	bool indirect;

	/* Device-side state. */
	uint16_t last_avail;       /* next available-ring slot to consume */
	uint16_t used_idx;         /* our shadow of used->idx */
	uint16_t signalled_used;   /* used_idx at the last interrupt (EVENT_IDX) */
	bool signalled_used_valid;
	bool broken;
	const char *error;          /* why it broke (static string), for virtio_fail() */
	const struct guest_mem *gm;
};

/* One request: the chain's buffers, driver-readable ("out") first, then device-writable ("in"). */
struct vq_elem {
	uint16_t head;             /* returned to the used ring */
	unsigned out_num, in_num;
	uint64_t out_len, in_len;  /* total bytes each way */
	struct iovec iov[VQ_MAX_SEGS];    /* host addresses, out_num + in_num entries */
	uint64_t gpa[VQ_MAX_SEGS];        /* guest addresses, for logs */
};

/* Reset device-side state (queue reset or device reset); keeps max_size. */
void vq_reset(struct virtq *vq);
/* Validate the driver's ring addresses for the current size and arm the queue. 0 or -EINVAL. */
KESTREL_MUST_CHECK int vq_activate(struct virtq *vq, const struct guest_mem *gm, bool event_idx, bool indirect);

/*
 * Next request: 0, -ENOENT when the ring is empty, -EIO when the driver broke
 * the protocol. Every device-writable buffer of the chain is marked dirty in
 * guest memory now (gm_mark_dirty), whether or not the device writes it.
 */
int vq_pop(struct virtq *vq, struct vq_elem *e);
/* Hand back a chain with `written` bytes written into its device-writable part. */
void vq_push(struct virtq *vq, uint16_t head, uint32_t written);
/* After one or more vq_push(): should the driver be interrupted? (EVENT_IDX or NO_INTERRUPT) */
bool vq_need_notify(struct virtq *vq);

/*
 * Kick suppression while the device is busy: vq_disable_kicks() asks the
 * driver not to notify; vq_enable_kicks() re-arms and returns true when new
 * buffers arrived meanwhile (the caller must then process again).
 */
void vq_disable_kicks(struct virtq *vq);
bool vq_enable_kicks(struct virtq *vq);
bool vq_has_work(struct virtq *vq);

/*
 * Give back the last `n` chains popped and not pushed: they become available
 * again and the next vq_pop() returns them once more. For a device that
 * must abandon partial work (pause); the driver's ring entries for them are
 * still in place, since it cannot reuse a slot before its chain is used.
 */
void vq_unpop(struct virtq *vq, uint16_t n);

/*
 * Snapshot. vq_save() writes the transport's registers and the device-side
 * state (indices, negotiated flags, broken); vq_load() reads them into *vq
 * only if every value is acceptable: an armed (activated) queue must have a
 * power-of-two size up to vq->max_size and aligned rings inside `gm` for
 * that size; a queue that is not armed must have no device-side state. The
 * rings are not touched and the indices are kept as saved (no reset, no
 * re-arming: guest RAM comes back as it was). 0 or -EINVAL (snap_sec_fail).
 */
struct snap_writer;
struct snap_sec;
void vq_save(const struct virtq *vq, struct snap_writer *w);
KESTREL_MUST_CHECK int vq_load(struct virtq *vq, struct snap_sec *s, const struct guest_mem *gm);

/* Copy helpers over an element's iovecs (bounds already checked by vq_pop). */
size_t vq_copy_from_out(const struct vq_elem *e, size_t off, void *dst, size_t len);
size_t vq_copy_to_in(const struct vq_elem *e, size_t off, const void *src, size_t len);

#endif

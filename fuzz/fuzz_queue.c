/*
 * Fuzz the split virtqueue: the input is a hostile driver's view of guest
 * RAM. Byte 0 picks the queue size (1 << (b % 11), so 1..1024), byte 1 the
 * negotiated features and how the device writes back; the rest is copied to
 * the start of a 64 KiB RAM region holding the descriptor table, the
 * available ring, the used ring (in that order, each at its minimum
 * alignment) and whatever the descriptors point at. The harness then plays
 * the device for up to 2 * size requests: pop, copy in and out, push, decide
 * on interrupts, re-arm kicks, and checks everything a device relies on
 * against the memory it knows: iovecs inside RAM and matching their guest
 * addresses, totals, used-ring contents, and the notification decisions
 * against a separate, slow model of the spec's rules.
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mem/gm.h"
#include "virtio/queue.h"
#include "mem/gm_test.h"

#define FQ_GPA 0x10000ull
#define FQ_RAM (64u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fq {
	uint8_t *ram;
	struct guest_mem gm;
	struct virtq vq;
	struct vq_elem *e;
	uint8_t scratch[4096];
};

static uint8_t *fq_host(struct fq *f, uint64_t gpa)
{
	return f->ram + (gpa - FQ_GPA);
}

static uint16_t fq_r16(struct fq *f, uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, fq_host(f, gpa), 2);
	return le16toh(v);
}

static uint32_t fq_r32(struct fq *f, uint64_t gpa)
{
	uint32_t v;

	memcpy(&v, fq_host(f, gpa), 4);
	return le32toh(v);
}

/* An element vq_pop() returned must describe guest RAM exactly. */
static void fq_check_elem(struct fq *f)
{
	const struct vq_elem *e = f->e;
	uint64_t out = 0, in = 0;
	unsigned n = e->out_num + e->in_num;

	if (e->head >= f->vq.size || e->out_num > VQ_MAX_SEGS || e->in_num > VQ_MAX_SEGS ||
	    n > VQ_MAX_SEGS)
		abort();
	for (unsigned i = 0; i < n; i++) {
		uint64_t gpa = e->gpa[i], len = e->iov[i].iov_len;

		if (len == 0 || len > UINT32_MAX)
			abort();
		if (gpa < FQ_GPA || gpa - FQ_GPA > FQ_RAM || len > FQ_RAM - (gpa - FQ_GPA))
			abort();
		if ((uint8_t *)e->iov[i].iov_base != fq_host(f, gpa))
			abort();
		if (i < e->out_num)
			out += len;
		else
			in += len;
	}
	if (out != e->out_len || in != e->in_len || out > UINT32_MAX || in > UINT32_MAX)
		abort();
}

/* Copies stop where the buffers end and touch only the element's buffers. */
static uint32_t fq_copy(struct fq *f, uint8_t mode)
{
	const struct vq_elem *e = f->e;
	size_t off = (size_t)(mode & 0x0f) * 7, want, got, expect;

	want = sizeof(f->scratch);
	got = vq_copy_from_out(e, off, f->scratch, want);
	expect = off < e->out_len ? e->out_len - off : 0;
	if (got != (expect < want ? expect : want))
		abort();
	for (size_t i = 0, k = 0, skip = off; i < e->out_num && k < got; i++) {
		size_t l = e->iov[i].iov_len, n;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		n = l - skip < got - k ? l - skip : got - k;
		if (memcmp(f->scratch + k, (uint8_t *)e->iov[i].iov_base + skip, n))
			abort();
		k += n;
		skip = 0;
	}

	memset(f->scratch, 0xa5, sizeof(f->scratch));
	want = (mode & 0x10) ? sizeof(f->scratch) : 3;
	got = vq_copy_to_in(e, 0, f->scratch, want);
	expect = e->in_len < want ? e->in_len : want;
	if (got != expect)
		abort();
	/* The first in segment starts with what was written. */
	if (e->in_num && ((uint8_t *)e->iov[e->out_num].iov_base)[0] != 0xa5)
		abort();
	return (mode & 0x20) ? (uint32_t)e->in_len : (uint32_t)got;
}

/* The spec's rule, spelled out: notify iff an entry with index used_event was written since the last check. */
static bool fq_model_notify(uint16_t event, uint16_t old, uint16_t new_idx, bool valid)
{
	if (!valid)
		return true;
	for (uint16_t i = old; i != new_idx; i++)
		if (i == event)
			return true;
	return false;
}

static void fq_run(struct fq *f, uint8_t mode)
{
	struct virtq *vq = &f->vq;
	uint64_t avail = vq->avail_gpa, used = vq->used_gpa;
	unsigned rounds = 2u * vq->size;

	for (unsigned r = 0; r < rounds; r++) {
		uint16_t last = vq->last_avail, used_idx, event, old, flags;
		uint64_t slot;
		bool valid, notify;
		uint32_t written;
		int rc;

		if (r == 0 || (mode & 0x40)) {
			/* With EVENT_IDX used->flags is not the device's to change (whatever the driver left). */
			flags = fq_r16(f, used);
			vq_disable_kicks(vq);
			if (fq_r16(f, used) != (vq->event_idx ? flags : VRING_USED_F_NO_NOTIFY))
				abort();
		}
		rc = vq_pop(vq, f->e);
		if (rc == -EIO) {
			if (!vq->broken || !vq->error || vq->last_avail != last)
				abort();
			if (vq_pop(vq, f->e) != -EIO || vq_has_work(vq))
				abort();
			return;
		}
		if (rc == -ENOENT) {
			if (vq->broken || vq->last_avail != last || vq_has_work(vq))
				abort();
			if (vq_enable_kicks(vq))
				abort();
			if (vq->event_idx ? fq_r16(f, used + 4 + 8ull * vq->size) != vq->last_avail
					  : fq_r16(f, used) != 0)
				abort();
			return;
		}
		if (rc != 0 || vq->broken || vq->last_avail != (uint16_t)(last + 1))
			abort();
		fq_check_elem(f);

		written = fq_copy(f, mode);
		used_idx = vq->used_idx;
		vq_push(vq, f->e->head, written);
		slot = used + 4 + 8ull * (used_idx % vq->size);
		if (vq->used_idx != (uint16_t)(used_idx + 1) || fq_r16(f, used + 2) != vq->used_idx ||
		    fq_r32(f, slot) != f->e->head || fq_r32(f, slot + 4) != written)
			abort();

		if ((mode & 0x80) && (r & 1))
			continue;   /* batch two pushes per check */
		event = fq_r16(f, avail + 4 + 2ull * vq->size);
		flags = fq_r16(f, avail);
		old = vq->signalled_used;
		valid = vq->signalled_used_valid;
		notify = vq_need_notify(vq);
		if (vq->event_idx ? notify != fq_model_notify(event, old, vq->used_idx, valid)
				  : notify != !(flags & VRING_AVAIL_F_NO_INTERRUPT))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fq *f;
	uint16_t qsize;
	uint8_t mode;
	uint64_t desc, avail, used;

	if (size < 2)
		return 0;
	qsize = (uint16_t)(1u << (data[0] % 11));
	mode = data[1];
	f = calloc(1, sizeof(*f));
	if (!f)
		abort();
	f->ram = calloc(1, FQ_RAM);
	f->e = calloc(1, sizeof(*f->e));
	if (!f->ram || !f->e)
		abort();
	memcpy(f->ram, data + 2, size - 2 < FQ_RAM ? size - 2 : FQ_RAM);
	gm_init_fake(&f->gm, FQ_GPA, f->ram, FQ_RAM);

	desc = FQ_GPA;
	avail = desc + 16ull * qsize;
	used = (avail + 6 + 2ull * qsize + 3) & ~3ull;
	f->vq.max_size = VQ_MAX_SIZE;
	f->vq.size = qsize;
	f->vq.desc_gpa = desc;
	f->vq.avail_gpa = avail;
	f->vq.used_gpa = used;
	f->vq.enabled = true;
	if (vq_activate(&f->vq, &f->gm, mode & 1, mode & 2) != 0)
		abort();   /* the layout above is always valid */
	fq_run(f, mode);

	vq_reset(&f->vq);
	if (f->vq.broken || f->vq.gm || vq_pop(&f->vq, f->e) != -ENOENT)
		abort();
	free(f->e);
	free(f->ram);
	free(f);
	return 0;
}

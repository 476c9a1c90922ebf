#include "devices/virtio/rng.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#define RNG_QUEUE_SIZE 256
/* A request gets at most this much entropy, however large its buffer. */
#define RNG_MAX_BYTES_PER_REQ (64u << 10)

/* Fill the device-writable part of one request; returns bytes written. */
static uint32_t rng_fill(const struct vq_elem *e, uint32_t budget)
{
	uint32_t written = 0;

	for (unsigned i = e->out_num; i < e->out_num + e->in_num && written < budget; i++) {
		size_t want = e->iov[i].iov_len;
		ssize_t n;

		if (want > budget - written)
			want = budget - written;
		n = getrandom(e->iov[i].iov_base, want, GRND_NONBLOCK);
		if (n <= 0)
			break;
		written += (uint32_t)n;
	}
	return written;
}

/* One pass over the available ring, at most its size; false after a protocol violation. */
static bool rng_round(struct virtio_rng *r, struct virtq *vq, struct vq_elem *e, bool *pushed)
{
	for (unsigned n = 0; n < vq->size; n++) {
		int rc = vq_pop(vq, e);
		uint32_t w;

		if (rc == -ENOENT)
			break;
		if (rc < 0) {
			virtio_fail(&r->vdev, "rng: bad descriptor chain");
			return false;
		}
		w = rng_fill(e, RNG_MAX_BYTES_PER_REQ);
		r->bytes += w;
		vq_push(vq, e->head, w);
		*pushed = true;
	}
	return true;
}

static void rng_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_rng *r = d->priv;
	struct virtq *vq = &d->queues[q];
	struct vq_elem *e = malloc(sizeof(*e));
	bool pushed = false, ok = true;

	if (!e)
		return;
	/* Kicks off while we work; re-arming reports requests that raced in. */
	do {
		vq_disable_kicks(vq);
		ok = rng_round(r, vq, e, &pushed);
	} while (ok && vq_enable_kicks(vq));
	free(e);
	if (pushed)
		virtio_notify_queue(d, q);
}

static const struct virtio_dev_ops rng_ops = {
	.queue_notify = rng_queue_notify,
};

void rng_init(struct virtio_rng *r, const struct guest_mem *gm)
{
	virtio_dev_init(&r->vdev, "virtio-rng", VIRTIO_ID_RNG, &rng_ops, r, 1, RNG_QUEUE_SIZE, 0, gm);
	r->bytes = 0;
}

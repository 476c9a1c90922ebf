#include "devices/virtio/rng.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#define RNG_QUEUE_SIZE 256
/* Per kick, at most one ring's worth of requests and this many bytes. */
#define RNG_MAX_BYTES_PER_KICK (1u << 20)

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

static void rng_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_rng *r = d->priv;
	struct virtq *vq = &d->queues[q];
	struct vq_elem *e = malloc(sizeof(*e));
	uint32_t budget = RNG_MAX_BYTES_PER_KICK;
	bool pushed = false;

	if (!e)
		return;
	for (unsigned n = 0; n < vq->size && budget; n++) {
		int rc = vq_pop(vq, e);
		uint32_t w;

		if (rc == -ENOENT)
			break;
		if (rc < 0) {
			virtio_fail(d, "rng: bad descriptor chain");
			break;
		}
		w = rng_fill(e, budget);
		budget -= w;
		r->bytes += w;
		vq_push(vq, e->head, w);
		pushed = true;
	}
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

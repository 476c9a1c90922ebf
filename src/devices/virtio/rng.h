#ifndef KESTREL_VIRTIO_RNG_H
#define KESTREL_VIRTIO_RNG_H

#include "virtio/virtio.h"

/* virtio-rng (Virtio 1.2 section 5.4): one request queue, filled from getrandom(). */
struct virtio_rng {
	struct virtio_dev vdev;
	uint64_t bytes;
};

void rng_init(struct virtio_rng *r, const struct guest_mem *gm);

#endif

/*
 * virtio-mmio, version 2 (Virtio 1.2 section 4.2): one 4 KiB register window
 * per device and one interrupt line. For kernels with CONFIG_VIRTIO_MMIO and
 * command-line device discovery (virtio_mmio.device=4K@ADDR:IRQ, which
 * kestrel appends); the Debian cloud kernel has neither, so PCI is the default.
 */
#ifndef KESTREL_VIRTIO_MMIO_H
#define KESTREL_VIRTIO_MMIO_H

#include "util/compiler.h"

#include <pthread.h>

#include "bus/bus.h"
#include "bus/irq.h"
#include "loop/loop.h"
#include "virtio/virtio.h"

#define VMMIO_SIZE 0x1000

struct virtio_mmio;

struct vmmio_kick_ctx {
	struct virtio_mmio *vm;
	unsigned q;
};

struct virtio_mmio {
	struct virtio_dev *vdev;
	const struct msi_host *msi;
	struct loop *loop;
	struct irq irq;                 /* set up by the machine */
	pthread_mutex_t lock;
	uint32_t dfselect, gfselect, queue_select;
	uint32_t isr;
	uint64_t base;
	int kick_fd[VIRTIO_MAX_QUEUES];
	struct vmmio_kick_ctx kick_ctx[VIRTIO_MAX_QUEUES];
	bool kicks_on_ioeventfd;
	struct log_ratelimit rl;
};

KESTREL_MUST_CHECK int virtio_mmio_init(struct virtio_mmio *vm, struct virtio_dev *vdev, const struct msi_host *msi,
		     struct loop *loop, uint64_t base);
void virtio_mmio_exit(struct virtio_mmio *vm);

/*
 * Snapshot: the window's base, the feature and queue selectors, the
 * interrupt status, the virtio core (virtio_dev_save) and the device's own
 * state (its save op). Loading checks it all first (apply false stops
 * there, changing nothing); apply true then takes it over, sets the line
 * from the interrupt status, restarts a device whose driver had reached
 * DRIVER_OK and queues one kick per enabled queue. The ioeventfds on
 * QueueNotify were registered at init and stay. 0, or -EINVAL / -errno
 * with a one-line reason in err; the caller calls snap_sec_end().
 */
#define VMMIO_SNAP_VERSION 1
struct snap_writer;
struct snap_sec;
void virtio_mmio_save(const struct virtio_mmio *vm, struct snap_writer *w);
KESTREL_MUST_CHECK int virtio_mmio_load(struct virtio_mmio *vm, struct snap_sec *s, bool apply, char *err,
		size_t errlen);

extern const struct bus_dev_ops virtio_mmio_ops;

#endif

/*
 * Virtio 1.x device model, transport-independent. A device (blk, net,
 * console, rng) implements virtio_dev_ops; a transport (PCI or MMIO) owns the
 * registers the driver programs and calls into the device on feature
 * negotiation, activation, reset and queue notifications. Devices raise
 * interrupts through virtio_notify_queue()/virtio_notify_config() without
 * knowing whether MSI-X via irqfd or an INTx line is behind them.
 */
#ifndef KESTREL_VIRTIO_H
#define KESTREL_VIRTIO_H

#include "util/compiler.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem/gm.h"
#include "util/log.h"
#include "virtio/queue.h"

/* Feature bits (Virtio 1.2, section 6). */
#define VIRTIO_F_INDIRECT_DESC   28
#define VIRTIO_F_EVENT_IDX       29
#define VIRTIO_F_VERSION_1       32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_RING_PACKED     34
#define VIRTIO_F_RING_RESET      40
#define VIRTIO_BIT(f) (1ull << (f))

/* Device status (section 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE  0x01
#define VIRTIO_STATUS_DRIVER       0x02
#define VIRTIO_STATUS_DRIVER_OK    0x04
#define VIRTIO_STATUS_FEATURES_OK  0x08
#define VIRTIO_STATUS_NEEDS_RESET  0x40
#define VIRTIO_STATUS_FAILED       0x80

/* Device ids (section 5). */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG     4

#define VIRTIO_MAX_QUEUES 64

/* Layout of the core's part of a snapshot (virtio_dev_save). */
#define VIRTIO_SNAP_VERSION 1

struct virtio_dev;
struct snap_writer;
struct snap_sec;

struct virtio_dev_ops {
	/* Device-specific feature bits offered (VERSION_1, EVENT_IDX, INDIRECT are added by the core). */
	uint64_t (*features)(struct virtio_dev *d);
	/* Device configuration space; off+len is already checked against config_size. */
	void (*config_read)(struct virtio_dev *d, uint32_t off, void *buf, uint32_t len);
	void (*config_write)(struct virtio_dev *d, uint32_t off, const void *buf, uint32_t len);
	/* FEATURES_OK: may refuse a combination (returns false). Optional. */
	bool (*features_ok)(struct virtio_dev *d, uint64_t features);
	/* DRIVER_OK: queues are set up; start processing. 0 or -errno (then NEEDS_RESET). */
	int (*activate)(struct virtio_dev *d);
	/* Driver reset (status 0) or transport reset: stop using the queues, drop in-flight state. */
	void (*reset)(struct virtio_dev *d);
	/*
	 * The driver kicked queue `q`. Called on the device's I/O thread when the
	 * kick came through an ioeventfd, or on a vCPU thread for MMIO-exit kicks;
	 * devices must not block here.
	 */
	void (*queue_notify)(struct virtio_dev *d, unsigned q);

	/*
	 * Pause. Called on the main thread once the vCPUs are paused and the
	 * device's I/O thread is stopped (joined). Afterwards nothing is in
	 * flight: every popped chain was pushed (interrupts sent) or given back
	 * with vq_unpop(), and no host operation holds a pointer into guest
	 * RAM. The device continues by itself when its I/O thread restarts.
	 * Optional (a device that pops and pushes in one go needs none).
	 */
	void (*quiesce)(struct virtio_dev *d);
	/* Snapshot of the device's own state (fields only; its layout version first). Optional. */
	void (*save)(struct virtio_dev *d, struct snap_writer *w);
	/*
	 * Read what save() wrote. apply false: only check it against this
	 * device, changing nothing; apply true: check and take it over. 0, or
	 * -EINVAL with a one-line reason in err. Optional (then save is unset too).
	 */
	int (*load)(struct virtio_dev *d, struct snap_sec *s, bool apply, char *err, size_t errlen);
	/*
	 * A snapshot restored DRIVER_OK: start processing again as activate
	 * does, but keep the queue indices and anything load() restored.
	 * Optional: activate is used instead.
	 */
	int (*restore)(struct virtio_dev *d);
};

/* What a transport provides to the device core. */
struct virtio_transport_ops {
	/* Signal "used buffers" for queue q (MSI-X vector of q, or INTx + ISR bit 0). */
	void (*notify_queue)(struct virtio_dev *d, unsigned q);
	/* Signal a configuration change (MSI-X config vector, or INTx + ISR bit 1). */
	void (*notify_config)(struct virtio_dev *d);
	/*
	 * For devices whose queues another process serves (vhost-user): the
	 * eventfd the driver's kicks of queue q land in, and the eventfd that
	 * raises q's interrupt without the VMM (an irqfd), or -1 when there is
	 * none (INTx, no vector): then the device forwards through notify_queue.
	 * Optional (a transport without them cannot carry such devices).
	 */
	int (*queue_kick_fd)(struct virtio_dev *d, unsigned q);
	int (*queue_irq_fd)(struct virtio_dev *d, unsigned q);
};

/* Per-device counters, exported by --stats and the metrics file. */
struct virtio_metrics {
	uint64_t kicks;          /* queue notifications received (ioeventfd or exit) */
	uint64_t interrupts;     /* queue/config interrupts sent */
	uint64_t suppressed;     /* interrupts not sent thanks to EVENT_IDX / NO_INTERRUPT */
	uint64_t requests;       /* requests completed (blk) */
	uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;  /* net */
	uint64_t errors;
	uint64_t throttled;      /* requests held back by a rate limiter (each hold once) */
};

struct virtio_dev {
	const char *name;
	uint16_t device_id;
	const struct virtio_dev_ops *ops;
	const struct virtio_transport_ops *tops;
	void *transport;                 /* the transport's state */
	const struct guest_mem *gm;
	void *priv;                      /* the device's state */

	uint32_t config_size;
	uint64_t host_features;          /* core + device bits, computed at init */
	uint64_t driver_features;        /* what the driver acknowledged */
	uint8_t status;
	uint8_t config_generation;

	unsigned num_queues;
	struct virtq queues[VIRTIO_MAX_QUEUES];
	/*
	 * Set before the transport is initialised: a vhost-user back-end serves
	 * the queues and reads the kick eventfds itself, so the transport must
	 * not watch them (two readers would steal each other's kicks).
	 */
	bool vhost_user;

	pthread_mutex_t lock;            /* status, features, queue setup */
	struct virtio_metrics metrics;
	struct log_ratelimit rl;
};

/* Set up the common state; queue sizes start at max_queue_size. */
void virtio_dev_init(struct virtio_dev *d, const char *name, uint16_t device_id,
		     const struct virtio_dev_ops *ops, void *priv, unsigned num_queues,
		     uint16_t max_queue_size, uint32_t config_size, const struct guest_mem *gm);

/* Transport side: the driver wrote the status register (handles reset, FEATURES_OK, DRIVER_OK). */
void virtio_set_status(struct virtio_dev *d, uint8_t status);
/* Transport side: the driver wrote 32 bits of its feature word `sel` (0 or 1). */
void virtio_set_driver_features(struct virtio_dev *d, unsigned sel, uint32_t value);
uint32_t virtio_get_host_features(struct virtio_dev *d, unsigned sel);
void virtio_reset(struct virtio_dev *d);

bool virtio_has_feature(const struct virtio_dev *d, unsigned bit);

/* Device side: interrupt the driver if the queue's suppression state allows it. */
void virtio_notify_queue(struct virtio_dev *d, unsigned q);
void virtio_notify_config(struct virtio_dev *d);

/* Pause: the device's quiesce op, if any (see virtio_dev_ops.quiesce). */
void virtio_dev_quiesce(struct virtio_dev *d);

/*
 * Snapshot of the core: device id, features offered and acknowledged,
 * status, config generation and every queue (vq_save). Transports put it in
 * their own section (virtio_pci_save / virtio_mmio_save).
 */
void virtio_dev_save(const struct virtio_dev *d, struct snap_writer *w);

/* The core's state as read from a snapshot, checked but not yet applied. */
struct virtio_dev_snap {
	uint64_t driver_features;
	uint8_t status;
	uint8_t config_generation;
	struct virtq queues[VIRTIO_MAX_QUEUES];
};

/*
 * Read and check the core's state against `d` (same device id and number of
 * queues; with FEATURES_OK the acknowledged features must be offered by this
 * device and acceptable to it; DRIVER_OK needs FEATURES_OK and exactly the
 * enabled queues armed, with the negotiated ring features; every queue as
 * vq_load checks it). d is not changed. 0 or -EINVAL with a reason in err.
 */
KESTREL_MUST_CHECK int virtio_dev_load_check(const struct virtio_dev *d, struct snap_sec *s, struct virtio_dev_snap *st,
			  char *err, size_t errlen);
/*
 * Check the device's own part of the state, which follows the core's at
 * `s` (its load op with apply false; nothing changes). `dev_at` remembers
 * where it starts, for virtio_dev_load_commit. 0 or -EINVAL with err.
 */
KESTREL_MUST_CHECK int virtio_dev_load_check_device(struct virtio_dev *d, struct snap_sec *s, struct snap_sec *dev_at,
				 char *err, size_t errlen);
/*
 * Take over a checked state: a device that is running is reset first (its
 * reset op), then registers and queues are replaced, then the device's own
 * part at `dev_at` is applied (after the core, whose commit resets a running
 * device and must not undo it). No side effects beyond that: the transport
 * re-creates its host plumbing and then calls virtio_dev_restored().
 */
KESTREL_MUST_CHECK int virtio_dev_load_commit(struct virtio_dev *d, const struct virtio_dev_snap *st,
		struct snap_sec *dev_at, char *err, size_t errlen);
/*
 * After a restore: a device whose driver had reached DRIVER_OK (and that
 * did not need a reset) resumes processing through its restore op (or
 * activate), with the queue indices as restored. 0 or -errno (the device
 * then needs a reset, as after a failed activation).
 */
KESTREL_MUST_CHECK int virtio_dev_restored(struct virtio_dev *d);

/*
 * Protocol violation by the driver: set DEVICE_NEEDS_RESET, raise a config
 * interrupt, log once (rate-limited), stop processing. The VMM keeps running.
 */
void virtio_fail(struct virtio_dev *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

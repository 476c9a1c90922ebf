/*
 * virtio-blk (Virtio 1.2, section 5.2) over a block backend.
 *
 * Wiring: blk_attach() has the device's I/O thread watch blk_event_fd() and
 * call blk_process_completions() when it is readable. Queue kicks arrive through virtio_dev_ops.queue_notify
 * from the transport, on the I/O thread (ioeventfd) or a vCPU thread (MMIO
 * exit); an internal lock serialises both with completion handling.
 */
#ifndef KESTREL_VIRTIO_BLK_H
#define KESTREL_VIRTIO_BLK_H

#include "util/compiler.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/block.h"
#include "util/ratelimit.h"
#include "virtio/virtio.h"

struct loop;

#define BLK_SERIAL_LEN        20     /* VIRTIO_BLK_T_GET_ID: NUL-padded, no NUL at 20 */
#define BLK_DEFAULT_QUEUE_SIZE 256
#define BLK_MAX_QUEUES        16
#define BLK_SNAP_VERSION      1      /* the device's part of a snapshot (virtio_dev_ops.save) */

struct blk_config {
	char path[PATH_MAX];
	bool read_only;
	bool direct;
	enum block_engine engine;
	unsigned num_queues;           /* > 1 offers VIRTIO_BLK_F_MQ */
	uint16_t queue_size;           /* power of two, 0: BLK_DEFAULT_QUEUE_SIZE */
	char serial[BLK_SERIAL_LEN + 1]; /* empty: derived from the path */
	bool vhost_user;               /* path is a vhost-user back-end's socket (docs/vhost-user.md) */
	struct ratelimit_config rate_limit; /* all zero: unlimited */
};

struct virtio_blk;

/* Defaults: read-write, buffered, io_uring, one queue, derived serial. */
void blk_config_init(struct blk_config *cfg);

/*
 * Parse `PATH[,ro][,direct][,engine=uring|sync][,queues=N][,serial=S]
 * [,bw=BYTES][,iops=N]` or `vhost-user=SOCKET` (the --disk argument) on top
 * of blk_config_init() defaults; bw and iops are per-second limits (token
 * buckets of one second's worth, refilled over 1000 ms). 0, or -EINVAL with
 * a one-line message in err. PATH cannot contain a comma.
 */
KESTREL_MUST_CHECK int blk_parse_spec(const char *spec, struct blk_config *cfg, char *err, size_t errlen);

/* Open the backend and set up the device. 0, or -errno with a one-line message. */
KESTREL_MUST_CHECK int blk_new(struct virtio_blk **out, const struct blk_config *cfg, const struct guest_mem *gm,
	    char *err, size_t errlen);
/* Waits for I/O in flight, closes the backend. NULL is a no-op. */
void blk_free(struct virtio_blk *b);

struct virtio_dev *blk_virtio(struct virtio_blk *b);
/* Readable when completions (or deferred queue work) are ready. */
int blk_event_fd(const struct virtio_blk *b);
/* Run finished I/O, complete requests, continue queues left for later; notify. */
void blk_process_completions(struct virtio_blk *b);
/* Reap completions on this loop's thread from now on. 0 or -errno (-EBUSY: attached). */
KESTREL_MUST_CHECK int blk_attach(struct virtio_blk *b, struct loop *l);
/* With the loop stopped, or on its thread; blk_free() detaches too. */
void blk_detach(struct virtio_blk *b);

uint64_t blk_capacity(const struct virtio_blk *b);   /* in 512-byte sectors */
/*
 * Replace the rate limiter on a running device (any thread; cfg checked by
 * ratelimit_config_check). A throttled queue is retried at once under the
 * new limits.
 */
void blk_set_rate_limit(struct virtio_blk *b, const struct ratelimit_config *cfg);
/* Requests the limiter has held back so far (each hold counts once). */
uint64_t blk_throttled(struct virtio_blk *b);

/* The backend, for tests (fault injection) and statistics. */
struct block_backend *blk_backend(struct virtio_blk *b);

#endif

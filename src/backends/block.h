/*
 * Block backend: a raw image file or host block device behind one small
 * asynchronous API, with two engines: io_uring (one ring per backend, its
 * completions signalled on an eventfd for an epoll loop) and plain
 * synchronous syscalls (the fallback when io_uring is unavailable).
 *
 * Every operation completes exactly once through its `done` callback with
 * res = bytes transferred (read/write, always the full length: short
 * transfers are continued, and a transfer that makes no progress fails with
 * -EIO), 0 (flush, discard, write zeroes) or -errno. With the sync engine the
 * callback runs before the submitting call returns; with io_uring it runs
 * from block_reap() or block_drain(), never from inside a submit call.
 *
 * A backend is single-threaded: its owner serialises every call (the
 * virtio-blk device holds its lock around them). Callbacks may submit new
 * operations.
 */
#ifndef KESTREL_BLOCK_H
#define KESTREL_BLOCK_H

#include "util/compiler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct block_backend;

enum block_engine {
	BLOCK_ENGINE_URING = 0,
	BLOCK_ENGINE_SYNC = 1,
};

struct block_opts {
	bool read_only;            /* O_RDONLY + shared lock; writes fail with -EROFS */
	bool direct;               /* O_DIRECT: bypass the host page cache */
	enum block_engine engine;
	unsigned depth;            /* most operations in flight; 0: BLOCK_DEFAULT_DEPTH */
};

#define BLOCK_DEFAULT_DEPTH 256
#define BLOCK_MAX_DEPTH     16384

/* Flags for block_writev() and block_write_zeroes(). */
#define BLOCK_F_DSYNC     (1u << 0)  /* stable on completion (RWF_DSYNC): write-through */
#define BLOCK_F_MAY_UNMAP (1u << 1)  /* write zeroes may deallocate (punch a hole) */

typedef void (*block_done_fn)(void *opaque, int64_t res);

/*
 * Open `path` and take an exclusive lock (shared when read-only) so that two
 * VMMs cannot write the same image. On failure returns -errno and writes a
 * one-line message ("disk PATH: locked by another process") to err.
 */
KESTREL_MUST_CHECK int block_open(struct block_backend **out, const char *path, const struct block_opts *o,
	       char *err, size_t errlen);
/* Waits for operations in flight (their callbacks run), then closes. NULL is a no-op. */
void block_close(struct block_backend *b);

uint64_t block_size(const struct block_backend *b);         /* bytes */
bool block_read_only(const struct block_backend *b);
enum block_engine block_engine_used(const struct block_backend *b);  /* after any fallback */
/* Smallest offset/length granularity the host accepts (512 unless O_DIRECT needs more). */
uint32_t block_logical_block_size(const struct block_backend *b);
unsigned block_inflight(const struct block_backend *b);

/*
 * Submission. 0: accepted, `done` will run exactly once. -errno: refused
 * (-EROFS on a read-only backend, -EINVAL for a range beyond the end of the
 * image or too many iovecs, -EAGAIN when `depth` operations are in flight),
 * `done` never runs. `iov` must stay valid until `done` runs.
 */
KESTREL_MUST_CHECK int block_readv(struct block_backend *b, const struct iovec *iov, unsigned iovcnt, uint64_t off,
		block_done_fn done, void *opaque);
KESTREL_MUST_CHECK int block_writev(struct block_backend *b, const struct iovec *iov, unsigned iovcnt, uint64_t off,
		 unsigned flags, block_done_fn done, void *opaque);
/* fdatasync: every write completed before this call is on stable storage when it completes. */
KESTREL_MUST_CHECK int block_flush(struct block_backend *b, block_done_fn done, void *opaque);
/* Advisory deallocation (FALLOC_FL_PUNCH_HOLE); succeeds where the host cannot punch holes. */
KESTREL_MUST_CHECK int block_discard(struct block_backend *b, uint64_t off, uint64_t len, block_done_fn done,
		  void *opaque);
/* The range reads back as zeroes afterwards: FALLOC_FL_ZERO_RANGE, else written zeroes. */
KESTREL_MUST_CHECK int block_write_zeroes(struct block_backend *b, uint64_t off, uint64_t len, unsigned flags,
		       block_done_fn done, void *opaque);

/*
 * Batching: between begin and submit, io_uring operations are queued but not
 * handed to the kernel, so one io_uring_submit() carries a whole kick's
 * worth. Without a batch each operation is submitted at once. Returns 0 or
 * -errno from io_uring_submit (the operations concerned then fail through
 * their callbacks).
 */
void block_batch_begin(struct block_backend *b);
int block_batch_submit(struct block_backend *b);

/*
 * An eventfd that becomes readable when completions are ready (io_uring) or
 * after block_wakeup(). The owner's loop then calls block_reap(). Valid for
 * both engines.
 */
int block_event_fd(const struct block_backend *b);
/* Run the callbacks of finished operations; never blocks. No-op for the sync engine. */
void block_reap(struct block_backend *b);
/* Block until nothing is in flight, running callbacks (reset and close). */
void block_drain(struct block_backend *b);
/* Make block_event_fd() readable, so the owner's loop comes back (deferred work). */
void block_wakeup(struct block_backend *b);

#endif

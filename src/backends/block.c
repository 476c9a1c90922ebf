/*
 * Block backend: raw image or block device, io_uring or synchronous
 * syscalls. See block.h for the contract.
 *
 * Every operation is a small state machine (struct block_req) that both
 * engines drive the same way: blk_req_step() names the next syscall,
 * the engine issues it (inline for sync, as an SQE for io_uring), and
 * block_req_advance() folds its result in and says whether another step is
 * needed. That is where the policies live:
 *  - short reads and writes are continued from where they stopped; a step
 *    that transfers nothing fails the operation with -EIO (the image shrank
 *    under us, or the host refuses to make progress); -EINTR and -EAGAIN are
 *    retried a few times;
 *  - discard is advisory: a host that cannot punch holes reports success;
 *  - write zeroes tries FALLOC_FL_PUNCH_HOLE (when the caller allows
 *    unmapping) and FALLOC_FL_ZERO_RANGE, remembers which the host refuses,
 *    and falls back to writing zeroes.
 *
 * Durability (why an acknowledged flush survives kill -9 and power loss):
 * a write is only completed to the caller after the kernel has returned from
 * pwritev()/its io_uring CQE, so its data is in the host page cache (or, with
 * O_DIRECT, handed to the device) and no longer in any buffer of ours: a
 * killed kestrel loses nothing the guest was told was written. A flush is
 * fdatasync() (IORING_OP_FSYNC with IORING_FSYNC_DATASYNC, whose CQE is
 * posted only after the kernel's fsync path has returned), which covers
 * every write the kernel had completed when it was issued and only returns
 * once that data and the metadata needed to read it back (file size,
 * allocation) are on stable storage, with the device's volatile cache
 * flushed. The flush is completed to the guest only after that, so a flush
 * the guest saw completed also survives a host crash. That is exactly the
 * spec's rule (Virtio 1.2, 5.2.6.2): a write is stable once a FLUSH sent
 * after the write completed has itself completed; writes still in flight
 * when the flush is issued are not covered, and need not be.
 */
#include "backends/block.h"
#include "backends/block_test.h"   /* block_set_fault is defined here, for tests only */
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif

#define BLOCK_IOV_MAX     1024                 /* UIO_MAXIOV: what preadv and io_uring accept */
#define BLOCK_ZERO_CHUNK  (256u << 10)         /* bytes of zeroes written per step */
#define BLOCK_BOUNCE_MAX  (64ull << 20)        /* O_DIRECT bounce memory per backend */
#define BLOCK_RETRIES     8                    /* -EINTR/-EAGAIN retries per operation */

#define ZMODE_PUNCH (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
#define ZMODE_ZERO  (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)
#define ZMODE_FILL  0

enum block_op { OP_READ, OP_WRITE, OP_FLUSH, OP_DISCARD, OP_ZEROES };

struct block_req {
	struct block_req *next_free;
	enum block_op op;
	unsigned flags;
	const struct iovec *iov;     /* the caller's vector, or &bounce_iov */
	unsigned iovcnt;
	uint64_t off, len;
	uint64_t progress;           /* bytes done (read, write, zero fill) */
	int zmode;                   /* write zeroes: current fallocate mode or ZMODE_FILL */
	int fault;                   /* injected -errno */
	unsigned retries;

	/* The step in flight: a window of iov (or of zeroes). */
	struct iovec *win;
	unsigned win_cap, win_cnt;

	/* O_DIRECT with misaligned guest buffers: an aligned copy. */
	void *bounce;
	struct iovec bounce_iov;
	const struct iovec *user_iov;
	unsigned user_cnt;

	block_done_fn done;
	void *opaque;
};

struct block_engine_ops {
	/* Issue r's next step. The sync engine runs it to the end, callback included. */
	void (*start)(struct block_backend *b, struct block_req *r);
	int (*submit)(struct block_backend *b);
	void (*reap)(struct block_backend *b);
	void (*drain)(struct block_backend *b);
};

struct block_backend {
	const struct block_engine_ops *ops;
	enum block_engine engine;
	int fd;
	int efd;
	char *path;
	uint64_t size;
	bool read_only;
	bool direct;
	uint32_t mem_align, off_align;

	struct io_uring ring;
	bool have_ring;
	unsigned queued;             /* SQEs prepared, not yet submitted */
	unsigned batch;              /* nesting of block_batch_begin */

	unsigned depth, inflight;
	struct block_req *reqs, *free;

	bool no_punch, no_zero_range;
	void *zeroes;                /* BLOCK_ZERO_CHUNK zero bytes, allocated on first use */
	uint64_t bounce_bytes;
	struct block_fault fault;
	struct log_ratelimit rl;
};

static const struct block_engine_ops block_sync_ops;
static const struct block_engine_ops block_uring_ops;

/* ---- request state machine (engine-independent) ---- */

static uint64_t iov_total(const struct iovec *iov, unsigned cnt, bool *overflow)
{
	uint64_t n = 0;
	unsigned i;

	*overflow = false;
	for (i = 0; i < cnt; i++) {
		if (iov[i].iov_len > UINT64_MAX - n)
			*overflow = true;
		n += iov[i].iov_len;
	}
	return n;
}

static int block_zero_buf(struct block_backend *b)
{
	if (b->zeroes)
		return 0;
	b->zeroes = aligned_alloc(4096, BLOCK_ZERO_CHUNK);
	if (!b->zeroes)
		return -ENOMEM;
	memset(b->zeroes, 0, BLOCK_ZERO_CHUNK);
	return 0;
}

/* Build r->win: the part of the transfer still to do, capped by the fault hook. */
static void block_req_window(struct block_backend *b, struct block_req *r)
{
	uint64_t want = r->len - r->progress, skip = r->progress;
	unsigned i;

	if (b->fault.max_xfer && want > b->fault.max_xfer)
		want = b->fault.max_xfer;
	r->win_cnt = 0;
	if (r->op == OP_ZEROES) {
		r->win[0].iov_base = b->zeroes;
		r->win[0].iov_len = want < BLOCK_ZERO_CHUNK ? want : BLOCK_ZERO_CHUNK;
		r->win_cnt = 1;
		return;
	}
	for (i = 0; i < r->iovcnt && want; i++) {
		uint64_t l = r->iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		l -= skip;
		if (l > want)
			l = want;
		r->win[r->win_cnt].iov_base = (uint8_t *)r->iov[i].iov_base + skip;
		r->win[r->win_cnt].iov_len = l;
		r->win_cnt++;
		want -= l;
		skip = 0;
	}
}

static struct block_req *block_req_get(struct block_backend *b)
{
	struct block_req *r = b->free;

	if (!r)
		return NULL;
	b->free = r->next_free;
	b->inflight++;
	return r;
}

static void block_req_put(struct block_backend *b, struct block_req *r)
{
	if (r->bounce) {
		free(r->bounce);
		b->bounce_bytes -= r->bounce_iov.iov_len;
	}
	free(r->win);
	memset(r, 0, sizeof(*r));
	r->next_free = b->free;
	b->free = r;
	b->inflight--;
}

static void block_req_finish(struct block_backend *b, struct block_req *r, int64_t res)
{
	block_done_fn done = r->done;
	void *opaque = r->opaque;

	if (res >= 0 && r->op == OP_READ && r->bounce) {
		const uint8_t *src = r->bounce;
		unsigned i;

		for (i = 0; i < r->user_cnt; i++) {
			memcpy(r->user_iov[i].iov_base, src, r->user_iov[i].iov_len);
			src += r->user_iov[i].iov_len;
		}
	}
	/* Release first: the callback may submit again and reuse the slot. */
	block_req_put(b, r);
	done(opaque, res);
}

static bool block_transient(int64_t res)
{
	return res == -EINTR || res == -EAGAIN;
}

/* Fold a step's result in. true: issue the next step; false: r finished (callback ran). */
static bool block_req_advance(struct block_backend *b, struct block_req *r, int64_t res)
{
	if (r->fault) {
		block_req_finish(b, r, r->fault);
		return false;
	}
	if (block_transient(res) && r->retries++ < BLOCK_RETRIES)
		return true;

	switch (r->op) {
	case OP_READ:
	case OP_WRITE:
		if (res < 0)
			break;
		if (res == 0) {
			res = -EIO;     /* no progress: end of file or a stuck device */
			break;
		}
		r->progress += (uint64_t)res;
		if (r->progress < r->len)
			return true;
		res = (int64_t)r->len;
		break;
	case OP_FLUSH:
		break;
	case OP_DISCARD:
		if (res == -EOPNOTSUPP || res == -ENOSYS) {
			b->no_punch = true;
			res = 0;        /* advisory: nothing to deallocate is fine */
		}
		break;
	case OP_ZEROES:
		if (r->zmode != ZMODE_FILL) {
			if (res == -EOPNOTSUPP || res == -ENOSYS ||
			    (res == -EINVAL && r->zmode == ZMODE_ZERO)) {
				if (r->zmode == ZMODE_PUNCH) {
					b->no_punch = true;
					r->zmode = b->no_zero_range ? ZMODE_FILL : ZMODE_ZERO;
				} else {
					b->no_zero_range = true;
					r->zmode = ZMODE_FILL;
				}
				if (r->zmode == ZMODE_FILL && block_zero_buf(b) < 0) {
					res = -ENOMEM;
					break;
				}
				return true;
			}
			break;
		}
		if (res < 0)
			break;
		if (res == 0) {
			res = -EIO;
			break;
		}
		r->progress += (uint64_t)res;
		if (r->progress < r->len)
			return true;
		res = 0;
		break;
	}
	if (res > 0 && r->op != OP_READ && r->op != OP_WRITE)
		res = 0;
	block_req_finish(b, r, res);
	return false;
}

/* ---- sync engine ---- */

static int64_t block_sync_step(struct block_backend *b, struct block_req *r)
{
	ssize_t n;
	int rc;

	if (r->fault)
		return r->fault;
	switch (r->op) {
	case OP_READ:
		block_req_window(b, r);
		n = preadv(b->fd, r->win, (int)r->win_cnt, (off_t)(r->off + r->progress));
		return n < 0 ? -errno : n;
	case OP_WRITE:
		block_req_window(b, r);
		n = pwritev2(b->fd, r->win, (int)r->win_cnt, (off_t)(r->off + r->progress),
			     (r->flags & BLOCK_F_DSYNC) ? RWF_DSYNC : 0);
		return n < 0 ? -errno : n;
	case OP_FLUSH:
		return fdatasync(b->fd) < 0 ? -errno : 0;
	case OP_DISCARD:
		rc = fallocate(b->fd, ZMODE_PUNCH, (off_t)r->off, (off_t)r->len);
		return rc < 0 ? -errno : 0;
	case OP_ZEROES:
		if (r->zmode != ZMODE_FILL) {
			rc = fallocate(b->fd, r->zmode, (off_t)r->off, (off_t)r->len);
			return rc < 0 ? -errno : 0;
		}
		block_req_window(b, r);
		n = pwritev2(b->fd, r->win, 1, (off_t)(r->off + r->progress),
			     (r->flags & BLOCK_F_DSYNC) ? RWF_DSYNC : 0);
		return n < 0 ? -errno : n;
	}
	return -EINVAL;
}

static void block_sync_start(struct block_backend *b, struct block_req *r)
{
	/* A loop, not recursion: a request may take many short steps. */
	while (block_req_advance(b, r, block_sync_step(b, r)))
		;
}

static int block_sync_submit(struct block_backend *b)
{
	return 0;
}

static void block_sync_reap(struct block_backend *b)
{
	uint64_t v;

	/* Only block_wakeup() writes the eventfd here; consume it. */
	(void)!read(b->efd, &v, sizeof(v));
}

static void block_sync_drain(struct block_backend *b)
{
}

static const struct block_engine_ops block_sync_ops = {
	.start = block_sync_start,
	.submit = block_sync_submit,
	.reap = block_sync_reap,
	.drain = block_sync_drain,
};

/* ---- io_uring engine ---- */

static int block_uring_flush_sq(struct block_backend *b)
{
	int rc;

	if (!b->queued)
		return 0;
	do
		rc = io_uring_submit(&b->ring);
	while (rc == -EINTR);
	if (rc < 0) {
		/* The SQEs stay queued; come back through the eventfd and retry. */
		log_guest(&b->rl, "block", "disk %s: io_uring_submit: %s", b->path, strerror(-rc));
		block_wakeup(b);
		return rc;
	}
	b->queued -= (unsigned)rc < b->queued ? (unsigned)rc : b->queued;
	return 0;
}

static void block_uring_prep(struct block_backend *b, struct block_req *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);

	if (!sqe) {
		/* Cannot happen while inflight <= depth = SQ size, but stay safe. */
		block_uring_flush_sq(b);
		sqe = io_uring_get_sqe(&b->ring);
		if (!sqe) {
			r->fault = -EBUSY;
			while (block_req_advance(b, r, -EBUSY))
				;
			return;
		}
	}
	if (r->fault) {
		io_uring_prep_nop(sqe);
	} else {
		switch (r->op) {
		case OP_READ:
			block_req_window(b, r);
			io_uring_prep_readv(sqe, b->fd, r->win, r->win_cnt, r->off + r->progress);
			break;
		case OP_WRITE:
			block_req_window(b, r);
			io_uring_prep_writev2(sqe, b->fd, r->win, r->win_cnt, r->off + r->progress,
					      (r->flags & BLOCK_F_DSYNC) ? RWF_DSYNC : 0);
			break;
		case OP_FLUSH:
			io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
			break;
		case OP_DISCARD:
			io_uring_prep_fallocate(sqe, b->fd, ZMODE_PUNCH, (off_t)r->off, (off_t)r->len);
			break;
		case OP_ZEROES:
			if (r->zmode != ZMODE_FILL) {
				io_uring_prep_fallocate(sqe, b->fd, r->zmode, (off_t)r->off,
							(off_t)r->len);
			} else {
				block_req_window(b, r);
				io_uring_prep_writev2(sqe, b->fd, r->win, 1, r->off + r->progress,
						      (r->flags & BLOCK_F_DSYNC) ? RWF_DSYNC : 0);
			}
			break;
		}
	}
	io_uring_sqe_set_data(sqe, r);
	b->queued++;
}

static void block_uring_start(struct block_backend *b, struct block_req *r)
{
	block_uring_prep(b, r);
	if (!b->batch)
		block_uring_flush_sq(b);
}

static int block_uring_submit(struct block_backend *b)
{
	return block_uring_flush_sq(b);
}

/* Handle every CQE there is; steps that continue are queued and submitted together. */
static unsigned block_uring_cqes(struct block_backend *b)
{
	struct io_uring_cqe *cqe;
	unsigned n = 0;

	b->batch++;
	while (io_uring_peek_cqe(&b->ring, &cqe) == 0 && cqe) {
		struct block_req *r = io_uring_cqe_get_data(cqe);
		int64_t res = cqe->res;

		io_uring_cqe_seen(&b->ring, cqe);
		n++;
		if (block_req_advance(b, r, res))
			block_uring_prep(b, r);
	}
	b->batch--;
	if (!b->batch)
		block_uring_flush_sq(b);
	return n;
}

static void block_uring_reap(struct block_backend *b)
{
	uint64_t v;

	/* Clear the eventfd before looking, so a CQE posted meanwhile wakes us again. */
	(void)!read(b->efd, &v, sizeof(v));
	block_uring_cqes(b);
}

static void block_uring_drain(struct block_backend *b)
{
	struct io_uring_cqe *cqe;
	unsigned stuck = 0;
	int rc;

	while (b->inflight) {
		if (block_uring_flush_sq(b) < 0 && b->queued == b->inflight) {
			/* Nothing reached the kernel, so no CQE will come: retry a while. */
			if (++stuck > 1000) {
				log_err("block", "disk %s: cannot submit; %u operations abandoned",
					b->path, b->inflight);
				return;
			}
			usleep(1000);
			continue;
		}
		rc = io_uring_wait_cqe(&b->ring, &cqe);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
			log_err("block", "disk %s: io_uring_wait_cqe: %s", b->path, strerror(-rc));
			return;
		}
		block_uring_cqes(b);
	}
}

static const struct block_engine_ops block_uring_ops = {
	.start = block_uring_start,
	.submit = block_uring_submit,
	.reap = block_uring_reap,
	.drain = block_uring_drain,
};

static int block_uring_init(struct block_backend *b)
{
	int rc;

	rc = io_uring_queue_init(b->depth, &b->ring, 0);
	if (rc < 0)
		return rc;
	rc = io_uring_register_eventfd(&b->ring, b->efd);
	if (rc < 0) {
		io_uring_queue_exit(&b->ring);
		return rc;
	}
	b->have_ring = true;
	return 0;
}

/* ---- submission ---- */

static struct block_req *block_req_new(struct block_backend *b, enum block_op op, uint64_t off,
				       uint64_t len, block_done_fn done, void *opaque, int *err)
{
	struct block_req *r;

	*err = 0;
	if (op != OP_READ && op != OP_FLUSH && b->read_only)
		*err = -EROFS;
	else if (op != OP_FLUSH && (len == 0 || off > b->size || len > b->size - off))
		*err = -EINVAL;
	if (*err)
		return NULL;
	r = block_req_get(b);
	if (!r) {
		*err = -EAGAIN;
		return NULL;
	}
	r->op = op;
	r->off = off;
	r->len = len;
	r->done = done;
	r->opaque = opaque;
	if (b->fault.fail_count) {
		b->fault.fail_count--;
		r->fault = -b->fault.fail_errno;
	}
	return r;
}

static bool block_iov_aligned(const struct block_backend *b, const struct iovec *iov, unsigned cnt)
{
	unsigned i;

	for (i = 0; i < cnt; i++)
		if ((uintptr_t)iov[i].iov_base % b->mem_align || iov[i].iov_len % b->mem_align)
			return false;
	return true;
}

static int block_bounce(struct block_backend *b, struct block_req *r, const struct iovec *iov,
			unsigned cnt)
{
	size_t align = b->mem_align < 512 ? 512 : b->mem_align;
	size_t alloc = (r->len + align - 1) / align * align;
	uint8_t *p;
	unsigned i;

	if (b->bounce_bytes + r->len > BLOCK_BOUNCE_MAX)
		return -ENOMEM;
	r->bounce = aligned_alloc(align, alloc);
	if (!r->bounce)
		return -ENOMEM;
	b->bounce_bytes += r->len;
	r->bounce_iov.iov_base = r->bounce;
	r->bounce_iov.iov_len = r->len;
	r->user_iov = iov;
	r->user_cnt = cnt;
	r->iov = &r->bounce_iov;
	r->iovcnt = 1;
	if (r->op == OP_WRITE)
		for (i = 0, p = r->bounce; i < cnt; p += iov[i].iov_len, i++)
			memcpy(p, iov[i].iov_base, iov[i].iov_len);
	return 0;
}

static int block_rw(struct block_backend *b, enum block_op op, const struct iovec *iov,
		    unsigned iovcnt, uint64_t off, unsigned flags, block_done_fn done, void *opaque)
{
	struct block_req *r;
	bool overflow;
	uint64_t len;
	int err;

	if (iovcnt == 0 || iovcnt > BLOCK_IOV_MAX)
		return -EINVAL;
	len = iov_total(iov, iovcnt, &overflow);
	if (overflow)
		return -EINVAL;
	r = block_req_new(b, op, off, len, done, opaque, &err);
	if (!r)
		return err;
	r->flags = flags;
	r->iov = iov;
	r->iovcnt = iovcnt;
	if (b->direct && !block_iov_aligned(b, iov, iovcnt)) {
		err = block_bounce(b, r, iov, iovcnt);
		if (err < 0) {
			block_req_put(b, r);
			return err;
		}
	}
	r->win_cap = r->iovcnt;
	r->win = malloc(r->win_cap * sizeof(*r->win));
	if (!r->win) {
		block_req_put(b, r);
		return -ENOMEM;
	}
	b->ops->start(b, r);
	return 0;
}

int block_readv(struct block_backend *b, const struct iovec *iov, unsigned iovcnt, uint64_t off,
		block_done_fn done, void *opaque)
{
	return block_rw(b, OP_READ, iov, iovcnt, off, 0, done, opaque);
}

int block_writev(struct block_backend *b, const struct iovec *iov, unsigned iovcnt, uint64_t off,
		 unsigned flags, block_done_fn done, void *opaque)
{
	return block_rw(b, OP_WRITE, iov, iovcnt, off, flags, done, opaque);
}

int block_flush(struct block_backend *b, block_done_fn done, void *opaque)
{
	struct block_req *r;
	int err;

	r = block_req_new(b, OP_FLUSH, 0, 0, done, opaque, &err);
	if (!r)
		return err;
	b->ops->start(b, r);
	return 0;
}

int block_discard(struct block_backend *b, uint64_t off, uint64_t len, block_done_fn done,
		  void *opaque)
{
	struct block_req *r;
	int err;

	r = block_req_new(b, OP_DISCARD, off, len, done, opaque, &err);
	if (!r)
		return err;
	b->ops->start(b, r);
	return 0;
}

int block_write_zeroes(struct block_backend *b, uint64_t off, uint64_t len, unsigned flags,
		       block_done_fn done, void *opaque)
{
	struct block_req *r;
	int err;

	r = block_req_new(b, OP_ZEROES, off, len, done, opaque, &err);
	if (!r)
		return err;
	r->flags = flags;
	if ((flags & BLOCK_F_MAY_UNMAP) && !b->no_punch)
		r->zmode = ZMODE_PUNCH;
	else if (!b->no_zero_range && !b->fault.no_zero_range)
		r->zmode = ZMODE_ZERO;
	else
		r->zmode = ZMODE_FILL;
	r->win_cap = 1;
	r->win = malloc(sizeof(*r->win));
	if (!r->win || (r->zmode == ZMODE_FILL && block_zero_buf(b) < 0)) {
		block_req_put(b, r);
		return -ENOMEM;
	}
	b->ops->start(b, r);
	return 0;
}

void block_batch_begin(struct block_backend *b)
{
	b->batch++;
}

int block_batch_submit(struct block_backend *b)
{
	if (b->batch && --b->batch)
		return 0;
	return b->ops->submit(b);
}

int block_event_fd(const struct block_backend *b)
{
	return b->efd;
}

void block_reap(struct block_backend *b)
{
	b->ops->reap(b);
}

void block_drain(struct block_backend *b)
{
	b->ops->drain(b);
}

void block_wakeup(struct block_backend *b)
{
	uint64_t one = 1;

	(void)!write(b->efd, &one, sizeof(one));
}

void block_set_fault(struct block_backend *b, const struct block_fault *f)
{
	b->fault = *f;
	if (f->no_zero_range)
		b->no_zero_range = true;
}

uint64_t block_size(const struct block_backend *b)
{
	return b->size;
}

bool block_read_only(const struct block_backend *b)
{
	return b->read_only;
}

enum block_engine block_engine_used(const struct block_backend *b)
{
	return b->engine;
}

uint32_t block_logical_block_size(const struct block_backend *b)
{
	return b->direct ? b->off_align : 512;
}

unsigned block_inflight(const struct block_backend *b)
{
	return b->inflight;
}

/* ---- open/close ---- */

static void block_dio_align(struct block_backend *b, const struct stat *st)
{
	struct statx stx;
	int sector;

	b->mem_align = 512;
	b->off_align = 512;
	if (statx(b->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
		b->mem_align = stx.stx_dio_mem_align ? stx.stx_dio_mem_align : 512;
		b->off_align = stx.stx_dio_offset_align;
	} else if (S_ISBLK(st->st_mode) && ioctl(b->fd, BLKSSZGET, &sector) == 0 && sector > 0) {
		b->mem_align = (uint32_t)sector;
		b->off_align = (uint32_t)sector;
	}
	if (b->off_align < 512)
		b->off_align = 512;
}

int block_open(struct block_backend **out, const char *path, const struct block_opts *o,
	       char *err, size_t errlen)
{
	struct block_backend *b;
	struct stat st;
	unsigned i;
	int flags, rc;

	*out = NULL;
	if (o->depth > BLOCK_MAX_DEPTH) {
		snprintf(err, errlen, "disk %s: queue depth %u too large (at most %u)", path,
			 o->depth, BLOCK_MAX_DEPTH);
		return -EINVAL;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		goto err_nomem;
	b->fd = -1;
	b->efd = -1;
	b->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	b->read_only = o->read_only;
	b->direct = o->direct;
	b->depth = o->depth ? o->depth : BLOCK_DEFAULT_DEPTH;
	b->path = strdup(path);
	b->reqs = calloc(b->depth, sizeof(*b->reqs));
	if (!b->path || !b->reqs)
		goto err_free_nomem;
	for (i = b->depth; i-- > 0;) {
		b->reqs[i].next_free = b->free;
		b->free = &b->reqs[i];
	}

	/* O_NONBLOCK: opening a FIFO by mistake must not hang; cleared below. */
	flags = (o->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK;
	if (o->direct)
		flags |= O_DIRECT;
	b->fd = open(path, flags);
	if (b->fd < 0) {
		rc = -errno;
		if (rc == -EINVAL && o->direct)
			snprintf(err, errlen, "disk %s: O_DIRECT is not supported here", path);
		else
			snprintf(err, errlen, "disk %s: %s", path, strerror(-rc));
		goto err_free;
	}
	if (fstat(b->fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "disk %s: %s", path, strerror(-rc));
		goto err_close;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = -EISDIR;
		snprintf(err, errlen, "disk %s: %s", path, strerror(EISDIR));
		goto err_close;
	}
	if (S_ISREG(st.st_mode)) {
		b->size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(b->fd, BLKGETSIZE64, &b->size) < 0) {
			rc = -errno;
			snprintf(err, errlen, "disk %s: cannot get the size: %s", path,
				 strerror(-rc));
			goto err_close;
		}
	} else {
		rc = -EINVAL;
		snprintf(err, errlen, "disk %s: not a regular file or block device", path);
		goto err_close;
	}
	if (fcntl(b->fd, F_SETFL, o->direct ? O_DIRECT : 0) < 0) {
		rc = -errno;
		snprintf(err, errlen, "disk %s: %s", path, strerror(-rc));
		goto err_close;
	}
	/*
	 * flock() locks belong to the open file description, so a second open in
	 * this process conflicts as well; they go away when the fd is closed,
	 * also on kill -9. Shared for read-only: many readers, no writer.
	 */
	if (flock(b->fd, (o->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		rc = -errno;
		if (rc == -EWOULDBLOCK) {
			rc = -EBUSY;
			snprintf(err, errlen, "disk %s: locked by another process", path);
			goto err_close;
		}
		if (rc != -ENOLCK && rc != -EOPNOTSUPP) {
			snprintf(err, errlen, "disk %s: cannot lock: %s", path, strerror(-rc));
			goto err_close;
		}
		log_warn("block", "disk %s: file system cannot lock (%s); not protected against "
			 "a second user", path, strerror(-rc));
	}
	if (o->direct)
		block_dio_align(b, &st);
	else
		b->mem_align = b->off_align = 512;

	b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->efd < 0) {
		rc = -errno;
		snprintf(err, errlen, "disk %s: eventfd: %s", path, strerror(-rc));
		goto err_close;
	}
	b->engine = BLOCK_ENGINE_SYNC;
	b->ops = &block_sync_ops;
	if (o->engine == BLOCK_ENGINE_URING) {
		rc = block_uring_init(b);
		if (rc == 0) {
			b->engine = BLOCK_ENGINE_URING;
			b->ops = &block_uring_ops;
		} else {
			log_warn("block", "disk %s: io_uring unavailable (%s); using synchronous I/O",
				 path, strerror(-rc));
		}
	}
	*out = b;
	return 0;

err_close:
	close(b->fd);
err_free:
	free(b->reqs);
	free(b->path);
	free(b);
	return rc;
err_free_nomem:
	free(b->reqs);
	free(b->path);
	free(b);
err_nomem:
	snprintf(err, errlen, "disk %s: out of memory", path);
	return -ENOMEM;
}

void block_close(struct block_backend *b)
{
	if (!b)
		return;
	block_drain(b);
	if (b->have_ring)
		io_uring_queue_exit(&b->ring);
	close(b->efd);
	close(b->fd);
	free(b->zeroes);
	free(b->reqs);
	free(b->path);
	free(b);
}

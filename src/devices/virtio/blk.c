/*
 * virtio-blk (Virtio 1.2, section 5.2): requests from the guest's queues
 * become block backend operations; their completions write the status byte
 * and go back on the used ring.
 *
 * Request layout (any framing): a 16-byte header (type, reserved, sector)
 * at the start of the device-readable part, data, and a status byte that is
 * the last byte of the device-writable part. The header is copied out of
 * guest memory once and only the copy is used.
 *
 * What the guest gets for malformed requests, decided per case:
 *  - the ring itself is broken (vq_pop() fails), a head is made available
 *    again while it is still in flight, or a chain has no device-writable
 *    byte (so no status can be returned): protocol violation, virtio_fail()
 *    (DEVICE_NEEDS_RESET), the queue is not processed until reset;
 *  - everything a status byte can answer is answered: a header shorter than
 *    16 bytes, data in the wrong direction (an IN with device-readable
 *    data, an OUT with device-writable data), a length that is not a
 *    multiple of 512, more data segments or bytes than seg_max/size_max
 *    allow, a range beyond the capacity (checked without overflow), a write
 *    to a read-only disk (5.2.6.2: IOERR and nothing written), a bad
 *    discard/write-zeroes segment list, a GET_ID buffer under 20 bytes, and
 *    host I/O errors: VIRTIO_BLK_S_IOERR ("device or driver error", 5.2.6);
 *    unknown types, discard/write zeroes without the feature negotiated, and
 *    segment flags the spec says to refuse: VIRTIO_BLK_S_UNSUPP.
 * The used length counts the bytes written into the device-writable part:
 * data (successful reads, GET_ID) plus the status byte; 1 for anything that
 * failed, whose data the driver must not use anyway.
 *
 * Durability: FLUSH is always offered and completes only after fdatasync()
 * (see block.c). A driver that does not negotiate it gets write-through
 * (5.2.6.2, case 1): every write is issued with RWF_DSYNC.
 *
 * Threads and locks: kicks (queue_notify) and completions both run on the
 * device's I/O thread; reset and activation come from a vCPU thread with
 * the transport's and the core's locks held. b->lock serialises all of it.
 * Because the transport calls into us with its lock held (vp->lock ->
 * d->lock -> b->lock), nothing that takes those locks (virtio_notify_queue,
 * virtio_fail) is called with b->lock held: interrupts and failures are
 * collected under the lock and delivered after it is dropped.
 *
 * Reset: the backend may still be reading into guest buffers. Reset waits
 * for every operation in flight (block_drain(); io_uring reads of a regular
 * file cannot be cancelled once started) and throws their results away
 * without touching the rings, so once it returns no host I/O will write
 * into guest memory and the core can forget the queues.
 */
#include "devices/virtio/blk.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/epoll.h>

#include "loop/loop.h"
#include "snapshot/snap.h"
#include "util/log.h"

/* Feature bits (5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status values (5.2.6). */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_WZ_F_UNMAP 1u

#define BLK_SECTOR       512u
/* What the guest is told, and held to. */
#define BLK_SIZE_MAX     (128u << 10)              /* bytes per data segment */
#define BLK_SEG_MAX      254u                      /* data segments per request */
#define BLK_MAX_DATA     ((uint64_t)BLK_SIZE_MAX * BLK_SEG_MAX)
#define BLK_MAX_DISCARD_SECTORS (1u << 22)         /* 2 GiB per segment */
#define BLK_MAX_WZ_SECTORS      (1u << 16)         /* 32 MiB: may be written out as zeroes */
#define BLK_MAX_SEGS     16u                       /* max_discard_seg, max_write_zeroes_seg */

/* Device configuration layout up to write_zeroes_may_unmap (5.2.4), little-endian. */
struct virtio_blk_config {
	uint64_t capacity;
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t blk_size;
	uint8_t physical_block_exp;
	uint8_t alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_blk_config) == 60, "virtio_blk_config through unused1 is 60 bytes");
_Static_assert(offsetof(struct virtio_blk_config, blk_size) == 20, "blk_size at 20");
_Static_assert(offsetof(struct virtio_blk_config, num_queues) == 34, "num_queues at 34");
_Static_assert(offsetof(struct virtio_blk_config, max_discard_sectors) == 36, "discard limits at 36");
_Static_assert(offsetof(struct virtio_blk_config, write_zeroes_may_unmap) == 56, "may_unmap at 56");

struct virtio_blk_outhdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};
_Static_assert(sizeof(struct virtio_blk_outhdr) == 16, "request header is 16 bytes");

struct virtio_blk_discard_write_zeroes {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};
_Static_assert(sizeof(struct virtio_blk_discard_write_zeroes) == 16, "discard segment is 16 bytes");

struct blk_range {
	uint64_t off, len;
	bool unmap;
};

struct blk_queue;

struct blk_req {
	struct blk_req *next_free;
	struct blk_queue *q;
	uint32_t type;
	uint64_t sector;
	uint64_t data_len;
	unsigned data_cnt;
	unsigned nrange, next_range;
	struct blk_range range[BLK_MAX_SEGS];
	struct iovec data[VQ_MAX_SEGS];
	struct vq_elem elem;
};

struct blk_queue {
	struct virtio_blk *blk;
	unsigned index;
	struct blk_req **inflight;     /* by head; max queue size entries */
	unsigned n_inflight;
	bool resched;                  /* budget ran out with work left */
	struct blk_req *held;          /* popped, refused by the rate limiter; goes first */
};

struct virtio_blk {
	struct virtio_dev vdev;
	struct block_backend *be;
	pthread_mutex_t lock;
	char path[PATH_MAX];
	char serial[BLK_SERIAL_LEN];
	uint64_t capacity;             /* sectors */
	bool read_only;
	unsigned num_queues;
	uint16_t queue_size;
	struct virtio_blk_config config;
	struct loop *loop;             /* attached to (blk_attach) */

	/* Guarded by lock. */
	bool active;                   /* DRIVER_OK seen, no reset since */
	bool failed;                   /* virtio_fail() pending or sent: stop */
	bool draining;                 /* reset/free: drop completions */
	bool writethrough;             /* FLUSH not negotiated: writes must be stable (5.2.6.2) */
	unsigned active_queues;
	uint32_t notify_mask;          /* queues with used entries to signal */
	bool fail_pending;
	char fail_msg[160];
	struct blk_queue queues[BLK_MAX_QUEUES];
	struct blk_req *free_reqs;
	struct log_ratelimit rl;
	struct ratelimit limiter;      /* guarded by lock */
	struct loop_timer limit_timer; /* retries held queues when the buckets have refilled */
};

_Static_assert(BLK_MAX_QUEUES <= 32, "notify_mask has a bit per queue");

/* ---- configuration ---- */

void blk_config_init(struct blk_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->engine = BLOCK_ENGINE_URING;
	cfg->num_queues = 1;
	cfg->queue_size = BLK_DEFAULT_QUEUE_SIZE;
}

static int blk_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoul(s, &end, 10);
	if (errno || *end || *out < min || *out > max)
		return -EINVAL;
	return 0;
}

int blk_parse_spec(const char *spec, struct blk_config *cfg, char *err, size_t errlen)
{
	char buf[PATH_MAX + 256], *tok, *save = NULL;
	unsigned long v;

	blk_config_init(cfg);
	if (strlen(spec) >= sizeof(buf)) {
		snprintf(err, errlen, "disk: argument too long");
		return -EINVAL;
	}
	strcpy(buf, spec);
	tok = buf[0] == ',' ? NULL : strtok_r(buf, ",", &save);
	if (!tok || !*tok) {
		snprintf(err, errlen, "disk: missing image path (--disk PATH[,ro][,direct]"
			 "[,engine=uring|sync][,queues=N][,serial=S][,bw=BYTES][,iops=N])");
		return -EINVAL;
	}
	if (strlen(tok) >= sizeof(cfg->path)) {
		snprintf(err, errlen, "disk: path too long");
		return -EINVAL;
	}
	if (strncmp(tok, "vhost-user=", 11) == 0) {
		/* The back-end owns the image, its size, cache mode, serial and queues: nothing else to say. */
		cfg->vhost_user = true;
		if (!tok[11] || strlen(tok + 11) >= sizeof(cfg->path)) {
			snprintf(err, errlen, "disk: vhost-user= needs a socket path (--disk vhost-user=SOCKET)");
			return -EINVAL;
		}
		strcpy(cfg->path, tok + 11);
		tok = strtok_r(NULL, ",", &save);
		if (tok) {
			snprintf(err, errlen, "disk vhost-user=%s: option '%s' is not supported: the back-end "
				 "decides it", cfg->path, tok);
			return -EINVAL;
		}
		return 0;
	}
	strcpy(cfg->path, tok);
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (strcmp(tok, "ro") == 0) {
			cfg->read_only = true;
		} else if (strcmp(tok, "direct") == 0) {
			cfg->direct = true;
		} else if (strncmp(tok, "engine=", 7) == 0) {
			if (strcmp(tok + 7, "uring") == 0)
				cfg->engine = BLOCK_ENGINE_URING;
			else if (strcmp(tok + 7, "sync") == 0)
				cfg->engine = BLOCK_ENGINE_SYNC;
			else
				goto err_value;
		} else if (strncmp(tok, "queues=", 7) == 0) {
			if (blk_parse_uint(tok + 7, 1, BLK_MAX_QUEUES, &v) < 0) {
				snprintf(err, errlen, "disk %s: queues must be 1 to %d, not '%s'",
					 cfg->path, BLK_MAX_QUEUES, tok + 7);
				return -EINVAL;
			}
			cfg->num_queues = (unsigned)v;
		} else if (strncmp(tok, "bw=", 3) == 0 || strncmp(tok, "iops=", 5) == 0) {
			/* Per second: a bucket of one second's worth, refilled over 1000 ms. */
			bool bw = tok[0] == 'b';
			struct ratelimit_bucket_config *bc = bw ? &cfg->rate_limit.bandwidth : &cfg->rate_limit.ops;

			if (blk_parse_uint(tok + (bw ? 3 : 5), 1, RATELIMIT_MAX_SIZE, &v) < 0) {
				snprintf(err, errlen, "disk %s: %s must be 1 to %llu per second, not '%s'", cfg->path,
					 bw ? "bw" : "iops", (unsigned long long)RATELIMIT_MAX_SIZE, tok + (bw ? 3 : 5));
				return -EINVAL;
			}
			bc->size = v;
			bc->one_time_burst = 0;
			bc->refill_time_ms = 1000;
		} else if (strncmp(tok, "serial=", 7) == 0) {
			const char *s = tok + 7;
			size_t n = strlen(s);

			if (n == 0 || n > BLK_SERIAL_LEN) {
				snprintf(err, errlen, "disk %s: serial must be 1 to %d characters",
					 cfg->path, BLK_SERIAL_LEN);
				return -EINVAL;
			}
			for (size_t i = 0; i < n; i++)
				if (s[i] < 0x21 || s[i] > 0x7e)
					goto err_value;
			memcpy(cfg->serial, s, n + 1);
		} else {
			snprintf(err, errlen, "disk %s: unknown option '%s'", cfg->path, tok);
			return -EINVAL;
		}
	}
	return 0;

err_value:
	snprintf(err, errlen, "disk %s: bad value in '%s'", cfg->path, tok);
	return -EINVAL;
}

/* A stable serial from the path: the same image gets the same /dev/disk/by-id name. */
static void blk_default_serial(const char *path, char out[BLK_SERIAL_LEN])
{
	char tmp[BLK_SERIAL_LEN + 1];
	uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)path; *p; p++)
		h = (h ^ *p) * 0x100000001b3ull;
	snprintf(tmp, sizeof(tmp), "KST%016llx", (unsigned long long)h);
	memset(out, 0, BLK_SERIAL_LEN);
	memcpy(out, tmp, strlen(tmp));
}

/* ---- deferred notifications and failures ---- */

struct blk_deferred {
	uint32_t notify_mask;
	bool fail;
	char msg[160];
};

static void blk_fail(struct virtio_blk *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void blk_fail(struct virtio_blk *b, const char *fmt, ...)
{
	va_list ap;

	if (b->failed)
		return;
	b->failed = true;
	b->fail_pending = true;
	va_start(ap, fmt);
	vsnprintf(b->fail_msg, sizeof(b->fail_msg), fmt, ap);
	va_end(ap);
}

/* Caller holds b->lock. */
static void blk_collect(struct virtio_blk *b, struct blk_deferred *df)
{
	df->notify_mask = b->notify_mask;
	b->notify_mask = 0;
	df->fail = b->fail_pending;
	b->fail_pending = false;
	if (df->fail)
		memcpy(df->msg, b->fail_msg, sizeof(df->msg));
}

/* Without b->lock: one interrupt check per queue for a whole batch of completions. */
static void blk_deliver(struct virtio_blk *b, const struct blk_deferred *df)
{
	for (unsigned q = 0; q < b->num_queues; q++)
		if (df->notify_mask & (1u << q))
			virtio_notify_queue(&b->vdev, q);
	if (df->fail)
		virtio_fail(&b->vdev, "%s", df->msg);
}

/* ---- requests ---- */

static struct blk_req *blk_req_alloc(struct virtio_blk *b)
{
	struct blk_req *r = b->free_reqs;

	if (r) {
		b->free_reqs = r->next_free;
		return r;
	}
	return malloc(sizeof(*r));
}

static void blk_req_release(struct virtio_blk *b, struct blk_req *r)
{
	r->next_free = b->free_reqs;
	b->free_reqs = r;
}

/* Write the status byte, return the chain. `data_written`: bytes of data put in the in part. */
static void blk_finish(struct virtio_blk *b, struct blk_req *r, uint8_t status, uint64_t data_written)
{
	struct blk_queue *q = r->q;
	uint16_t head = r->elem.head;

	q->inflight[head] = NULL;
	q->n_inflight--;
	if (!b->draining) {
		struct virtq *vq = &b->vdev.queues[q->index];

		vq_copy_to_in(&r->elem, r->elem.in_len - 1, &status, 1);
		/* in_len <= UINT32_MAX (vq_pop), and data_written < in_len. */
		vq_push(vq, head, (uint32_t)(data_written + 1));
		b->notify_mask |= 1u << q->index;
		__atomic_add_fetch(&b->vdev.metrics.requests, 1, __ATOMIC_RELAXED);
		if (status != VIRTIO_BLK_S_OK)
			__atomic_add_fetch(&b->vdev.metrics.errors, 1, __ATOMIC_RELAXED);
	}
	blk_req_release(b, r);
}

static const char *blk_type_name(uint32_t type)
{
	switch (type) {
	case VIRTIO_BLK_T_IN: return "read";
	case VIRTIO_BLK_T_OUT: return "write";
	case VIRTIO_BLK_T_FLUSH: return "flush";
	case VIRTIO_BLK_T_GET_ID: return "get id";
	case VIRTIO_BLK_T_DISCARD: return "discard";
	case VIRTIO_BLK_T_WRITE_ZEROES: return "write zeroes";
	default: return "request";
	}
}

/* The guest got IOERR for something it did; say why, rate-limited. */
static void blk_reject(struct virtio_blk *b, struct blk_req *r, uint8_t status, const char *why)
{
	log_guest(&b->rl, "virtio-blk", "%s: %s at sector %llu: %s", b->path, blk_type_name(r->type),
		  (unsigned long long)r->sector, why);
	blk_finish(b, r, status, 0);
}

static void blk_io_failed(struct virtio_blk *b, struct blk_req *r, int64_t res)
{
	if (!b->draining)
		log_guest(&b->rl, "virtio-blk", "%s: %s at sector %llu failed: %s", b->path,
			  blk_type_name(r->type), (unsigned long long)r->sector, strerror((int)-res));
	blk_finish(b, r, VIRTIO_BLK_S_IOERR, 0);
}

/* Backend completion of a read, write or flush (b->lock is held: see block.h). */
static void blk_io_done(void *opaque, int64_t res)
{
	struct blk_req *r = opaque;
	struct virtio_blk *b = r->q->blk;

	if (res < 0) {
		blk_io_failed(b, r, res);
		return;
	}
	blk_finish(b, r, VIRTIO_BLK_S_OK, r->type == VIRTIO_BLK_T_IN ? r->data_len : 0);
}

/* sector + nsec within the capacity, without overflow. */
static bool blk_range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t nsec)
{
	return sector <= b->capacity && nsec <= b->capacity - sector;
}

/* Gather `len` bytes of e's iovecs [first, first+num) starting `skip` bytes in. */
static unsigned blk_slice(const struct vq_elem *e, unsigned first, unsigned num, uint64_t skip,
			  uint64_t len, struct iovec *out)
{
	unsigned n = 0;

	for (unsigned i = first; i < first + num && len; i++) {
		uint64_t l = e->iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		l -= skip;
		if (l > len)
			l = len;
		out[n].iov_base = (uint8_t *)e->iov[i].iov_base + skip;
		out[n].iov_len = l;
		n++;
		len -= l;
		skip = 0;
	}
	return n;
}

static void blk_start_rw(struct virtio_blk *b, struct blk_req *r, bool write)
{
	struct vq_elem *e = &r->elem;
	int rc;

	if (write) {
		if (b->read_only) {
			blk_reject(b, r, VIRTIO_BLK_S_IOERR, "disk is read-only");
			return;
		}
		if (e->in_len != 1) {
			blk_reject(b, r, VIRTIO_BLK_S_IOERR, "write with device-writable data");
			return;
		}
		r->data_len = e->out_len - sizeof(struct virtio_blk_outhdr);
		r->data_cnt = blk_slice(e, 0, e->out_num, sizeof(struct virtio_blk_outhdr),
					r->data_len, r->data);
	} else {
		if (e->out_len != sizeof(struct virtio_blk_outhdr)) {
			blk_reject(b, r, VIRTIO_BLK_S_IOERR, "read with device-readable data");
			return;
		}
		r->data_len = e->in_len - 1;
		r->data_cnt = blk_slice(e, e->out_num, e->in_num, 0, r->data_len, r->data);
	}
	if (r->data_len % BLK_SECTOR) {
		blk_reject(b, r, VIRTIO_BLK_S_IOERR, "length is not a multiple of 512");
		return;
	}
	if (r->data_len > BLK_MAX_DATA || r->data_cnt > BLK_SEG_MAX) {
		blk_reject(b, r, VIRTIO_BLK_S_IOERR, "more than seg_max/size_max allow");
		return;
	}
	if (!blk_range_ok(b, r->sector, r->data_len / BLK_SECTOR)) {
		blk_reject(b, r, VIRTIO_BLK_S_IOERR, "beyond the end of the disk");
		return;
	}
	if (r->data_len == 0) {
		blk_finish(b, r, VIRTIO_BLK_S_OK, 0);
		return;
	}

	if (write)
		rc = block_writev(b->be, r->data, r->data_cnt, r->sector * BLK_SECTOR,
				  b->writethrough ? BLOCK_F_DSYNC : 0, blk_io_done, r);
	else
		rc = block_readv(b->be, r->data, r->data_cnt, r->sector * BLK_SECTOR, blk_io_done, r);
	if (rc < 0)
		blk_io_failed(b, r, rc);
}

static void blk_get_id(struct virtio_blk *b, struct blk_req *r)
{
	struct vq_elem *e = &r->elem;

	/* 5.2.6.1: the driver MUST give 20 bytes; fewer cannot hold the answer. */
	if (e->in_len - 1 < BLK_SERIAL_LEN) {
		blk_reject(b, r, VIRTIO_BLK_S_IOERR, "GET_ID buffer shorter than 20 bytes");
		return;
	}
	vq_copy_to_in(e, 0, b->serial, BLK_SERIAL_LEN);
	blk_finish(b, r, VIRTIO_BLK_S_OK, BLK_SERIAL_LEN);
}

static void blk_range_next(struct virtio_blk *b, struct blk_req *r);

static void blk_range_done(void *opaque, int64_t res)
{
	struct blk_req *r = opaque;
	struct virtio_blk *b = r->q->blk;

	if (res < 0) {
		blk_io_failed(b, r, res);
		return;
	}
	if (b->draining) {
		blk_finish(b, r, VIRTIO_BLK_S_IOERR, 0);
		return;
	}
	blk_range_next(b, r);
}

/*
 * One segment at a time: a request never has more than one backend
 * operation in flight, so the backend's depth (queue sizes summed) always
 * suffices. With the sync engine this recurses at most BLK_MAX_SEGS deep.
 */
static void blk_range_next(struct virtio_blk *b, struct blk_req *r)
{
	const struct blk_range *rg;
	unsigned flags;
	int rc;

	while (r->next_range < r->nrange && r->range[r->next_range].len == 0)
		r->next_range++;
	if (r->next_range == r->nrange) {
		blk_finish(b, r, VIRTIO_BLK_S_OK, 0);
		return;
	}
	rg = &r->range[r->next_range++];
	if (r->type == VIRTIO_BLK_T_DISCARD) {
		rc = block_discard(b->be, rg->off, rg->len, blk_range_done, r);
	} else {
		flags = (rg->unmap ? BLOCK_F_MAY_UNMAP : 0) | (b->writethrough ? BLOCK_F_DSYNC : 0);
		rc = block_write_zeroes(b->be, rg->off, rg->len, flags, blk_range_done, r);
	}
	if (rc < 0)
		blk_io_failed(b, r, rc);
}

static void blk_start_ranges(struct virtio_blk *b, struct blk_req *r)
{
	bool wz = r->type == VIRTIO_BLK_T_WRITE_ZEROES;
	const struct vq_elem *e = &r->elem;
	uint32_t max_sectors = wz ? BLK_MAX_WZ_SECTORS : BLK_MAX_DISCARD_SECTORS;
	uint64_t len = e->out_len - sizeof(struct virtio_blk_outhdr);

	if (!virtio_has_feature(&b->vdev, wz ? VIRTIO_BLK_F_WRITE_ZEROES : VIRTIO_BLK_F_DISCARD)) {
		blk_reject(b, r, VIRTIO_BLK_S_UNSUPP, "feature not negotiated");
		return;
	}
	if (b->read_only) {     /* not offered then, so not reachable; belt and braces */
		blk_reject(b, r, VIRTIO_BLK_S_IOERR, "disk is read-only");
		return;
	}
	if (len == 0 || len % sizeof(struct virtio_blk_discard_write_zeroes)) {
		blk_reject(b, r, VIRTIO_BLK_S_IOERR, "segment list length is not n * 16");
		return;
	}
	if (len / sizeof(struct virtio_blk_discard_write_zeroes) > BLK_MAX_SEGS) {
		blk_reject(b, r, VIRTIO_BLK_S_IOERR, "more segments than max_*_seg");
		return;
	}
	r->nrange = (unsigned)(len / sizeof(struct virtio_blk_discard_write_zeroes));
	r->next_range = 0;
	/* Check every segment before touching the disk. */
	for (unsigned i = 0; i < r->nrange; i++) {
		struct virtio_blk_discard_write_zeroes s;
		uint64_t sector;
		uint32_t num, flags;

		vq_copy_from_out(e, sizeof(struct virtio_blk_outhdr) + i * sizeof(s), &s, sizeof(s));
		sector = le64toh(s.sector);
		num = le32toh(s.num_sectors);
		flags = le32toh(s.flags);
		/* 5.2.6.2: unknown flags, and unmap on a discard, are UNSUPP. */
		if ((flags & ~VIRTIO_BLK_WZ_F_UNMAP) || (!wz && (flags & VIRTIO_BLK_WZ_F_UNMAP))) {
			blk_reject(b, r, VIRTIO_BLK_S_UNSUPP, "unsupported segment flags");
			return;
		}
		if (num > max_sectors) {
			blk_reject(b, r, VIRTIO_BLK_S_IOERR, "segment larger than allowed");
			return;
		}
		if (!blk_range_ok(b, sector, num)) {
			blk_reject(b, r, VIRTIO_BLK_S_IOERR, "segment beyond the end of the disk");
			return;
		}
		r->range[i].off = sector * BLK_SECTOR;
		r->range[i].len = (uint64_t)num * BLK_SECTOR;
		r->range[i].unmap = flags & VIRTIO_BLK_WZ_F_UNMAP;
	}
	blk_range_next(b, r);
}

/* A popped chain: claim its head, then parse and start it. Caller holds b->lock. */
static void blk_start(struct virtio_blk *b, struct blk_queue *q, struct blk_req *r)
{
	struct virtq *vq = &b->vdev.queues[q->index];
	struct vq_elem *e = &r->elem;
	struct virtio_blk_outhdr hdr;

	/* vq_pop() keeps heads below vq->size <= max size; the array has max size entries. */
	if (e->head >= vq->size || e->head >= b->queue_size || q->inflight[e->head]) {
		blk_fail(b, "queue %u: head %u made available again while in flight", q->index, e->head);
		blk_req_release(b, r);
		return;
	}
	if (e->in_len == 0) {
		blk_fail(b, "queue %u: request without a status byte", q->index);
		blk_req_release(b, r);
		return;
	}
	r->q = q;
	q->inflight[e->head] = r;
	q->n_inflight++;
	r->type = UINT32_MAX;
	r->sector = 0;
	if (e->out_len < sizeof(hdr)) {
		blk_reject(b, r, VIRTIO_BLK_S_IOERR, "header shorter than 16 bytes");
		return;
	}
	vq_copy_from_out(e, 0, &hdr, sizeof(hdr));
	r->type = le32toh(hdr.type);
	r->sector = le64toh(hdr.sector);

	switch (r->type) {
	case VIRTIO_BLK_T_IN:
		blk_start_rw(b, r, false);
		return;
	case VIRTIO_BLK_T_OUT:
		blk_start_rw(b, r, true);
		return;
	case VIRTIO_BLK_T_FLUSH: {
		int rc = block_flush(b->be, blk_io_done, r);

		if (rc < 0)
			blk_io_failed(b, r, rc);
		return;
	}
	case VIRTIO_BLK_T_GET_ID:
		blk_get_id(b, r);
		return;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		blk_start_ranges(b, r);
		return;
	default:
		blk_finish(b, r, VIRTIO_BLK_S_UNSUPP, 0);
		return;
	}
}

/*
 * Rate limiting: a request the limiter refuses is kept popped in q->held
 * and the queue stops (kicks stay disabled, so the guest does not exit for
 * nothing) until limit_timer fires on the I/O thread and retries it first.
 * Charged: one op, and the chain's length less the 16-byte header and the
 * status byte as bytes (the data of a read or write; ~0 for the others).
 * Caller holds b->lock. True: held.
 */
static bool blk_limit(struct virtio_blk *b, struct blk_queue *q, struct blk_req *r)
{
	uint64_t total = (uint64_t)r->elem.out_len + r->elem.in_len, wait;

	if (!ratelimit_enabled(&b->limiter))
		return false;
	wait = ratelimit_consume(&b->limiter, total > 17 ? total - 17 : 0, loop_now_ns());
	if (!wait)
		return false;
	q->held = r;
	b->vdev.metrics.throttled++;
	/* Not attached (unit tests without a loop): the next notify or completion retries. */
	if (b->loop && (!loop_timer_armed(&b->limit_timer) ||
			b->limit_timer.deadline_ns > loop_now_ns() + wait))
		loop_timer_arm(&b->limit_timer, wait, 0);
	return true;
}

/*
 * Take up to one ring's worth of requests from queue q and submit them to
 * the backend in one batch. If the budget runs out with work left, the
 * queue is continued from blk_process_completions() after the I/O loop has
 * served its other fds. Caller holds b->lock.
 */
static void blk_run_queue(struct virtio_blk *b, struct blk_queue *q)
{
	struct virtq *vq = &b->vdev.queues[q->index];
	unsigned budget = vq->size;
	int rc;

	if (!b->active || b->failed || q->index >= b->active_queues)
		return;
	block_batch_begin(b->be);
	if (q->held) {
		struct blk_req *r = q->held;

		q->held = NULL;
		if (blk_limit(b, q, r))
			goto out;
		budget--;
		blk_start(b, q, r);
	}
	for (;;) {
		vq_disable_kicks(vq);
		while (budget && !b->failed) {
			struct blk_req *r = blk_req_alloc(b);

			if (!r) {
				log_err("virtio-blk", "%s: out of memory; retrying", b->path);
				budget = 0;
				break;
			}
			rc = vq_pop(vq, &r->elem);
			if (rc == -ENOENT) {
				blk_req_release(b, r);
				break;
			}
			if (rc < 0) {
				blk_req_release(b, r);
				blk_fail(b, "queue %u: %s", q->index, vq->error ? vq->error : "bad ring");
				break;
			}
			budget--;
			if (blk_limit(b, q, r))
				goto out;
			blk_start(b, q, r);
		}
		if (b->failed)
			break;
		if (!budget) {
			q->resched = true;
			block_wakeup(b->be);
			break;
		}
		if (!vq_enable_kicks(vq))
			break;
	}
out:
	block_batch_submit(b->be);
}

static void blk_queue_notify(struct virtio_dev *d, unsigned qi)
{
	struct virtio_blk *b = d->priv;
	struct blk_deferred df;

	if (qi >= b->num_queues)
		return;
	pthread_mutex_lock(&b->lock);
	blk_run_queue(b, &b->queues[qi]);
	blk_collect(b, &df);
	pthread_mutex_unlock(&b->lock);
	blk_deliver(b, &df);
}

void blk_process_completions(struct virtio_blk *b)
{
	struct blk_deferred df;

	pthread_mutex_lock(&b->lock);
	block_reap(b->be);
	for (unsigned i = 0; i < b->num_queues; i++) {
		if (b->queues[i].resched) {
			b->queues[i].resched = false;
			blk_run_queue(b, &b->queues[i]);
		}
	}
	blk_collect(b, &df);
	pthread_mutex_unlock(&b->lock);
	blk_deliver(b, &df);
}

/* limit_timer: the buckets have refilled enough for the first held request. */
static void blk_limit_timer_cb(void *opaque)
{
	struct virtio_blk *b = opaque;
	struct blk_deferred df;

	pthread_mutex_lock(&b->lock);
	for (unsigned i = 0; i < b->num_queues; i++)
		if (b->queues[i].held)
			blk_run_queue(b, &b->queues[i]);
	blk_collect(b, &df);
	pthread_mutex_unlock(&b->lock);
	blk_deliver(b, &df);
}

void blk_set_rate_limit(struct virtio_blk *b, const struct ratelimit_config *cfg)
{
	pthread_mutex_lock(&b->lock);
	ratelimit_update(&b->limiter, cfg, loop_now_ns());
	/* Held queues try again under the new limits (on the I/O thread). */
	if (b->loop)
		for (unsigned i = 0; i < b->num_queues; i++)
			if (b->queues[i].held) {
				loop_timer_arm(&b->limit_timer, 0, 0);
				break;
			}
	pthread_mutex_unlock(&b->lock);
}

uint64_t blk_throttled(struct virtio_blk *b)
{
	uint64_t n;

	pthread_mutex_lock(&b->lock);
	n = b->limiter.throttled;
	pthread_mutex_unlock(&b->lock);
	return n;
}

static void blk_loop_cb(void *opaque, uint32_t events)
{
	(void)events;
	blk_process_completions(opaque);
}

int blk_attach(struct virtio_blk *b, struct loop *l)
{
	int rc;

	if (b->loop)
		return -EBUSY;
	/* Completions (io_uring's eventfd) are reaped on this loop's thread. */
	rc = loop_add(l, blk_event_fd(b), EPOLLIN, blk_loop_cb, b);
	if (rc == 0) {
		pthread_mutex_lock(&b->lock);
		loop_timer_init(&b->limit_timer, l, blk_limit_timer_cb, b);
		b->loop = l;
		/* Held before attaching: retry on this loop. */
		for (unsigned i = 0; i < b->num_queues; i++)
			if (b->queues[i].held)
				loop_timer_arm(&b->limit_timer, 0, 0);
		pthread_mutex_unlock(&b->lock);
	}
	return rc;
}

void blk_detach(struct virtio_blk *b)
{
	if (!b->loop)
		return;
	loop_timer_cancel(&b->limit_timer);
	loop_del(b->loop, blk_event_fd(b));
	b->loop = NULL;
}

/* ---- virtio_dev_ops ---- */

static uint64_t blk_features(struct virtio_dev *d)
{
	struct virtio_blk *b = d->priv;
	uint64_t f = VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) |
		     VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH);

	if (b->read_only)
		f |= VIRTIO_BIT(VIRTIO_BLK_F_RO);
	else
		f |= VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
	if (b->num_queues > 1)
		f |= VIRTIO_BIT(VIRTIO_BLK_F_MQ);
	return f;
}

static void blk_config_read(struct virtio_dev *d, uint32_t off, void *buf, uint32_t len)
{
	struct virtio_blk *b = d->priv;

	/* The core checked off + len against config_size; the image never changes. */
	if (off <= sizeof(b->config) && len <= sizeof(b->config) - off)
		memcpy(buf, (const uint8_t *)&b->config + off, len);
}

static void blk_config_write(struct virtio_dev *d, uint32_t off, const void *buf, uint32_t len)
{
	/* Only `writeback` is writable, with CONFIG_WCE, which is not offered. */
}

static int blk_activate(struct virtio_dev *d)
{
	struct virtio_blk *b = d->priv;

	pthread_mutex_lock(&b->lock);
	b->writethrough = !virtio_has_feature(d, VIRTIO_BLK_F_FLUSH);
	b->active_queues = virtio_has_feature(d, VIRTIO_BLK_F_MQ) ? b->num_queues : 1;
	b->failed = false;
	b->fail_pending = false;
	b->active = true;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

/*
 * A snapshot restored DRIVER_OK: activate, then look at every queue once
 * from the I/O thread. The driver's last kick may have gone to the old
 * process (a request the limiter held or the budget left, given back to the
 * ring at pause, with kicks still suppressed in guest memory); without this
 * look nothing would notice it.
 */
static int blk_restore(struct virtio_dev *d)
{
	struct virtio_blk *b = d->priv;
	int rc = blk_activate(d);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&b->lock);
	for (unsigned i = 0; i < b->active_queues; i++)
		b->queues[i].resched = true;
	block_wakeup(b->be);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

/* Caller holds b->lock. Afterwards no backend operation refers to guest memory. */
static void blk_quiesce(struct virtio_blk *b)
{
	b->active = false;
	b->draining = true;
	block_drain(b->be);
	for (unsigned i = 0; i < b->num_queues; i++) {
		struct blk_queue *q = &b->queues[i];

		if (q->n_inflight)
			log_err("virtio-blk", "%s: queue %u: %u requests still in flight after drain",
				b->path, i, q->n_inflight);
		q->resched = false;
		/* The reset forgets the ring: a held request has nothing left to go back to. */
		if (q->held) {
			blk_req_release(b, q->held);
			q->held = NULL;
		}
	}
	b->notify_mask = 0;
	b->failed = false;
	b->fail_pending = false;
	b->draining = false;
}

static void blk_reset(struct virtio_dev *d)
{
	struct virtio_blk *b = d->priv;

	pthread_mutex_lock(&b->lock);
	blk_quiesce(b);
	pthread_mutex_unlock(&b->lock);
}

/*
 * Pause (I/O thread stopped): let every request in flight finish into the
 * used ring as usual, so the guest gets its completions and no backend
 * operation is left reading into guest memory. Queues cut short by their
 * budget stay marked; the wakeup brings the I/O thread back to them when
 * it restarts.
 */
static void blk_pause_quiesce(struct virtio_dev *d)
{
	struct virtio_blk *b = d->priv;
	struct blk_deferred df;
	bool more = false;

	pthread_mutex_lock(&b->lock);
	block_drain(b->be);
	for (unsigned i = 0; i < b->num_queues; i++) {
		if (b->queues[i].n_inflight)
			log_err("virtio-blk", "%s: queue %u: %u requests still in flight after drain",
				b->path, i, b->queues[i].n_inflight);
		/*
		 * A held request goes back to the avail ring (it is the last one
		 * popped), so a snapshot taken now holds it as the guest's; the queue
		 * pops it again when the I/O thread restarts.
		 */
		if (b->queues[i].held) {
			vq_unpop(&b->vdev.queues[i], 1);
			blk_req_release(b, b->queues[i].held);
			b->queues[i].held = NULL;
			b->queues[i].resched = true;
		}
		more |= b->queues[i].resched;
	}
	if (more)
		block_wakeup(b->be);
	blk_collect(b, &df);
	pthread_mutex_unlock(&b->lock);
	blk_deliver(b, &df);
}

/*
 * Snapshot: nothing is in flight after a pause, so the device's own state
 * is what the guest saw at setup: capacity, read-only, queues. They are
 * saved to refuse an image that does not match (a restore reopens the
 * image from the same --disk specification).
 */
static void blk_save(struct virtio_dev *d, struct snap_writer *w)
{
	struct virtio_blk *b = d->priv;

	snap_put_u32(w, BLK_SNAP_VERSION);
	snap_put_u64(w, b->capacity);
	snap_put_bool(w, b->read_only);
	snap_put_u32(w, b->num_queues);
	snap_put_u16(w, b->queue_size);
}

static int blk_load(struct virtio_dev *d, struct snap_sec *s, bool apply, char *err, size_t errlen)
{
	struct virtio_blk *b = d->priv;
	uint32_t version = snap_get_u32(s);
	uint64_t capacity = snap_get_u64(s);
	bool ro = snap_get_bool(s);
	uint32_t nq = snap_get_u32(s);
	uint16_t qsize = snap_get_u16(s);

	(void)apply;   /* nothing to take over: the image and the rings carry the state */
	if (s->err)
		snprintf(err, errlen, "disk %s: state is truncated", b->path);
	else if (version != BLK_SNAP_VERSION)
		snprintf(err, errlen, "disk %s: state has layout version %u, this kestrel reads %u", b->path,
			 version, BLK_SNAP_VERSION);
	else if (capacity != b->capacity)
		snprintf(err, errlen, "disk %s: image is %llu sectors, snapshot had %llu", b->path,
			 (unsigned long long)b->capacity, (unsigned long long)capacity);
	else if (ro != b->read_only)
		snprintf(err, errlen, "disk %s: snapshot had it %s, now it is %s", b->path,
			 ro ? "read-only" : "read-write", b->read_only ? "read-only" : "read-write");
	else if (nq != b->num_queues || qsize != b->queue_size)
		snprintf(err, errlen, "disk %s: snapshot had %u queues of %u, now %u of %u", b->path, nq,
			 qsize, b->num_queues, b->queue_size);
	else
		return 0;
	snap_sec_fail(s);
	return -EINVAL;
}

static const struct virtio_dev_ops blk_ops = {
	.features = blk_features,
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.activate = blk_activate,
	.reset = blk_reset,
	.queue_notify = blk_queue_notify,
	.quiesce = blk_pause_quiesce,
	.save = blk_save,
	.load = blk_load,
	.restore = blk_restore,
};

/* ---- life cycle ---- */

static void blk_build_config(struct virtio_blk *b)
{
	struct virtio_blk_config *c = &b->config;
	uint32_t bs = block_logical_block_size(b->be);

	memset(c, 0, sizeof(*c));
	c->capacity = htole64(b->capacity);
	c->size_max = htole32(BLK_SIZE_MAX);
	c->seg_max = htole32(BLK_SEG_MAX);
	c->blk_size = htole32(bs);
	c->num_queues = htole16((uint16_t)b->num_queues);
	c->max_discard_sectors = htole32(BLK_MAX_DISCARD_SECTORS);
	c->max_discard_seg = htole32(BLK_MAX_SEGS);
	c->discard_sector_alignment = htole32(bs / BLK_SECTOR);
	c->max_write_zeroes_sectors = htole32(BLK_MAX_WZ_SECTORS);
	c->max_write_zeroes_seg = htole32(BLK_MAX_SEGS);
	c->write_zeroes_may_unmap = 1;
}

int blk_new(struct virtio_blk **out, const struct blk_config *cfg, const struct guest_mem *gm,
	    char *err, size_t errlen)
{
	uint16_t qsize = cfg->queue_size ? cfg->queue_size : BLK_DEFAULT_QUEUE_SIZE;
	struct block_opts bo = { 0 };
	struct virtio_blk *b;
	unsigned i;
	int rc;

	*out = NULL;
	if (cfg->num_queues < 1 || cfg->num_queues > BLK_MAX_QUEUES) {
		snprintf(err, errlen, "disk %s: queues must be 1 to %d", cfg->path, BLK_MAX_QUEUES);
		return -EINVAL;
	}
	if (qsize > VQ_MAX_SIZE || (qsize & (qsize - 1))) {
		snprintf(err, errlen, "disk %s: queue size must be a power of two up to %d", cfg->path,
			 VQ_MAX_SIZE);
		return -EINVAL;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "disk %s: out of memory", cfg->path);
		return -ENOMEM;
	}
	snprintf(b->path, sizeof(b->path), "%s", cfg->path);
	b->read_only = cfg->read_only;
	b->num_queues = cfg->num_queues;
	b->queue_size = qsize;
	b->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	rc = ratelimit_config_check(&cfg->rate_limit, "disk rate limit", err, errlen);
	if (rc < 0) {
		free(b);
		return rc;
	}
	ratelimit_init(&b->limiter, &cfg->rate_limit, loop_now_ns());
	if (cfg->serial[0])
		memcpy(b->serial, cfg->serial, strnlen(cfg->serial, BLK_SERIAL_LEN));
	else
		blk_default_serial(cfg->path, b->serial);
	for (i = 0; i < b->num_queues; i++) {
		b->queues[i].blk = b;
		b->queues[i].index = i;
		b->queues[i].inflight = calloc(qsize, sizeof(*b->queues[i].inflight));
		if (!b->queues[i].inflight) {
			snprintf(err, errlen, "disk %s: out of memory", cfg->path);
			rc = -ENOMEM;
			goto err_queues;
		}
	}

	bo.read_only = cfg->read_only;
	bo.direct = cfg->direct;
	bo.engine = cfg->engine;
	/* One backend operation per request in flight at most (see blk_range_next). */
	bo.depth = b->num_queues * qsize;
	rc = block_open(&b->be, cfg->path, &bo, err, errlen);
	if (rc < 0)
		goto err_queues;
	b->capacity = block_size(b->be) / BLK_SECTOR;
	blk_build_config(b);
	pthread_mutex_init(&b->lock, NULL);
	virtio_dev_init(&b->vdev, "virtio-blk", VIRTIO_ID_BLOCK, &blk_ops, b, b->num_queues, qsize,
			sizeof(b->config), gm);
	*out = b;
	return 0;

err_queues:
	for (i = 0; i < b->num_queues; i++)
		free(b->queues[i].inflight);
	free(b);
	return rc;
}

void blk_free(struct virtio_blk *b)
{
	struct blk_req *r;

	if (!b)
		return;
	blk_detach(b);
	pthread_mutex_lock(&b->lock);
	blk_quiesce(b);
	pthread_mutex_unlock(&b->lock);
	block_close(b->be);
	while ((r = b->free_reqs)) {
		b->free_reqs = r->next_free;
		free(r);
	}
	for (unsigned i = 0; i < b->num_queues; i++)
		free(b->queues[i].inflight);
	pthread_mutex_destroy(&b->lock);
	pthread_mutex_destroy(&b->vdev.lock);
	free(b);
}

struct virtio_dev *blk_virtio(struct virtio_blk *b)
{
	return &b->vdev;
}

int blk_event_fd(const struct virtio_blk *b)
{
	return block_event_fd(b->be);
}

uint64_t blk_capacity(const struct virtio_blk *b)
{
	return b->capacity;
}

struct block_backend *blk_backend(struct virtio_blk *b)
{
	return b->be;
}

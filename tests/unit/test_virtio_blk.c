/*
 * virtio-blk against temp image files, driven from the driver side of a real
 * split virtqueue (vring_driver.h) through the real virtio core and queue
 * code: reads, writes, flush, GET_ID, discard, write zeroes, config space
 * and features, and what a hostile driver gets for malformed requests.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/virtio/blk.h"
#include "loop/loop.h"
#include "vring_driver.h"
#include "mem/gm_test.h"
#include "backends/block_test.h"

/* Guest-visible constants (Virtio 1.2, 5.2), spelled out independently of blk.c. */
#define F_SIZE_MAX     1
#define F_SEG_MAX      2
#define F_RO           5
#define F_BLK_SIZE     6
#define F_FLUSH        9
#define F_MQ           12
#define F_DISCARD      13
#define F_WRITE_ZEROES 14

#define T_IN           0
#define T_OUT          1
#define T_FLUSH        4
#define T_GET_ID       8
#define T_GET_LIFETIME 10
#define T_DISCARD      11
#define T_WRITE_ZEROES 13

#define S_OK     0
#define S_IOERR  1
#define S_UNSUPP 2

#define IMG_SIZE (1u << 20)               /* 2048 sectors */
#define QSIZE    16
#define RAM      (4ull << 20)

struct fx {
	struct vrd drv;
	struct virtio_blk *b;
	struct virtio_dev *d;
	char path[64];
	unsigned notifies, config_notifies;
	uint8_t orig[IMG_SIZE];
};

static void fx_notify_queue(struct virtio_dev *d, unsigned q)
{
	((struct fx *)d->transport)->notifies++;
}

static void fx_notify_config(struct virtio_dev *d)
{
	((struct fx *)d->transport)->config_notifies++;
}

static const struct virtio_transport_ops fx_tops = {
	.notify_queue = fx_notify_queue,
	.notify_config = fx_notify_config,
};

static void img_read(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static bool img_unchanged(struct fx *f)
{
	static uint8_t now[IMG_SIZE];

	img_read(f->path, 0, now, IMG_SIZE);
	return memcmp(now, f->orig, IMG_SIZE) == 0;
}

/* Negotiate (all offered features minus `drop`), set up queue 0 (and 1 at `q1`), DRIVER_OK. */
static void fx_start(struct fx *f, uint64_t drop, struct vrd *q1)
{
	struct virtio_dev *d = f->d;
	uint64_t feat = d->host_features & ~drop;

	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	virtio_set_driver_features(d, 0, (uint32_t)feat);
	virtio_set_driver_features(d, 1, (uint32_t)(feat >> 32));
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			  VIRTIO_STATUS_FEATURES_OK);
	assert_true(d->status & VIRTIO_STATUS_FEATURES_OK);
	for (unsigned i = 0; i < (q1 ? 2u : 1u); i++) {
		struct vrd *v = i ? q1 : &f->drv;
		struct virtq *q = &d->queues[i];

		q->size = v->size;
		q->desc_gpa = v->desc_gpa;
		q->avail_gpa = v->avail_gpa;
		q->used_gpa = v->used_gpa;
		q->enabled = true;
	}
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			  VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	assert_true(d->status & VIRTIO_STATUS_DRIVER_OK);
	assert_false(d->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* A fresh image filled with a pattern and a device on it; `opts` is appended to the --disk spec. */
static struct fx *fx_new(const char *opts, uint64_t drop)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct blk_config cfg;
	char spec[256], err[256] = "";
	int fd;

	assert_non_null(f);
	snprintf(f->path, sizeof(f->path), "/tmp/kestrel-vblk-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	for (size_t i = 0; i < IMG_SIZE; i++)
		f->orig[i] = (uint8_t)(i * 13 + (i >> 9) + 1);
	assert_int_equal(write(fd, f->orig, IMG_SIZE), IMG_SIZE);
	close(fd);
	snprintf(spec, sizeof(spec), "%s%s", f->path, opts);
	assert_int_equal(blk_parse_spec(spec, &cfg, err, sizeof(err)), 0);
	assert_int_equal(vrd_init_ram(&f->drv, QSIZE, RAM), 0);
	assert_int_equal(blk_new(&f->b, &cfg, &f->drv.gm, err, sizeof(err)), 0);
	f->d = blk_virtio(f->b);
	f->d->tops = &fx_tops;
	f->d->transport = f;
	fx_start(f, drop, NULL);
	return f;
}

static void fx_free(struct fx *f)
{
	blk_free(f->b);
	vrd_exit(&f->drv);
	unlink(f->path);
	free(f);
}

static struct vrd_buf hdr_buf(struct vrd *v, uint32_t type, uint64_t sector)
{
	uint8_t h[16];
	uint32_t t = htole32(type), z = 0;
	uint64_t s = htole64(sector);

	memcpy(h, &t, 4);
	memcpy(h + 4, &z, 4);
	memcpy(h + 8, &s, 8);
	return vrd_buf_data(v, h, 16, false);
}

static struct vrd_buf status_buf(struct vrd *v)
{
	uint8_t ff = 0xff;

	return vrd_buf_data(v, &ff, 1, true);   /* 0xff: "not written" */
}

/* header, data buffers, status; publish. Returns the status byte's address. */
static uint64_t fx_req_on(struct vrd *v, uint32_t type, uint64_t sector, const struct vrd_buf *data,
			  unsigned n)
{
	struct vrd_buf b[16];

	b[0] = hdr_buf(v, type, sector);
	if (n)
		memcpy(b + 1, data, n * sizeof(*data));
	b[n + 1] = status_buf(v);
	/*
	 * Direct descriptors when the ring is otherwise idle; an indirect table
	 * (one ring descriptor) when requests pile up, so QSIZE of them fit.
	 */
	if (v->avail_idx == v->last_used)
		vrd_publish(v, vrd_add_chain(v, b, n + 2));
	else
		vrd_publish(v, vrd_add_indirect(v, b, n + 2));
	return b[n + 1].gpa;
}

static uint64_t fx_req(struct fx *f, uint32_t type, uint64_t sector, const struct vrd_buf *data,
		       unsigned n)
{
	return fx_req_on(&f->drv, type, sector, data, n);
}

static void fx_kick(struct fx *f)
{
	f->d->ops->queue_notify(f->d, 0);     /* what the transport does on a kick */
}

/* The next used entry, running the I/O thread's side (eventfd + completions) until there is one. */
static bool fx_wait_on(struct fx *f, struct vrd *v, uint32_t *id, uint32_t *len)
{
	for (int i = 0; i < 500; i++) {
		struct pollfd p = { .fd = blk_event_fd(f->b), .events = POLLIN };

		if (vrd_get_used(v, id, len))
			return true;
		poll(&p, 1, 10);
		blk_process_completions(f->b);
	}
	return false;
}

static bool fx_wait(struct fx *f, uint32_t *id, uint32_t *len)
{
	return fx_wait_on(f, &f->drv, id, len);
}

static uint8_t st(struct fx *f, uint64_t gpa)
{
	return *(uint8_t *)vrd_host(&f->drv, gpa, 1);
}

/* Run one request to completion: status and used length. */
static uint8_t fx_run(struct fx *f, uint32_t type, uint64_t sector, const struct vrd_buf *data,
		      unsigned n, uint32_t *used_len)
{
	uint64_t s = fx_req(f, type, sector, data, n);
	uint32_t id, len;

	fx_kick(f);
	assert_true(fx_wait(f, &id, &len));
	if (used_len)
		*used_len = len;
	return st(f, s);
}

static const char *const engine_opts[] = { ",engine=sync", ",engine=uring" };

/* ---- normal operation ---- */

static void test_read_write(void **state)
{
	for (int k = 0; k < 2; k++) {
		struct fx *f = fx_new(engine_opts[k], 0);
		uint8_t w[4096], back[4096];
		struct vrd_buf d[3];
		uint32_t len;

		for (size_t i = 0; i < sizeof(w); i++)
			w[i] = (uint8_t)(i ^ 0x5a);
		d[0] = vrd_buf_data(&f->drv, w, 1024, false);
		d[1] = vrd_buf_data(&f->drv, w + 1024, 3072, false);
		assert_int_equal(fx_run(f, T_OUT, 8, d, 2, &len), S_OK);
		assert_int_equal(len, 1);
		img_read(f->path, 8 * 512, back, sizeof(back));
		assert_memory_equal(back, w, sizeof(w));
		/* Around it: untouched. */
		img_read(f->path, 7 * 512, back, 512);
		assert_memory_equal(back, f->orig + 7 * 512, 512);
		img_read(f->path, 16 * 512, back, 512);
		assert_memory_equal(back, f->orig + 16 * 512, 512);

		d[0] = vrd_buf_data(&f->drv, NULL, 512, true);
		d[1] = vrd_buf_data(&f->drv, NULL, 2048, true);
		d[2] = vrd_buf_data(&f->drv, NULL, 1536, true);
		assert_int_equal(fx_run(f, T_IN, 8, d, 3, &len), S_OK);
		assert_int_equal(len, 4096 + 1);
		assert_memory_equal(vrd_host(&f->drv, d[0].gpa, 512), w, 512);
		assert_memory_equal(vrd_host(&f->drv, d[1].gpa, 2048), w + 512, 2048);
		assert_memory_equal(vrd_host(&f->drv, d[2].gpa, 1536), w + 2560, 1536);
		/* The last sector of the disk. */
		d[0] = vrd_buf_data(&f->drv, NULL, 512, true);
		assert_int_equal(fx_run(f, T_IN, IMG_SIZE / 512 - 1, d, 1, &len), S_OK);
		assert_memory_equal(vrd_host(&f->drv, d[0].gpa, 512), f->orig + IMG_SIZE - 512, 512);
		assert_int_equal(f->d->metrics.requests, 3);
		assert_int_equal(f->d->metrics.errors, 0);
		fx_free(f);
	}
}

/* Attached to a loop, the device reaps its own completions there: the test only runs the loop. */
static void test_attach_loop(void **state)
{
	for (int k = 0; k < 2; k++) {
		struct fx *f = fx_new(engine_opts[k], 0);
		struct loop *l = loop_new();
		struct vrd_buf d = vrd_buf_data(&f->drv, NULL, 512, true);
		uint32_t id, len;
		bool done = false;

		assert_non_null(l);
		assert_int_equal(blk_attach(f->b, l), 0);
		assert_int_equal(blk_attach(f->b, l), -EBUSY);
		fx_req(f, T_IN, 3, &d, 1);
		fx_kick(f);
		for (int i = 0; i < 100 && !(done = vrd_get_used(&f->drv, &id, &len)); i++)
			loop_run_once(l, 20);
		assert_true(done);
		assert_int_equal(len, 512 + 1);
		assert_memory_equal(vrd_host(&f->drv, d.gpa, 512), f->orig + 3 * 512, 512);
		/* Detached, nothing of the device is left in the loop; blk_free detaches again harmlessly. */
		blk_detach(f->b);
		assert_int_equal(loop_run_once(l, 0), 0);
		assert_int_equal(blk_attach(f->b, l), 0);
		fx_free(f);
		assert_int_equal(loop_run_once(l, 0), 0);
		loop_free(l);
	}
}

/* Many requests in one kick: one interrupt for the batch (no EVENT_IDX: every check counts). */
static void test_batch_one_interrupt(void **state)
{
	for (int k = 0; k < 2; k++) {
		struct fx *f = fx_new(engine_opts[k], VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
		uint64_t s[8];
		struct vrd_buf d;
		uint32_t id, len;

		assert_false(virtio_has_feature(f->d, VIRTIO_F_EVENT_IDX));
		for (int i = 0; i < 8; i++) {
			d = vrd_buf_data(&f->drv, NULL, 4096, true);
			s[i] = fx_req(f, T_IN, (uint64_t)i * 8, &d, 1);
		}
		fx_kick(f);
		for (int i = 0; i < 8; i++) {
			assert_true(fx_wait(f, &id, &len));
			assert_int_equal(len, 4097);
		}
		for (int i = 0; i < 8; i++)
			assert_int_equal(st(f, s[i]), S_OK);
		/* sync: all complete inside the kick, one interrupt; uring: one per reap at most. */
		if (k == 0)
			assert_int_equal(f->notifies, 1);
		else
			assert_true(f->notifies >= 1 && f->notifies <= 8);
		fx_free(f);
	}
}

static void test_flush(void **state)
{
	for (int k = 0; k < 2; k++) {
		struct fx *f = fx_new(engine_opts[k], 0);
		uint32_t len;

		assert_int_equal(fx_run(f, T_FLUSH, 0, NULL, 0, &len), S_OK);
		assert_int_equal(len, 1);
		fx_free(f);
	}
}

static void test_get_id(void **state)
{
	struct fx *f = fx_new(",serial=disk-0123456789ABCDE", 0);
	struct vrd_buf d;
	uint32_t len;
	char *id;

	d = vrd_buf_data(&f->drv, NULL, 20, true);
	assert_int_equal(fx_run(f, T_GET_ID, 0, &d, 1, &len), S_OK);
	assert_int_equal(len, 21);
	assert_memory_equal(vrd_host(&f->drv, d.gpa, 20), "disk-0123456789ABCDE", 20);
	/* Too small for the answer: IOERR, buffer untouched. */
	d = vrd_buf_data(&f->drv, NULL, 10, true);
	assert_int_equal(fx_run(f, T_GET_ID, 0, &d, 1, &len), S_IOERR);
	assert_true(memchr(vrd_host(&f->drv, d.gpa, 10), 'd', 10) == NULL);
	fx_free(f);

	/* Default: derived from the path, NUL-padded, stable. */
	f = fx_new("", 0);
	d = vrd_buf_data(&f->drv, NULL, 20, true);
	assert_int_equal(fx_run(f, T_GET_ID, 0, &d, 1, &len), S_OK);
	id = vrd_host(&f->drv, d.gpa, 20);
	assert_memory_equal(id, "KST", 3);
	assert_int_equal(strnlen(id, 20), 19);
	fx_free(f);
}

static struct vrd_buf segs_buf(struct vrd *v, const uint64_t (*seg)[3], unsigned n)
{
	uint8_t raw[16 * 32];

	for (unsigned i = 0; i < n; i++) {
		uint64_t s = htole64(seg[i][0]);
		uint32_t num = htole32((uint32_t)seg[i][1]), fl = htole32((uint32_t)seg[i][2]);

		memcpy(raw + 16 * i, &s, 8);
		memcpy(raw + 16 * i + 8, &num, 4);
		memcpy(raw + 16 * i + 12, &fl, 4);
	}
	return vrd_buf_data(v, raw, 16 * n, false);
}

static bool img_zero(struct fx *f, uint64_t off, size_t len)
{
	static uint8_t buf[IMG_SIZE];

	img_read(f->path, off, buf, len);
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			return false;
	return true;
}

static void test_discard_write_zeroes(void **state)
{
	for (int k = 0; k < 2; k++) {
		struct fx *f = fx_new(engine_opts[k], 0);
		const uint64_t wz[2][3] = { { 16, 9, 0 }, { 100, 8, 1 /* unmap */ } };
		const uint64_t dc[1][3] = { { 256, 128, 0 } };
		uint8_t back[512];
		struct vrd_buf d;

		d = segs_buf(&f->drv, wz, 2);
		assert_int_equal(fx_run(f, T_WRITE_ZEROES, 0, &d, 1, NULL), S_OK);
		assert_true(img_zero(f, 16 * 512, 9 * 512));
		assert_true(img_zero(f, 100 * 512, 8 * 512));
		img_read(f->path, 15 * 512, back, 512);
		assert_memory_equal(back, f->orig + 15 * 512, 512);
		img_read(f->path, 25 * 512, back, 512);
		assert_memory_equal(back, f->orig + 25 * 512, 512);
		img_read(f->path, 108 * 512, back, 512);
		assert_memory_equal(back, f->orig + 108 * 512, 512);

		d = segs_buf(&f->drv, dc, 1);
		assert_int_equal(fx_run(f, T_DISCARD, 0, &d, 1, NULL), S_OK);
		/* Discarded ranges of a file read back as zeroes (punched hole). */
		assert_true(img_zero(f, 256 * 512, 128 * 512));
		img_read(f->path, 384 * 512, back, 512);
		assert_memory_equal(back, f->orig + 384 * 512, 512);
		fx_free(f);
	}
}

static void test_discard_bad_segments(void **state)
{
	struct fx *f = fx_new(",engine=sync", 0);
	const uint64_t unmap[1][3] = { { 0, 8, 1 } };
	const uint64_t reserved[1][3] = { { 0, 8, 2 } };
	const uint64_t beyond[2][3] = { { 0, 8, 0 }, { IMG_SIZE / 512 - 4, 8, 0 } };
	const uint64_t wrap[1][3] = { { UINT64_MAX - 3, 8, 0 } };
	uint64_t many[17][3];
	struct vrd_buf d;

	/* 5.2.6.2: unmap on a discard, or unknown flags: UNSUPP. */
	d = segs_buf(&f->drv, unmap, 1);
	assert_int_equal(fx_run(f, T_DISCARD, 0, &d, 1, NULL), S_UNSUPP);
	d = segs_buf(&f->drv, reserved, 1);
	assert_int_equal(fx_run(f, T_WRITE_ZEROES, 0, &d, 1, NULL), S_UNSUPP);
	/* A bad second segment fails the request before the first is touched. */
	d = segs_buf(&f->drv, beyond, 2);
	assert_int_equal(fx_run(f, T_WRITE_ZEROES, 0, &d, 1, NULL), S_IOERR);
	d = segs_buf(&f->drv, wrap, 1);
	assert_int_equal(fx_run(f, T_WRITE_ZEROES, 0, &d, 1, NULL), S_IOERR);
	/* More than max_discard_seg (16). */
	for (int i = 0; i < 17; i++) {
		many[i][0] = (uint64_t)i * 8;
		many[i][1] = 8;
		many[i][2] = 0;
	}
	d = segs_buf(&f->drv, (const uint64_t (*)[3])many, 17);
	assert_int_equal(fx_run(f, T_DISCARD, 0, &d, 1, NULL), S_IOERR);
	/* Not a multiple of 16 bytes, and empty. */
	d = vrd_buf_data(&f->drv, many, 20, false);
	assert_int_equal(fx_run(f, T_DISCARD, 0, &d, 1, NULL), S_IOERR);
	assert_int_equal(fx_run(f, T_DISCARD, 0, NULL, 0, NULL), S_IOERR);
	assert_true(img_unchanged(f));
	assert_false(f->d->status & VIRTIO_STATUS_NEEDS_RESET);
	fx_free(f);
}

static uint32_t cfg32(struct fx *f, uint32_t off)
{
	uint32_t v;

	f->d->ops->config_read(f->d, off, &v, 4);
	return le32toh(v);
}

static void test_config_and_features(void **state)
{
	struct fx *f = fx_new(",queues=4", 0);
	uint64_t cap, hf = f->d->host_features;
	uint16_t nq;
	uint8_t may_unmap;

	assert_int_equal(f->d->config_size, 60);
	f->d->ops->config_read(f->d, 0, &cap, 8);
	assert_int_equal(le64toh(cap), IMG_SIZE / 512);
	assert_int_equal(blk_capacity(f->b), IMG_SIZE / 512);
	assert_true(cfg32(f, 8) >= 4096);                 /* size_max */
	assert_true(cfg32(f, 12) >= 1);                   /* seg_max */
	assert_int_equal(cfg32(f, 20), 512);              /* blk_size */
	f->d->ops->config_read(f->d, 34, &nq, 2);
	assert_int_equal(le16toh(nq), 4);
	assert_true(cfg32(f, 36) > 0);                    /* max_discard_sectors */
	assert_int_equal(cfg32(f, 40), 16);               /* max_discard_seg */
	assert_int_equal(cfg32(f, 44), 1);                /* discard_sector_alignment */
	assert_true(cfg32(f, 48) > 0);                    /* max_write_zeroes_sectors */
	assert_int_equal(cfg32(f, 52), 16);
	f->d->ops->config_read(f->d, 56, &may_unmap, 1);
	assert_int_equal(may_unmap, 1);
	assert_int_equal(f->d->device_id, VIRTIO_ID_BLOCK);
	for (unsigned bit = 0; bit < 24; bit++) {
		bool want = bit == F_SIZE_MAX || bit == F_SEG_MAX || bit == F_BLK_SIZE ||
			    bit == F_FLUSH || bit == F_MQ || bit == F_DISCARD || bit == F_WRITE_ZEROES;

		assert_int_equal(!!(hf & VIRTIO_BIT(bit)), want);
	}
	assert_true(hf & VIRTIO_BIT(VIRTIO_F_VERSION_1));
	fx_free(f);

	f = fx_new(",ro", 0);
	hf = f->d->host_features;
	assert_true(hf & VIRTIO_BIT(F_RO));
	assert_false(hf & VIRTIO_BIT(F_DISCARD));
	assert_false(hf & VIRTIO_BIT(F_WRITE_ZEROES));
	assert_false(hf & VIRTIO_BIT(F_MQ));
	fx_free(f);
}

/* Two queues, each with its own ring, both served. */
static void test_multiqueue(void **state)
{
	struct fx *f = fx_new(",queues=2,engine=uring", 0);
	struct vrd q1;
	struct vrd_buf d;
	uint32_t id, len;
	uint64_t s0, s1;
	uint8_t w[512];

	/* Driver reset, then a second ring in the upper half of the same RAM. */
	virtio_set_status(f->d, 0);
	q1 = f->drv;
	f->drv.ram_size = RAM / 2;
	q1.desc_gpa = q1.ram_gpa + RAM / 2;
	q1.avail_gpa = q1.desc_gpa + 16ull * QSIZE;
	q1.used_gpa = (q1.avail_gpa + 6ull + 2ull * QSIZE + 3) & ~3ull;
	q1.data_start = q1.data_next = (q1.used_gpa + 6ull + 8ull * QSIZE + 15) & ~15ull;
	fx_start(f, 0, &q1);
	assert_true(virtio_has_feature(f->d, F_MQ));

	memset(w, 0xab, sizeof(w));
	d = vrd_buf_data(&q1, w, 512, false);
	s1 = fx_req_on(&q1, T_OUT, 40, &d, 1);
	f->d->ops->queue_notify(f->d, 1);
	assert_true(fx_wait_on(f, &q1, &id, &len));
	assert_int_equal(*(uint8_t *)vrd_host(&q1, s1, 1), S_OK);
	d = vrd_buf_data(&f->drv, NULL, 512, true);
	s0 = fx_req(f, T_IN, 40, &d, 1);
	fx_kick(f);
	assert_true(fx_wait(f, &id, &len));
	assert_int_equal(st(f, s0), S_OK);
	assert_memory_equal(vrd_host(&f->drv, d.gpa, 512), w, 512);
	fx_free(f);
}

/* ---- errors the status byte answers ---- */

static void test_out_of_range(void **state)
{
	struct fx *f = fx_new(",engine=sync", 0);
	struct vrd_buf d;
	uint32_t len;

	d = vrd_buf_data(&f->drv, f->orig, 1024, false);
	assert_int_equal(fx_run(f, T_OUT, IMG_SIZE / 512 - 1, &d, 1, &len), S_IOERR);
	assert_int_equal(len, 1);
	assert_int_equal(fx_run(f, T_OUT, IMG_SIZE / 512, &d, 1, NULL), S_IOERR);
	/* sector * 512 and sector + n overflow. */
	assert_int_equal(fx_run(f, T_OUT, UINT64_MAX, &d, 1, NULL), S_IOERR);
	assert_int_equal(fx_run(f, T_OUT, 1ull << 55, &d, 1, NULL), S_IOERR);
	assert_int_equal(fx_run(f, T_OUT, UINT64_MAX - 1, &d, 1, NULL), S_IOERR);
	d = vrd_buf_data(&f->drv, NULL, 512, true);
	assert_int_equal(fx_run(f, T_IN, UINT64_MAX, &d, 1, NULL), S_IOERR);
	assert_true(img_unchanged(f));
	assert_int_equal(f->d->metrics.errors, 6);
	assert_false(f->d->status & VIRTIO_STATUS_NEEDS_RESET);
	fx_free(f);
}

static void test_read_only(void **state)
{
	for (int k = 0; k < 2; k++) {
		struct fx *f = fx_new(k ? ",ro,engine=uring" : ",ro,engine=sync", 0);
		const uint64_t seg[1][3] = { { 0, 8, 0 } };
		struct vrd_buf d;

		assert_true(virtio_has_feature(f->d, F_RO));
		d = vrd_buf_data(&f->drv, f->orig + 4096, 4096, false);
		assert_int_equal(fx_run(f, T_OUT, 0, &d, 1, NULL), S_IOERR);
		/* Not offered on a read-only disk, so not supported. */
		d = segs_buf(&f->drv, seg, 1);
		assert_int_equal(fx_run(f, T_DISCARD, 0, &d, 1, NULL), S_UNSUPP);
		assert_int_equal(fx_run(f, T_WRITE_ZEROES, 0, &d, 1, NULL), S_UNSUPP);
		d = vrd_buf_data(&f->drv, NULL, 512, true);
		assert_int_equal(fx_run(f, T_IN, 0, &d, 1, NULL), S_OK);
		assert_int_equal(fx_run(f, T_FLUSH, 0, NULL, 0, NULL), S_OK);
		assert_true(img_unchanged(f));
		fx_free(f);
	}
}

static void test_unsupported_types(void **state)
{
	struct fx *f = fx_new("", 0);
	const uint32_t types[] = { 2, 3, 5, T_GET_LIFETIME, 14, 15, 99, 0x80000000u, UINT32_MAX };
	struct vrd_buf d;
	uint32_t len;

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		d = vrd_buf_data(&f->drv, NULL, 512, true);
		assert_int_equal(fx_run(f, types[i], 0, &d, 1, &len), S_UNSUPP);
		assert_int_equal(len, 1);
	}
	assert_true(img_unchanged(f));
	fx_free(f);
}

/* The status byte is the last byte of the in part, wherever the descriptors split. */
static void test_status_position(void **state)
{
	struct fx *f = fx_new(",engine=sync", 0);
	uint8_t h[16], *p;
	uint32_t t = htole32(T_IN), id, len;
	uint64_t s = htole64(3);
	struct vrd_buf b[5];

	memcpy(h, &t, 4);
	memset(h + 4, 0, 4);
	memcpy(h + 8, &s, 8);
	/* Header split 5 + 11, data 300 + (212 data + status) in one descriptor. */
	b[0] = vrd_buf_data(&f->drv, h, 5, false);
	b[1] = vrd_buf_data(&f->drv, h + 5, 11, false);
	b[2] = vrd_buf_data(&f->drv, NULL, 300, true);
	b[3] = vrd_buf_data(&f->drv, NULL, 213, true);
	memset(vrd_host(&f->drv, b[3].gpa, 213), 0xee, 213);
	vrd_publish(&f->drv, vrd_add_chain(&f->drv, b, 4));
	fx_kick(f);
	assert_true(fx_wait(f, &id, &len));
	assert_int_equal(len, 513);
	assert_memory_equal(vrd_host(&f->drv, b[2].gpa, 300), f->orig + 3 * 512, 300);
	p = vrd_host(&f->drv, b[3].gpa, 213);
	assert_memory_equal(p, f->orig + 3 * 512 + 300, 212);
	assert_int_equal(p[212], S_OK);

	/* A write whose header and data share one descriptor; status through an indirect table. */
	{
		uint8_t buf[16 + 512];
		struct vrd_buf c[2];

		t = htole32(T_OUT);
		s = htole64(5);
		memcpy(buf, &t, 4);
		memset(buf + 4, 0, 4);
		memcpy(buf + 8, &s, 8);
		memset(buf + 16, 0x99, 512);
		c[0] = vrd_buf_data(&f->drv, buf, sizeof(buf), false);
		c[1] = status_buf(&f->drv);
		vrd_publish(&f->drv, vrd_add(&f->drv, c, 2, 1));
		fx_kick(f);
		assert_true(fx_wait(f, &id, &len));
		assert_int_equal(st(f, c[1].gpa), S_OK);
		img_read(f->path, 5 * 512, buf, 512);
		for (int i = 0; i < 512; i++)
			assert_int_equal(buf[i], 0x99);
	}
	fx_free(f);
}

static void test_bad_lengths_and_directions(void **state)
{
	struct fx *f = fx_new(",engine=sync", 0);
	struct vrd_buf d[2];
	uint8_t h8[8] = { 0 };
	uint32_t id, len;

	/* Data length not a multiple of 512: IOERR, nothing read or written. */
	d[0] = vrd_buf_data(&f->drv, NULL, 100, true);
	memset(vrd_host(&f->drv, d[0].gpa, 100), 0xcd, 100);
	assert_int_equal(fx_run(f, T_IN, 0, d, 1, NULL), S_IOERR);
	assert_int_equal(*(uint8_t *)vrd_host(&f->drv, d[0].gpa, 1), 0xcd);
	d[0] = vrd_buf_data(&f->drv, f->orig, 700, false);
	assert_int_equal(fx_run(f, T_OUT, 0, d, 1, NULL), S_IOERR);
	/* A read with device-readable data; a write with device-writable data. */
	d[0] = vrd_buf_data(&f->drv, f->orig, 512, false);
	d[1] = vrd_buf_data(&f->drv, NULL, 512, true);
	assert_int_equal(fx_run(f, T_IN, 0, d, 2, NULL), S_IOERR);
	assert_int_equal(fx_run(f, T_OUT, 0, d, 2, NULL), S_IOERR);
	/* A header shorter than 16 bytes: the status byte still says IOERR. */
	d[0] = vrd_buf_data(&f->drv, h8, 8, false);
	d[1] = status_buf(&f->drv);
	vrd_publish(&f->drv, vrd_add_chain(&f->drv, d, 2));
	fx_kick(f);
	assert_true(fx_wait(f, &id, &len));
	assert_int_equal(len, 1);
	assert_int_equal(st(f, d[1].gpa), S_IOERR);
	/* No header at all. */
	d[0] = status_buf(&f->drv);
	vrd_publish(&f->drv, vrd_add_chain(&f->drv, d, 1));
	fx_kick(f);
	assert_true(fx_wait(f, &id, &len));
	assert_int_equal(st(f, d[0].gpa), S_IOERR);
	assert_true(img_unchanged(f));
	assert_false(f->d->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(f->config_notifies, 0);
	fx_free(f);
}

/* ---- protocol violations: DEVICE_NEEDS_RESET ---- */

static void check_needs_reset(struct fx *f)
{
	struct vrd_buf d;
	uint32_t id, len;

	assert_true(f->d->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(f->config_notifies, 1);
	/* The device stops: a valid request after it is left alone. */
	d = vrd_buf_data(&f->drv, NULL, 512, true);
	fx_req(f, T_IN, 0, &d, 1);
	fx_kick(f);
	blk_process_completions(f->b);
	assert_false(vrd_get_used(&f->drv, &id, &len));
}

static void test_no_status_byte(void **state)
{
	struct fx *f = fx_new(",engine=sync", 0);
	struct vrd_buf d[2];

	d[0] = hdr_buf(&f->drv, T_OUT, 0);
	d[1] = vrd_buf_data(&f->drv, f->orig, 512, false);
	vrd_publish(&f->drv, vrd_add_chain(&f->drv, d, 2));
	fx_kick(f);
	check_needs_reset(f);
	assert_true(img_unchanged(f));
	fx_free(f);
}

static void test_empty_in_part(void **state)
{
	struct fx *f = fx_new(",engine=sync", 0);
	struct vrd_buf d[2];

	d[0] = hdr_buf(&f->drv, T_FLUSH, 0);
	d[1] = (struct vrd_buf){ vrd_alloc(&f->drv, 16), 0, true };   /* a 0-byte "status" */
	vrd_publish(&f->drv, vrd_add_chain(&f->drv, d, 2));
	fx_kick(f);
	check_needs_reset(f);
	fx_free(f);
}

/* The same head made available twice while the first is still being read. */
static void test_head_twice_in_flight(void **state)
{
	struct fx *f = fx_new(",engine=uring", 0);
	struct vrd_buf b[3];
	uint32_t id, len;
	uint16_t head;

	b[0] = hdr_buf(&f->drv, T_IN, 0);
	b[1] = vrd_buf_data(&f->drv, NULL, 4096, true);
	b[2] = status_buf(&f->drv);
	head = vrd_add_chain(&f->drv, b, 3);
	vrd_publish(&f->drv, head);
	vrd_publish(&f->drv, head);
	fx_kick(f);
	assert_true(f->d->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(f->config_notifies, 1);
	/* The first one still completes, once. */
	assert_true(fx_wait(f, &id, &len));
	assert_int_equal(id, head);
	assert_int_equal(st(f, b[2].gpa), S_OK);
	blk_process_completions(f->b);
	assert_false(vrd_get_used(&f->drv, &id, &len));
	fx_free(f);
}

/* A broken ring (head beyond the queue size) is the queue code's catch, reported the same way. */
static void test_broken_ring(void **state)
{
	struct fx *f = fx_new(",engine=sync", 0);

	vrd_publish(&f->drv, QSIZE + 3);
	fx_kick(f);
	assert_true(f->d->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(f->config_notifies, 1);
	fx_free(f);
}

/* ---- host errors ---- */

static void test_backend_error(void **state)
{
	for (int k = 0; k < 2; k++) {
		struct fx *f = fx_new(engine_opts[k], 0);
		struct block_fault fault = { .fail_errno = EIO, .fail_count = 3 };
		const uint64_t seg[1][3] = { { 0, 8, 0 } };
		struct vrd_buf d;

		block_set_fault(blk_backend(f->b), &fault);
		d = vrd_buf_data(&f->drv, f->orig + 8192, 4096, false);
		assert_int_equal(fx_run(f, T_OUT, 0, &d, 1, NULL), S_IOERR);
		assert_int_equal(fx_run(f, T_FLUSH, 0, NULL, 0, NULL), S_IOERR);
		d = segs_buf(&f->drv, seg, 1);
		assert_int_equal(fx_run(f, T_WRITE_ZEROES, 0, &d, 1, NULL), S_IOERR);
		assert_true(img_unchanged(f));
		assert_int_equal(f->d->metrics.errors, 3);
		assert_false(f->d->status & VIRTIO_STATUS_NEEDS_RESET);
		/* And then it works again. */
		d = vrd_buf_data(&f->drv, f->orig + 8192, 4096, false);
		assert_int_equal(fx_run(f, T_OUT, 0, &d, 1, NULL), S_OK);
		fx_free(f);
	}
}

/* A real host error: the image cannot grow past RLIMIT_FSIZE. */
static void test_host_efbig(void **state)
{
	struct rlimit old, lim;

	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	for (int k = 0; k < 2; k++) {
		struct fx *f = fx_new(engine_opts[k], 0);
		struct vrd_buf d = vrd_buf_data(&f->drv, f->orig, 4096, false);
		uint8_t status;

		assert_int_equal(truncate(f->path, 65536), 0);   /* sparse tail beyond the limit */
		assert_int_equal(truncate(f->path, IMG_SIZE), 0);
		lim = old;
		lim.rlim_cur = 65536;
		assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
		status = fx_run(f, T_OUT, 1024, &d, 1, NULL);
		assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
		assert_int_equal(status, S_IOERR);
		assert_true(img_zero(f, 1024 * 512, 4096));
		fx_free(f);
	}
	signal(SIGXFSZ, SIG_DFL);
}

/* ---- reset, budget, durability ---- */

static void test_reset_in_flight(void **state)
{
	struct fx *f = fx_new(",engine=uring", 0);
	uint64_t s[8];
	struct vrd_buf d;
	uint32_t id, len;

	for (int i = 0; i < 8; i++) {
		d = vrd_buf_data(&f->drv, NULL, 65536, true);
		s[i] = fx_req(f, T_IN, (uint64_t)i * 128, &d, 1);
	}
	fx_kick(f);
	/* Completions never reaped: reset must wait for them and drop them. */
	virtio_set_status(f->d, 0);
	assert_int_equal(block_inflight(blk_backend(f->b)), 0);
	assert_int_equal(vrd_used_idx(&f->drv), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(st(f, s[i]), 0xff);
	blk_process_completions(f->b);
	assert_int_equal(vrd_used_idx(&f->drv), 0);

	/* The driver sets the device up again on fresh rings, and it works. */
	memset(vrd_host(&f->drv, f->drv.desc_gpa, f->drv.data_start - f->drv.desc_gpa), 0,
	       f->drv.data_start - f->drv.desc_gpa);
	f->drv.avail_idx = f->drv.last_used = f->drv.next_desc = 0;
	fx_start(f, 0, NULL);
	d = vrd_buf_data(&f->drv, NULL, 512, true);
	s[0] = fx_req(f, T_IN, 1, &d, 1);
	fx_kick(f);
	assert_true(fx_wait(f, &id, &len));
	assert_int_equal(st(f, s[0]), S_OK);
	assert_memory_equal(vrd_host(&f->drv, d.gpa, 512), f->orig + 512, 512);
	fx_free(f);
}

/* Freeing a device with I/O in flight waits for it (ASan checks the rest). */
static void test_free_in_flight(void **state)
{
	struct fx *f = fx_new(",engine=uring", 0);
	struct vrd_buf d;

	for (int i = 0; i < 4; i++) {
		d = vrd_buf_data(&f->drv, f->orig, 65536, false);
		fx_req(f, T_OUT, (uint64_t)i * 128, &d, 1);
	}
	fx_kick(f);
	fx_free(f);
}

/* One round takes at most a ring's worth; the rest is continued from the event loop. */
static void test_budget(void **state)
{
	struct fx *f = fx_new(",engine=sync", 0);
	struct pollfd p;
	struct vrd_buf d;
	uint32_t id, len;
	int n = 0;

	for (int i = 0; i < QSIZE; i++) {
		d = vrd_buf_data(&f->drv, NULL, 512, true);
		fx_req(f, T_IN, (uint64_t)i, &d, 1);
	}
	fx_kick(f);
	while (vrd_get_used(&f->drv, &id, &len))
		n++;
	assert_int_equal(n, QSIZE);
	/* Budget used up: the device asked its loop to come back... */
	p = (struct pollfd){ .fd = blk_event_fd(f->b), .events = POLLIN };
	assert_int_equal(poll(&p, 1, 0), 1);
	/* ...and then it takes what came meanwhile, without another kick. */
	for (int i = 0; i < 3; i++) {
		d = vrd_buf_data(&f->drv, NULL, 512, true);
		fx_req(f, T_IN, (uint64_t)i, &d, 1);
	}
	blk_process_completions(f->b);
	n = 0;
	while (vrd_get_used(&f->drv, &id, &len))
		n++;
	assert_int_equal(n, 3);
	fx_free(f);
}

/*
 * iops=5: a bucket of 5 refilled over 1000 ms. Eight reads: five complete
 * at once, the rest wait on the device's timer (no kick, nothing dropped)
 * and come back in order with the right data, at 200 ms a token.
 */
static void test_rate_limit_resumes(void **state)
{
	struct fx *f = fx_new(",engine=sync,iops=5", 0);
	struct loop *l = loop_new();
	struct vrd_buf d[8];
	uint32_t id, len;
	uint64_t t0;
	int n = 0;

	assert_non_null(l);
	assert_int_equal(blk_attach(f->b, l), 0);
	for (int i = 0; i < 8; i++) {
		d[i] = vrd_buf_data(&f->drv, NULL, 512, true);
		fx_req(f, T_IN, (uint64_t)i * 3, &d[i], 1);
	}
	t0 = loop_now_ns();
	fx_kick(f);
	while (vrd_get_used(&f->drv, &id, &len))
		n++;
	assert_int_equal(n, 5);
	assert_int_equal(blk_throttled(f->b), 1);
	/* The event loop alone brings the rest: the timer, not a kick or a poll of the ring. */
	for (int i = 0; i < 200 && n < 8; i++) {
		loop_run_once(l, 50);
		while (vrd_get_used(&f->drv, &id, &len)) {
			assert_int_equal(len, 512 + 1);
			n++;
		}
	}
	assert_int_equal(n, 8);
	/* Three tokens at 200 ms each; generous upper bound for a loaded host. */
	assert_true(loop_now_ns() - t0 >= 590ull * 1000000);
	assert_true(loop_now_ns() - t0 < 3000ull * 1000000);
	for (int i = 0; i < 8; i++)
		assert_memory_equal(vrd_host(&f->drv, d[i].gpa, 512), f->orig + (size_t)i * 3 * 512, 512);
	assert_true(blk_throttled(f->b) >= 3);
	assert_int_equal(f->d->metrics.throttled, blk_throttled(f->b));
	assert_int_equal(f->d->metrics.errors, 0);
	fx_free(f);
	loop_free(l);
}

/* A new limit on a running device frees a held queue at once; a pause hands the held request back. */
static void test_rate_limit_update_and_pause(void **state)
{
	struct fx *f = fx_new(",engine=sync,iops=1", 0);
	struct ratelimit_config none = { 0 };
	struct loop *l = loop_new();
	struct vrd_buf d[3];
	uint32_t id, len;
	uint64_t t0;
	int n = 0;

	assert_non_null(l);
	assert_int_equal(blk_attach(f->b, l), 0);
	for (int i = 0; i < 3; i++) {
		d[i] = vrd_buf_data(&f->drv, NULL, 512, true);
		fx_req(f, T_IN, (uint64_t)i, &d[i], 1);
	}
	fx_kick(f);
	while (vrd_get_used(&f->drv, &id, &len))
		n++;
	assert_int_equal(n, 1);
	/* Pause: the held request returns to the ring (the device's avail index steps back). */
	assert_int_equal(f->d->queues[0].last_avail, 2);
	f->d->ops->quiesce(f->d);
	assert_int_equal(f->d->queues[0].last_avail, 1);
	/* Unlimited now: what was held goes on the next loop round, well before the 1 s refill. */
	t0 = loop_now_ns();
	blk_set_rate_limit(f->b, &none);
	for (int i = 0; i < 20 && n < 3; i++) {
		loop_run_once(l, 50);
		while (vrd_get_used(&f->drv, &id, &len))
			n++;
	}
	assert_int_equal(n, 3);
	assert_true(loop_now_ns() - t0 < 500ull * 1000000);
	for (int i = 0; i < 3; i++)
		assert_memory_equal(vrd_host(&f->drv, d[i].gpa, 512), f->orig + (size_t)i * 512, 512);
	fx_free(f);
	loop_free(l);
}

/* Without FLUSH negotiated writes must be stable on completion; they still work. */
static void test_writethrough(void **state)
{
	struct fx *f = fx_new(",engine=uring", VIRTIO_BIT(F_FLUSH));
	struct vrd_buf d;
	uint8_t back[512];

	assert_false(virtio_has_feature(f->d, F_FLUSH));
	d = vrd_buf_data(&f->drv, f->orig + 4096, 512, false);
	assert_int_equal(fx_run(f, T_OUT, 0, &d, 1, NULL), S_OK);
	img_read(f->path, 0, back, 512);
	assert_memory_equal(back, f->orig + 4096, 512);
	fx_free(f);
}

/* A write acknowledged, then a flush acknowledged: kill -9 right after loses neither. */
static void test_flush_survives_kill(void **state)
{
	char path[64] = "";
	int pipefd[2], status;
	pid_t pid;

	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct fx *f = fx_new(",engine=uring", 0);
		struct vrd_buf d;
		uint8_t w[4096];

		if (write(pipefd[1], f->path, sizeof(f->path)) != sizeof(f->path))
			_exit(2);
		memset(w, 0x6b, sizeof(w));
		d = vrd_buf_data(&f->drv, w, sizeof(w), false);
		if (fx_run(f, T_OUT, 64, &d, 1, NULL) != S_OK ||
		    fx_run(f, T_FLUSH, 0, NULL, 0, NULL) != S_OK)
			_exit(3);
		kill(getpid(), SIGKILL);
		_exit(4);
	}
	close(pipefd[1]);
	assert_int_equal(read(pipefd[0], path, sizeof(path)), sizeof(path));
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	{
		uint8_t back[4096];

		img_read(path, 64 * 512, back, sizeof(back));
		for (size_t i = 0; i < sizeof(back); i++)
			assert_int_equal(back[i], 0x6b);
	}
	unlink(path);
}

/* ---- --disk parsing ---- */

static void test_parse_spec(void **state)
{
	struct blk_config c;
	char err[256];

	assert_int_equal(blk_parse_spec("/img", &c, err, sizeof(err)), 0);
	assert_string_equal(c.path, "/img");
	assert_false(c.read_only);
	assert_false(c.direct);
	assert_int_equal(c.engine, BLOCK_ENGINE_URING);
	assert_int_equal(c.num_queues, 1);
	assert_string_equal(c.serial, "");

	assert_int_equal(blk_parse_spec("/a/b.raw,ro,direct,engine=sync,queues=4,serial=ABC-1", &c,
					err, sizeof(err)), 0);
	assert_string_equal(c.path, "/a/b.raw");
	assert_true(c.read_only);
	assert_true(c.direct);
	assert_int_equal(c.engine, BLOCK_ENGINE_SYNC);
	assert_int_equal(c.num_queues, 4);
	assert_string_equal(c.serial, "ABC-1");

	assert_int_equal(blk_parse_spec("/img,bogus", &c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "disk /img: unknown option 'bogus'");
	assert_int_equal(blk_parse_spec("/img,engine=aio", &c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "disk /img: bad value in 'engine=aio'");
	assert_int_equal(blk_parse_spec("/img,queues=0", &c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "disk /img: queues must be 1 to 16, not '0'");
	assert_int_equal(blk_parse_spec("/img,queues=17", &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(blk_parse_spec("/img,queues=2x", &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(blk_parse_spec("/img,queues=", &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(blk_parse_spec("/img,queues=-1", &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(blk_parse_spec("/img,serial=123456789012345678901", &c, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "disk /img: serial must be 1 to 20 characters");
	assert_int_equal(blk_parse_spec("/img,serial=", &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(blk_parse_spec("/img,serial=a b", &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(blk_parse_spec("", &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "missing image path"));
	assert_int_equal(blk_parse_spec(",ro", &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "missing image path"));
	assert_null(strchr(err, '\n'));

	assert_int_equal(blk_parse_spec("/img,bw=1048576,iops=100", &c, err, sizeof(err)), 0);
	assert_true(c.rate_limit.bandwidth.size == 1048576 && c.rate_limit.bandwidth.refill_time_ms == 1000);
	assert_true(c.rate_limit.ops.size == 100 && c.rate_limit.ops.refill_time_ms == 1000);
	assert_int_equal(blk_parse_spec("/img,iops=0", &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "iops must be 1 to"));
	assert_int_equal(blk_parse_spec("/img,bw=10x", &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(blk_parse_spec("/img,bw=", &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(blk_parse_spec("/img,bw=99999999999999999999999", &c, err, sizeof(err)), -EINVAL);
}

static void test_new_errors(void **state)
{
	struct blk_config c;
	struct virtio_blk *b = (void *)1;
	struct guest_mem gm;
	uint8_t ram[4096];
	char err[256];

	gm_init_fake(&gm, 0, ram, sizeof(ram));
	assert_int_equal(blk_parse_spec("/nonexistent/disk.img", &c, err, sizeof(err)), 0);
	assert_int_equal(blk_new(&b, &c, &gm, err, sizeof(err)), -ENOENT);
	assert_null(b);
	assert_string_equal(err, "disk /nonexistent/disk.img: No such file or directory");
	blk_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_write),
		cmocka_unit_test(test_attach_loop),
		cmocka_unit_test(test_batch_one_interrupt),
		cmocka_unit_test(test_flush),
		cmocka_unit_test(test_get_id),
		cmocka_unit_test(test_discard_write_zeroes),
		cmocka_unit_test(test_discard_bad_segments),
		cmocka_unit_test(test_config_and_features),
		cmocka_unit_test(test_multiqueue),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_read_only),
		cmocka_unit_test(test_unsupported_types),
		cmocka_unit_test(test_status_position),
		cmocka_unit_test(test_bad_lengths_and_directions),
		cmocka_unit_test(test_no_status_byte),
		cmocka_unit_test(test_empty_in_part),
		cmocka_unit_test(test_head_twice_in_flight),
		cmocka_unit_test(test_broken_ring),
		cmocka_unit_test(test_backend_error),
		cmocka_unit_test(test_host_efbig),
		cmocka_unit_test(test_reset_in_flight),
		cmocka_unit_test(test_free_in_flight),
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_rate_limit_resumes),
		cmocka_unit_test(test_rate_limit_update_and_pause),
		cmocka_unit_test(test_writethrough),
		cmocka_unit_test(test_flush_survives_kill),
		cmocka_unit_test(test_parse_spec),
		cmocka_unit_test(test_new_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

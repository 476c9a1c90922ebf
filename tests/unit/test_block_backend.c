/*
 * Block backend: open checks (missing, directory, not a file, locks),
 * sizes, read/write/flush/discard/write-zeroes against real files with both
 * engines, short transfers, host errors, batching and the eventfd.
 */
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
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "backends/block.h"
#include "backends/block_test.h"

#define MiB (1u << 20)

struct done_rec {
	int calls;
	int64_t res;
};

static void rec_done(void *opaque, int64_t res)
{
	struct done_rec *d = opaque;

	d->calls++;
	d->res = res;
}

static char *tmp_file(const char *dir, size_t size, unsigned seed)
{
	char *path = malloc(256);
	uint8_t *buf = malloc(size ? size : 1);
	int fd;

	snprintf(path, 256, "%s/kestrel-blk-XXXXXX", dir);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	for (size_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(i * 7 + seed + (i >> 9));
	assert_int_equal(write(fd, buf, size), (ssize_t)size);
	close(fd);
	free(buf);
	return path;
}

static void file_read(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static struct block_backend *open_ok(const char *path, bool ro, enum block_engine e)
{
	struct block_opts o = { .read_only = ro, .engine = e };
	struct block_backend *b;
	char err[256] = "";

	assert_int_equal(block_open(&b, path, &o, err, sizeof(err)), 0);
	assert_non_null(b);
	return b;
}

/* Reap through the eventfd, as an epoll loop would, until `d` completed. */
static void wait_done(struct block_backend *b, struct done_rec *d)
{
	for (int i = 0; i < 1000 && !d->calls; i++) {
		struct pollfd p = { .fd = block_event_fd(b), .events = POLLIN };

		if (block_engine_used(b) == BLOCK_ENGINE_URING)
			assert_true(poll(&p, 1, 5000) == 1);
		block_reap(b);
	}
	assert_int_equal(d->calls, 1);
}

static const enum block_engine engines[] = { BLOCK_ENGINE_SYNC, BLOCK_ENGINE_URING };

/* ---- open ---- */

static void test_missing_file(void **state)
{
	struct block_opts o = { 0 };
	struct block_backend *b = (void *)1;
	char err[256];

	assert_int_equal(block_open(&b, "/nonexistent/kestrel.img", &o, err, sizeof(err)), -ENOENT);
	assert_null(b);
	assert_string_equal(err, "disk /nonexistent/kestrel.img: No such file or directory");
}

static void test_directory(void **state)
{
	struct block_opts o = { 0 };
	struct block_backend *b;
	char err[256];

	assert_int_equal(block_open(&b, "/tmp", &o, err, sizeof(err)), -EISDIR);
	assert_string_equal(err, "disk /tmp: Is a directory");
	o.read_only = true;    /* O_RDONLY opens a directory; fstat must catch it */
	assert_int_equal(block_open(&b, "/tmp", &o, err, sizeof(err)), -EISDIR);
	assert_string_equal(err, "disk /tmp: Is a directory");
}

static void test_not_a_file(void **state)
{
	struct block_opts o = { .read_only = true };
	struct block_backend *b;
	char err[256], fifo[64] = "/tmp/kestrel-fifo-XXXXXX";

	assert_int_equal(block_open(&b, "/dev/null", &o, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "disk /dev/null: not a regular file or block device");
	/* A FIFO without a writer must be refused, not block the VMM. */
	assert_non_null(mkdtemp(fifo));
	strcat(fifo, "/p");
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(block_open(&b, fifo, &o, err, sizeof(err)), -EINVAL);
	unlink(fifo);
	*strrchr(fifo, '/') = 0;
	rmdir(fifo);
}

static void test_lock_exclusive(void **state)
{
	char *path = tmp_file("/tmp", 4096, 1);
	struct block_opts rw = { .engine = BLOCK_ENGINE_SYNC }, ro = { .read_only = true };
	struct block_backend *a, *b;
	char err[512], want[512];
	pid_t pid;
	int st;

	a = open_ok(path, false, BLOCK_ENGINE_SYNC);
	snprintf(want, sizeof(want), "disk %s: locked by another process", path);
	assert_int_equal(block_open(&b, path, &rw, err, sizeof(err)), -EBUSY);
	assert_string_equal(err, want);
	/* A reader cannot share with a writer either. */
	assert_int_equal(block_open(&b, path, &ro, err, sizeof(err)), -EBUSY);
	assert_string_equal(err, want);
	/* A second kestrel (another process) is refused the same way. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int rc = block_open(&b, path, &rw, err, sizeof(err));

		_exit(rc == -EBUSY && strcmp(err, want) == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	block_close(a);
	/* The lock goes with the fd. */
	a = open_ok(path, false, BLOCK_ENGINE_SYNC);
	block_close(a);
	unlink(path);
	free(path);
}

static void test_lock_shared_read_only(void **state)
{
	char *path = tmp_file("/tmp", 4096, 2);
	struct block_opts rw = { 0 };
	struct block_backend *a, *b, *c;
	struct iovec iov;
	struct done_rec d = { 0 };
	char err[512], buf[512];

	a = open_ok(path, true, BLOCK_ENGINE_SYNC);
	b = open_ok(path, true, BLOCK_ENGINE_URING);   /* LOCK_SH: readers share */
	assert_true(block_read_only(a));
	assert_int_equal(block_open(&c, path, &rw, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "locked by another process"));
	/* Writes are refused up front on a read-only backend. */
	iov = (struct iovec){ buf, sizeof(buf) };
	assert_int_equal(block_writev(a, &iov, 1, 0, 0, rec_done, &d), -EROFS);
	assert_int_equal(block_discard(a, 0, 512, rec_done, &d), -EROFS);
	assert_int_equal(block_write_zeroes(b, 0, 512, 0, rec_done, &d), -EROFS);
	assert_int_equal(d.calls, 0);
	assert_int_equal(block_readv(a, &iov, 1, 0, rec_done, &d), 0);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.res, 512);
	block_close(a);
	block_close(b);
	unlink(path);
	free(path);
}

static void test_sizes(void **state)
{
	char *p1 = tmp_file("/tmp", MiB + 100, 3), *p0 = tmp_file("/tmp", 0, 0);
	struct block_backend *b;

	b = open_ok(p1, false, BLOCK_ENGINE_URING);
	assert_int_equal(block_size(b), MiB + 100);
	assert_int_equal(block_logical_block_size(b), 512);
	block_close(b);
	b = open_ok(p0, true, BLOCK_ENGINE_SYNC);
	assert_int_equal(block_size(b), 0);
	block_close(b);
	unlink(p1);
	unlink(p0);
	free(p1);
	free(p0);
}

/* io_uring_queue_init failing (here: out of fds) falls back to the sync engine. */
static void test_uring_fallback(void **state)
{
	char *path = tmp_file("/tmp", 8192, 4);
	struct block_opts o = { .engine = BLOCK_ENGINE_URING };
	struct rlimit old, lim;
	struct block_backend *b;
	struct done_rec d = { 0 };
	char err[256], buf[512], want[512];
	struct iovec iov = { buf, sizeof(buf) };
	int next_fd = dup(0);

	close(next_fd);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	/* Image fd and eventfd fit, the ring's fd does not. */
	lim = old;
	lim.rlim_cur = (rlim_t)next_fd + 2;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
	assert_int_equal(block_open(&b, path, &o, err, sizeof(err)), 0);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_int_equal(block_engine_used(b), BLOCK_ENGINE_SYNC);
	assert_int_equal(block_readv(b, &iov, 1, 512, rec_done, &d), 0);
	assert_int_equal(d.calls, 1);   /* sync: done before the submit returned */
	assert_int_equal(d.res, 512);
	file_read(path, 512, want, 512);
	assert_memory_equal(buf, want, 512);
	block_close(b);
	unlink(path);
	free(path);
}

/* ---- I/O, per engine ---- */

static void check_round_trip(enum block_engine e)
{
	char *path = tmp_file("/tmp", MiB, 5);
	struct block_backend *b = open_ok(path, false, e);
	uint8_t w1[1536], w2[2560], r1[1000], r2[3096], back[4096];
	struct iovec wv[2] = { { w1, sizeof(w1) }, { w2, sizeof(w2) } };
	struct iovec rv[2] = { { r1, sizeof(r1) }, { r2, sizeof(r2) } };
	struct done_rec d = { 0 };

	assert_int_equal(block_engine_used(b), e);
	for (size_t i = 0; i < sizeof(w1); i++)
		w1[i] = (uint8_t)(0xa0 ^ i);
	for (size_t i = 0; i < sizeof(w2); i++)
		w2[i] = (uint8_t)(0x3c + i * 3);
	assert_int_equal(block_writev(b, wv, 2, 65536, 0, rec_done, &d), 0);
	wait_done(b, &d);
	assert_int_equal(d.res, 4096);
	file_read(path, 65536, back, 4096);
	assert_memory_equal(back, w1, sizeof(w1));
	assert_memory_equal(back + sizeof(w1), w2, sizeof(w2));

	d = (struct done_rec){ 0 };
	assert_int_equal(block_readv(b, rv, 2, 65536, rec_done, &d), 0);
	wait_done(b, &d);
	assert_int_equal(d.res, 4096);
	assert_memory_equal(r1, back, sizeof(r1));
	assert_memory_equal(r2, back + sizeof(r1), sizeof(r2));

	/* The last bytes of the image, and one byte beyond: refused. */
	d = (struct done_rec){ 0 };
	rv[0].iov_len = 512;
	assert_int_equal(block_readv(b, rv, 1, MiB - 512, rec_done, &d), 0);
	wait_done(b, &d);
	assert_int_equal(d.res, 512);
	assert_int_equal(block_readv(b, rv, 1, MiB - 511, rec_done, &d), -EINVAL);
	assert_int_equal(block_readv(b, rv, 1, UINT64_MAX - 100, rec_done, &d), -EINVAL);
	assert_int_equal(block_readv(b, rv, 0, 0, rec_done, &d), -EINVAL);
	assert_int_equal(d.calls, 1);

	d = (struct done_rec){ 0 };
	assert_int_equal(block_flush(b, rec_done, &d), 0);
	wait_done(b, &d);
	assert_int_equal(d.res, 0);
	assert_int_equal(block_inflight(b), 0);
	block_close(b);
	unlink(path);
	free(path);
}

static void test_round_trip_sync(void **state)
{
	check_round_trip(BLOCK_ENGINE_SYNC);
}

static void test_round_trip_uring(void **state)
{
	check_round_trip(BLOCK_ENGINE_URING);
}

/* The same random operations on two copies of an image, one per engine. */
static void test_engines_identical(void **state)
{
	char *p[2] = { tmp_file("/tmp", 2 * MiB, 6), tmp_file("/tmp", 2 * MiB, 6) };
	struct block_backend *b[2];
	uint8_t *buf = malloc(65536), *rd[2] = { malloc(65536), malloc(65536) };
	unsigned seed = 12345;

	for (int k = 0; k < 2; k++)
		b[k] = open_ok(p[k], false, engines[k]);
	for (int i = 0; i < 200; i++) {
		uint64_t off = (uint64_t)(rand_r(&seed) % 4000) * 512;
		size_t len = (size_t)(rand_r(&seed) % 128 + 1) * 512;
		int op = rand_r(&seed) % 4;

		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)rand_r(&seed);
		for (int k = 0; k < 2; k++) {
			struct iovec v = { op == 0 ? rd[k] : buf, len };
			struct done_rec d = { 0 };

			if (op == 0)
				assert_int_equal(block_readv(b[k], &v, 1, off, rec_done, &d), 0);
			else if (op == 1)
				assert_int_equal(block_writev(b[k], &v, 1, off, 0, rec_done, &d), 0);
			else if (op == 2)
				assert_int_equal(block_write_zeroes(b[k], off, len, 0, rec_done, &d), 0);
			else
				assert_int_equal(block_discard(b[k], off, len, rec_done, &d), 0);
			wait_done(b[k], &d);
			assert_int_equal(d.res, op < 2 ? (int64_t)len : 0);
		}
		if (op == 0)
			assert_memory_equal(rd[0], rd[1], len);
	}
	for (int k = 0; k < 2; k++)
		block_close(b[k]);
	for (uint64_t off = 0; off < 2 * MiB; off += 65536) {
		file_read(p[0], off, rd[0], 65536);
		file_read(p[1], off, rd[1], 65536);
		assert_memory_equal(rd[0], rd[1], 65536);
	}
	for (int k = 0; k < 2; k++) {
		unlink(p[k]);
		free(p[k]);
		free(rd[k]);
	}
	free(buf);
}

/* Transfers capped at odd sizes complete in many short steps, with the right bytes. */
static void check_short_io(enum block_engine e)
{
	char *path = tmp_file("/tmp", MiB, 7);
	struct block_backend *b = open_ok(path, false, e);
	struct block_fault f = { .max_xfer = 700 };
	uint8_t w[3][3000], r[3][3000], back[9000];
	struct iovec wv[3], rv[3];
	struct done_rec d = { 0 };

	for (int i = 0; i < 3; i++) {
		memset(w[i], 0x11 * (i + 1), sizeof(w[i]));
		wv[i] = (struct iovec){ w[i], sizeof(w[i]) };
		rv[i] = (struct iovec){ r[i], sizeof(r[i]) };
	}
	block_set_fault(b, &f);
	assert_int_equal(block_writev(b, wv, 3, 4096, 0, rec_done, &d), 0);
	wait_done(b, &d);
	assert_int_equal(d.res, 9000);
	file_read(path, 4096, back, sizeof(back));
	for (int i = 0; i < 3; i++)
		assert_memory_equal(back + 3000 * i, w[i], 3000);
	d = (struct done_rec){ 0 };
	assert_int_equal(block_readv(b, rv, 3, 4096, rec_done, &d), 0);
	wait_done(b, &d);
	assert_int_equal(d.res, 9000);
	for (int i = 0; i < 3; i++)
		assert_memory_equal(r[i], w[i], 3000);
	block_close(b);
	unlink(path);
	free(path);
}

static void test_short_io_sync(void **state)
{
	check_short_io(BLOCK_ENGINE_SYNC);
}

static void test_short_io_uring(void **state)
{
	check_short_io(BLOCK_ENGINE_URING);
}

/* The image shrank under us: a read that cannot make progress fails with -EIO. */
static void test_read_past_eof(void **state)
{
	for (int k = 0; k < 2; k++) {
		char *path = tmp_file("/tmp", 65536, 8);
		struct block_backend *b = open_ok(path, false, engines[k]);
		uint8_t buf[8192];
		struct iovec v = { buf, sizeof(buf) };
		struct done_rec d = { 0 };

		assert_int_equal(truncate(path, 61440), 0);
		/* Half of it is still there: a short read, then nothing. */
		assert_int_equal(block_readv(b, &v, 1, 57344, rec_done, &d), 0);
		wait_done(b, &d);
		assert_int_equal(d.res, -EIO);
		block_close(b);
		unlink(path);
		free(path);
	}
}

/* Injected failures complete through the engine and leave the image alone. */
static void test_injected_error(void **state)
{
	for (int k = 0; k < 2; k++) {
		char *path = tmp_file("/tmp", 65536, 9);
		struct block_backend *b = open_ok(path, false, engines[k]);
		struct block_fault f = { .fail_errno = EIO, .fail_count = 2 };
		uint8_t buf[4096], back[4096], orig[4096];
		struct iovec v = { buf, sizeof(buf) };
		struct done_rec d = { 0 };

		file_read(path, 0, orig, sizeof(orig));
		memset(buf, 0xee, sizeof(buf));
		block_set_fault(b, &f);
		assert_int_equal(block_writev(b, &v, 1, 0, 0, rec_done, &d), 0);
		if (engines[k] == BLOCK_ENGINE_URING)
			assert_int_equal(d.calls, 0);   /* never from inside a submit */
		wait_done(b, &d);
		assert_int_equal(d.res, -EIO);
		d = (struct done_rec){ 0 };
		assert_int_equal(block_flush(b, rec_done, &d), 0);
		wait_done(b, &d);
		assert_int_equal(d.res, -EIO);
		file_read(path, 0, back, sizeof(back));
		assert_memory_equal(back, orig, sizeof(back));
		/* The count is used up: the next write goes through. */
		d = (struct done_rec){ 0 };
		assert_int_equal(block_writev(b, &v, 1, 0, 0, rec_done, &d), 0);
		wait_done(b, &d);
		assert_int_equal(d.res, 4096);
		file_read(path, 0, back, sizeof(back));
		assert_memory_equal(back, buf, sizeof(back));
		block_close(b);
		unlink(path);
		free(path);
	}
}

/* A real host error: writes past RLIMIT_FSIZE fail with EFBIG, part of one is short. */
static void test_host_error_efbig(void **state)
{
	struct rlimit old, lim;

	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	for (int k = 0; k < 2; k++) {
		char *path = tmp_file("/tmp", 0, 0);
		struct block_backend *b;
		uint8_t buf[8192];
		struct iovec v = { buf, sizeof(buf) };
		struct done_rec d = { 0 };

		assert_int_equal(truncate(path, 65536), 0);
		b = open_ok(path, false, engines[k]);
		memset(buf, 0x5a, sizeof(buf));
		lim = old;
		lim.rlim_cur = 12288;
		assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
		assert_int_equal(block_writev(b, &v, 1, 8192, 0, rec_done, &d), 0);
		wait_done(b, &d);
		assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
		assert_int_equal(d.res, -EFBIG);
		/* Below the limit it works. */
		d = (struct done_rec){ 0 };
		assert_int_equal(block_writev(b, &v, 1, 0, 0, rec_done, &d), 0);
		wait_done(b, &d);
		assert_int_equal(d.res, 8192);
		block_close(b);
		unlink(path);
		free(path);
	}
	signal(SIGXFSZ, SIG_DFL);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Discard and write zeroes, on ext4 (/tmp) and tmpfs (/dev/shm: no ZERO_RANGE), both engines. */
static void check_zeroes(const char *dir, enum block_engine e, const struct block_fault *f)
{
	char *path = tmp_file(dir, MiB, 10);
	struct block_backend *b = open_ok(path, false, e);
	uint8_t *back = malloc(MiB), *orig = malloc(MiB);
	struct done_rec d = { 0 };
	struct stat st;

	file_read(path, 0, orig, MiB);
	if (f)
		block_set_fault(b, f);
	/* Write zeroes without unmap: ZERO_RANGE or the fill fallback. 300 KiB > one fill chunk. */
	assert_int_equal(block_write_zeroes(b, 65536, 300 * 1024, 0, rec_done, &d), 0);
	wait_done(b, &d);
	assert_int_equal(d.res, 0);
	/* With unmap allowed: a punched hole. */
	d = (struct done_rec){ 0 };
	assert_int_equal(block_write_zeroes(b, 512 * 1024, 4096 + 512, BLOCK_F_MAY_UNMAP, rec_done, &d), 0);
	wait_done(b, &d);
	assert_int_equal(d.res, 0);
	/* Discard of a hole-aligned range; on these file systems it reads back as zeroes. */
	d = (struct done_rec){ 0 };
	assert_int_equal(block_discard(b, 768 * 1024, 65536, rec_done, &d), 0);
	wait_done(b, &d);
	assert_int_equal(d.res, 0);
	block_close(b);

	file_read(path, 0, back, MiB);
	assert_true(all_zero(back + 65536, 300 * 1024));
	assert_memory_equal(back, orig, 65536);
	assert_memory_equal(back + 65536 + 300 * 1024, orig + 65536 + 300 * 1024,
			    512 * 1024 - 65536 - 300 * 1024);
	assert_true(all_zero(back + 512 * 1024, 4096 + 512));
	assert_memory_equal(back + 512 * 1024 + 4608, orig + 512 * 1024 + 4608,
			    768 * 1024 - 512 * 1024 - 4608);
	assert_true(all_zero(back + 768 * 1024, 65536));
	assert_memory_equal(back + 832 * 1024, orig + 832 * 1024, MiB - 832 * 1024);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, MiB);   /* KEEP_SIZE */
	unlink(path);
	free(path);
	free(back);
	free(orig);
}

static void test_zeroes_ext4(void **state)
{
	for (int k = 0; k < 2; k++)
		check_zeroes("/tmp", engines[k], NULL);
}

static void test_zeroes_fill_fallback(void **state)
{
	struct block_fault f = { .no_zero_range = true };

	for (int k = 0; k < 2; k++) {
		check_zeroes("/tmp", engines[k], &f);
		check_zeroes("/dev/shm", engines[k], NULL);
	}
}

static void test_depth_and_batch(void **state)
{
	char *path = tmp_file("/tmp", MiB, 11);
	struct block_opts o = { .engine = BLOCK_ENGINE_URING, .depth = 4 };
	struct block_backend *b;
	uint8_t buf[5][4096];
	struct iovec v[5];
	struct done_rec d[5] = { { 0 } };
	char err[256];
	uint64_t cnt;

	assert_int_equal(block_open(&b, path, &o, err, sizeof(err)), 0);
	assert_int_equal(block_engine_used(b), BLOCK_ENGINE_URING);
	block_batch_begin(b);
	for (int i = 0; i < 4; i++) {
		v[i] = (struct iovec){ buf[i], sizeof(buf[i]) };
		assert_int_equal(block_readv(b, &v[i], 1, (uint64_t)i * 4096, rec_done, &d[i]), 0);
	}
	v[4] = (struct iovec){ buf[4], sizeof(buf[4]) };
	assert_int_equal(block_readv(b, &v[4], 1, 0, rec_done, &d[4]), -EAGAIN);
	assert_int_equal(block_inflight(b), 4);
	/* Nothing was handed to the kernel yet: no completion can be signalled. */
	usleep(20000);
	assert_int_equal(read(block_event_fd(b), &cnt, sizeof(cnt)), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(block_batch_submit(b), 0);
	block_drain(b);
	for (int i = 0; i < 4; i++) {
		uint8_t want[4096];

		assert_int_equal(d[i].calls, 1);
		assert_int_equal(d[i].res, 4096);
		file_read(path, (uint64_t)i * 4096, want, sizeof(want));
		assert_memory_equal(buf[i], want, sizeof(want));
	}
	assert_int_equal(d[4].calls, 0);
	assert_int_equal(block_inflight(b), 0);
	block_close(b);
	unlink(path);
	free(path);
}

static void test_wakeup(void **state)
{
	for (int k = 0; k < 2; k++) {
		char *path = tmp_file("/tmp", 4096, 12);
		struct block_backend *b = open_ok(path, false, engines[k]);
		struct pollfd p = { .fd = block_event_fd(b), .events = POLLIN };

		assert_int_equal(poll(&p, 1, 0), 0);
		block_wakeup(b);
		assert_int_equal(poll(&p, 1, 0), 1);
		block_reap(b);
		assert_int_equal(poll(&p, 1, 0), 0);
		block_close(b);
		unlink(path);
		free(path);
	}
}

/* O_DIRECT, with aligned and misaligned (bounced) buffers. */
static void test_direct(void **state)
{
	char *path = tmp_file("/tmp", MiB, 13);
	struct block_opts o = { .direct = true };
	uint8_t *mem = aligned_alloc(4096, 3 * 65536), back[8192];
	char err[256];

	for (int k = 0; k < 2; k++) {
		struct block_backend *b;
		struct done_rec d = { 0 };
		struct iovec v[2];

		o.engine = engines[k];
		if (block_open(&b, path, &o, err, sizeof(err)) < 0) {
			print_message("O_DIRECT unavailable on /tmp (%s): skipped\n", err);
			break;
		}
		assert_true(block_logical_block_size(b) >= 512);
		memset(mem, 0x77 + k, 3 * 65536);
		v[0] = (struct iovec){ mem, 4096 };
		assert_int_equal(block_writev(b, v, 1, 8192, 0, rec_done, &d), 0);
		wait_done(b, &d);
		assert_int_equal(d.res, 4096);
		/* Misaligned memory (and a misaligned split) goes through a bounce buffer. */
		d = (struct done_rec){ 0 };
		v[0] = (struct iovec){ mem + 65536 + 3, 1000 };
		v[1] = (struct iovec){ mem + 2 * 65536 + 5, 3096 };
		memset(v[0].iov_base, 0x21, 1000);
		memset(v[1].iov_base, 0x42, 3096);
		assert_int_equal(block_writev(b, v, 2, 16384, 0, rec_done, &d), 0);
		wait_done(b, &d);
		assert_int_equal(d.res, 4096);
		file_read(path, 8192, back, 4096);
		assert_true(back[0] == 0x77 + k && back[4095] == 0x77 + k);
		file_read(path, 16384, back, 4096);
		for (int i = 0; i < 4096; i++)
			assert_int_equal(back[i], i < 1000 ? 0x21 : 0x42);
		d = (struct done_rec){ 0 };
		memset(mem + 65536, 0, 2 * 65536);
		assert_int_equal(block_readv(b, v, 2, 16384, rec_done, &d), 0);
		wait_done(b, &d);
		assert_int_equal(d.res, 4096);
		for (int i = 0; i < 1000; i++)
			assert_int_equal(((uint8_t *)v[0].iov_base)[i], 0x21);
		for (int i = 0; i < 3096; i++)
			assert_int_equal(((uint8_t *)v[1].iov_base)[i], 0x42);
		block_close(b);
	}
	free(mem);
	unlink(path);
	free(path);
}

/*
 * Attach `path` to a free loop device with autoclear: it detaches by itself
 * when the returned fd (and any other) is closed, even if the test dies.
 * -1 where that is not allowed (not root, no loop support).
 */
static int loop_attach(const char *path, char *dev, size_t devlen)
{
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC), fd, lfd = -1;

	if (ctl < 0)
		return -1;
	fd = open(path, O_RDWR | O_CLOEXEC);
	for (int tries = 0; fd >= 0 && tries < 5 && lfd < 0; tries++) {
		struct loop_info64 info = { .lo_flags = LO_FLAGS_AUTOCLEAR };
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);

		if (n < 0)
			break;
		snprintf(dev, devlen, "/dev/loop%d", n);
		lfd = open(dev, O_RDWR | O_CLOEXEC);
		if (lfd < 0)
			break;
		if (ioctl(lfd, LOOP_SET_FD, fd) < 0) {
			close(lfd);     /* taken meanwhile: try another */
			lfd = -1;
			continue;
		}
		if (ioctl(lfd, LOOP_SET_STATUS64, &info) < 0) {
			ioctl(lfd, LOOP_CLR_FD, 0);
			close(lfd);
			lfd = -1;
			break;
		}
	}
	if (fd >= 0)
		close(fd);
	close(ctl);
	return lfd;
}

/* A host block device: size from BLKGETSIZE64, I/O, zeroes, locking, O_DIRECT. */
static void test_block_device(void **state)
{
	char *path = tmp_file("/tmp", 2 * MiB, 14), dev[64], err[256];
	uint8_t w[4096], r[4096];
	struct iovec wv = { w, sizeof(w) }, rv = { r, sizeof(r) };
	int lfd = loop_attach(path, dev, sizeof(dev));

	if (lfd < 0) {
		print_message("no loop device available (needs root): skipped\n");
		unlink(path);
		free(path);
		skip();
	}
	for (int k = 0; k < 4; k++) {
		struct block_opts o = { .engine = engines[k & 1], .direct = k >= 2 };
		struct block_backend *b, *b2;
		struct done_rec d = { 0 };

		assert_int_equal(block_open(&b, dev, &o, err, sizeof(err)), 0);
		assert_int_equal(block_size(b), 2 * MiB);
		assert_int_equal(block_open(&b2, dev, &o, err, sizeof(err)), -EBUSY);
		memset(w, 0x30 + k, sizeof(w));
		/* Page-aligned stack buffers are not guaranteed: O_DIRECT may bounce. */
		assert_int_equal(block_writev(b, &wv, 1, 65536, 0, rec_done, &d), 0);
		wait_done(b, &d);
		assert_int_equal(d.res, 4096);
		d = (struct done_rec){ 0 };
		assert_int_equal(block_flush(b, rec_done, &d), 0);
		wait_done(b, &d);
		assert_int_equal(d.res, 0);
		d = (struct done_rec){ 0 };
		assert_int_equal(block_readv(b, &rv, 1, 65536, rec_done, &d), 0);
		wait_done(b, &d);
		assert_int_equal(d.res, 4096);
		assert_memory_equal(r, w, sizeof(r));
		d = (struct done_rec){ 0 };
		assert_int_equal(block_write_zeroes(b, 65536, 4096, 0, rec_done, &d), 0);
		wait_done(b, &d);
		assert_int_equal(d.res, 0);
		d = (struct done_rec){ 0 };
		assert_int_equal(block_readv(b, &rv, 1, 65536, rec_done, &d), 0);
		wait_done(b, &d);
		assert_true(all_zero(r, sizeof(r)));
		block_close(b);
	}
	close(lfd);     /* autoclear detaches it */
	unlink(path);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_directory),
		cmocka_unit_test(test_not_a_file),
		cmocka_unit_test(test_lock_exclusive),
		cmocka_unit_test(test_lock_shared_read_only),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_uring_fallback),
		cmocka_unit_test(test_round_trip_sync),
		cmocka_unit_test(test_round_trip_uring),
		cmocka_unit_test(test_engines_identical),
		cmocka_unit_test(test_short_io_sync),
		cmocka_unit_test(test_short_io_uring),
		cmocka_unit_test(test_read_past_eof),
		cmocka_unit_test(test_injected_error),
		cmocka_unit_test(test_host_error_efbig),
		cmocka_unit_test(test_zeroes_ext4),
		cmocka_unit_test(test_zeroes_fill_fallback),
		cmocka_unit_test(test_depth_and_batch),
		cmocka_unit_test(test_wakeup),
		cmocka_unit_test(test_direct),
		cmocka_unit_test(test_block_device),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * host_uring: the limit for the virtio-blk benchmark. The host itself runs
 * the workload guest-vblk runs inside a VM: `qd` requests of `bs` bytes in
 * flight on FILE through io_uring (liburing), refilled as they complete,
 * until COUNT are done; random offsets from the same xorshift64* as the
 * guest, or sequential ones. Prints one line of key=value pairs:
 *
 *   host_uring: mode=randread bs=4096 qd=32 n=20000 direct=1 dsync=0
 *     elapsed_us=... iops=... kib_s=...
 *
 * elapsed_us runs from the first submission to the last completion.
 *
 *   host_uring [-m randread|randwrite|seqread|seqwrite] [-b BS] [-q QD]
 *              [-n COUNT] [-B] [-H] [-s] [-S SEED] FILE
 *     -B  buffered I/O (default: O_DIRECT, as kestrel's `direct` and QEMU's
 *         cache=none)
 *     -H  buffers in transparent huge pages (an anonymous mapping with
 *         MADV_HUGEPAGE, as QEMU backs guest RAM); default: 4 KiB pages
 *         from posix_memalign
 *     -s  writes with RWF_DSYNC: what kestrel and QEMU do for a driver that
 *         did not negotiate VIRTIO_BLK_F_FLUSH (write-through), as
 *         guest-vblk does not
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_QD 4096

static uint64_t rng_state = 1;

static uint64_t rng_next(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void usage(void)
{
	fprintf(stderr, "usage: host_uring [-m randread|randwrite|seqread|seqwrite] [-b BS] [-q QD] "
			"[-n COUNT] [-B] [-H] [-s] [-S SEED] FILE\n");
	exit(2);
}

struct job {
	const char *mode;
	bool write, random, dsync;
	uint64_t bs, qd, n, nblocks, seq;
	int fd;
	char *buf;
};

static uint64_t next_offset(struct job *j)
{
	uint64_t blk;

	if (j->random) {
		blk = rng_next() % j->nblocks;
	} else {
		if (j->seq >= j->nblocks)
			j->seq = 0;
		blk = j->seq++;
	}
	return blk * j->bs;
}

static void queue_one(struct io_uring *ring, struct job *j, unsigned slot)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	char *b = j->buf + (size_t)slot * j->bs;

	if (!sqe) {
		fprintf(stderr, "host_uring: submission queue full\n");
		exit(1);
	}
	if (j->write) {
		io_uring_prep_write(sqe, j->fd, b, (unsigned)j->bs, next_offset(j));
		if (j->dsync)
			sqe->rw_flags = RWF_DSYNC;
	} else {
		io_uring_prep_read(sqe, j->fd, b, (unsigned)j->bs, next_offset(j));
	}
	io_uring_sqe_set_data64(sqe, slot);
}

int main(int argc, char **argv)
{
	struct job j = { .mode = "randread", .bs = 4096, .qd = 32, .n = 10000 };
	bool direct = true, huge = false;
	struct io_uring ring;
	struct stat st;
	int opt, r;

	while ((opt = getopt(argc, argv, "m:b:q:n:BHsS:")) != -1) {
		switch (opt) {
		case 'm': j.mode = optarg; break;
		case 'b': j.bs = strtoull(optarg, NULL, 0); break;
		case 'q': j.qd = strtoull(optarg, NULL, 0); break;
		case 'n': j.n = strtoull(optarg, NULL, 0); break;
		case 'B': direct = false; break;
		case 'H': huge = true; break;
		case 's': j.dsync = true; break;
		case 'S': rng_state = strtoull(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (optind + 1 != argc)
		usage();
	if (!strcmp(j.mode, "randread") || !strcmp(j.mode, "seqread"))
		j.write = false;
	else if (!strcmp(j.mode, "randwrite") || !strcmp(j.mode, "seqwrite"))
		j.write = true;
	else
		usage();
	j.random = j.mode[0] == 'r';
	if (!j.bs || j.bs % 512 || !j.qd || j.qd > MAX_QD || !j.n || !rng_state) {
		fprintf(stderr, "host_uring: bs must be a multiple of 512, qd 1..%d, n and seed > 0\n", MAX_QD);
		return 2;
	}

	j.fd = open(argv[optind], (j.write ? O_RDWR : O_RDONLY) | (direct ? O_DIRECT : 0));
	if (j.fd < 0) {
		fprintf(stderr, "host_uring: %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	if (fstat(j.fd, &st) < 0 || (uint64_t)st.st_size < j.bs) {
		fprintf(stderr, "host_uring: %s: smaller than one block\n", argv[optind]);
		return 1;
	}
	j.nblocks = (uint64_t)st.st_size / j.bs;
	if (huge) {
		size_t len = (j.qd * j.bs + (4ull << 20)) & ~((2ull << 20) - 1);
		char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED) {
			fprintf(stderr, "host_uring: mmap: %s\n", strerror(errno));
			return 1;
		}
		/* 2 MiB aligned inside the mapping, so whole huge pages can back it. */
		j.buf = (char *)(((uintptr_t)m + (2ull << 20) - 1) & ~(uintptr_t)((2ull << 20) - 1));
		(void)madvise(j.buf, len - (size_t)(j.buf - m), MADV_HUGEPAGE);
	} else if (posix_memalign((void **)&j.buf, 4096, j.qd * j.bs)) {
		fprintf(stderr, "host_uring: out of memory\n");
		return 1;
	}
	for (uint64_t s = 0; s < j.qd; s++)
		memset(j.buf + s * j.bs, 0xa0 + (int)(s & 0xf), j.bs);

	r = io_uring_queue_init((unsigned)j.qd, &ring, 0);
	if (r < 0) {
		fprintf(stderr, "host_uring: io_uring_queue_init: %s\n", strerror(-r));
		return 1;
	}

	uint64_t submitted = 0, done = 0;
	double t0 = now_us(), t1;

	for (unsigned s = 0; s < j.qd && submitted < j.n; s++, submitted++)
		queue_one(&ring, &j, s);
	while (done < j.n) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		r = io_uring_submit_and_wait(&ring, 1);
		if (r < 0 && r != -EINTR) {
			fprintf(stderr, "host_uring: io_uring_submit_and_wait: %s\n", strerror(-r));
			return 1;
		}
		io_uring_for_each_cqe(&ring, head, cqe) {
			unsigned slot = (unsigned)io_uring_cqe_get_data64(cqe);

			seen++;
			if (cqe->res != (int)j.bs) {
				fprintf(stderr, "host_uring: request %llu: result %d (%s)\n",
					(unsigned long long)done, cqe->res,
					cqe->res < 0 ? strerror(-cqe->res) : "short transfer");
				return 1;
			}
			done++;
			if (submitted < j.n) {
				queue_one(&ring, &j, slot);
				submitted++;
			}
		}
		io_uring_cq_advance(&ring, seen);
	}
	t1 = now_us();
	io_uring_queue_exit(&ring);

	double us = t1 - t0;
	printf("host_uring: mode=%s bs=%llu qd=%llu n=%llu direct=%d dsync=%d thp=%d elapsed_us=%.0f iops=%.0f "
	       "kib_s=%.0f\n",
	       j.mode, (unsigned long long)j.bs, (unsigned long long)j.qd, (unsigned long long)j.n,
	       direct, j.dsync, huge, us, (double)j.n * 1e6 / us, (double)j.n * (double)j.bs / 1024 * 1e6 / us);
	return 0;
}

/*
 * vmstate_test: the core layer's pause, KVM-state snapshot and dirty log on
 * this machine's /dev/kvm, without the machine layer. It boots guest-counter
 * (2 vCPUs, the AP never started), pauses and resumes it, saves the KVM
 * state and copies guest RAM, destroys the VM, builds a fresh one from the
 * copy and the state file, and checks that the guest's count continues
 * without a gap or a repeat. COM1 is a tiny capture on the PIO bus (THR
 * writes collected, LSR always ready), so no device state is involved.
 *
 *   vmstate_test GUEST-COUNTER.elf [poll|irq]
 *
 * Prints PASS:/FAIL:/SKIP: lines (tests/lib/checks.sh contract) and the
 * pause/resume latencies as "# " lines. Exit status 0 unless a check failed.
 */
#include "boot/boot.h"
#include "core/kvm.h"
#include "core/vm.h"
#include "mem/layout.h"
#include "snapshot/snap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RAM_SIZE (128ull << 20)
#define NCPUS    2

static const char *mode = "poll";
static int failures;

static void pass(const char *name) { printf("PASS: vmstate-%s-%s\n", mode, name); }

static void fail(const char *name, const char *why)
{
	printf("FAIL: vmstate-%s-%s: %s\n", mode, name, why);
	failures++;
}

static void check(const char *name, bool ok, const char *why)
{
	if (ok)
		pass(name);
	else
		fail(name, why);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* --- COM1 capture and the debug-exit port --------------------------------- */

struct capture {
	pthread_mutex_t lock;
	char *buf;
	size_t len, cap;
	double last_byte_ms;
	struct vm *vm;
};

static uint64_t com1_read(void *opaque, uint64_t off, unsigned size)
{
	return off == 5 ? 0x60 : 0;   /* LSR: THR empty, transmitter empty */
}

static void com1_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct capture *c = opaque;

	if (off != 0)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->len + 1 >= c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 65536;
		char *b = realloc(c->buf, cap);

		if (!b) {
			pthread_mutex_unlock(&c->lock);
			return;
		}
		c->buf = b;
		c->cap = cap;
	}
	c->buf[c->len++] = (char)val;
	c->buf[c->len] = 0;
	c->last_byte_ms = now_ms();
	pthread_mutex_unlock(&c->lock);
}

static const struct bus_dev_ops com1_ops = { .read = com1_read, .write = com1_write };

static void exit_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct capture *c = opaque;

	vm_request_stop(c->vm, VM_STOP_DEBUG_EXIT, (int)(val & 0xff));
}

static uint64_t exit_read(void *opaque, uint64_t off, unsigned size)
{
	return 0xff;
}

static const struct bus_dev_ops exit_ops = { .read = exit_read, .write = exit_write };

static size_t capture_len(struct capture *c)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = c->len;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* Highest N of a complete "count N" line so far, or -1. */
static long capture_last_count(struct capture *c)
{
	long last = -1;
	const char *p;

	pthread_mutex_lock(&c->lock);
	for (p = c->buf; p && (p = strstr(p, "count ")); p++) {
		char *end;
		long n = strtol(p + 6, &end, 10);

		if (end != p + 6 && (*end == '\r' || *end == '\n'))
			last = n;
	}
	pthread_mutex_unlock(&c->lock);
	return last;
}

static bool wait_count(struct capture *c, long want, unsigned timeout_ms)
{
	double end = now_ms() + timeout_ms;

	while (now_ms() < end) {
		if (capture_last_count(c) >= want)
			return true;
		if (vm_stopping(c->vm))
			return false;
		sleep_ms(5);
	}
	return false;
}

/*
 * Every "count N" line in `text`, in order, must be N = previous + 1 from 0.
 * Returns the number of lines, or -1 with a reason.
 */
static long check_sequence(const char *text, char *why, size_t whylen)
{
	long expect = 0;
	const char *p;

	for (p = text; (p = strstr(p, "kestrel-guest: count ")); p++) {
		char *end;
		long n = strtol(p + 21, &end, 10);

		if (*end != '\r' && *end != '\n')
			break; /* the last, partial line */
		if (n != expect) {
			snprintf(why, whylen, "count %ld where %ld was due", n, expect);
			return -1;
		}
		expect++;
	}
	return expect;
}

/* --- VM set-up ------------------------------------------------------------- */

static int make_vm(struct vm *vm, struct kvm *kvm, unsigned ncpus, struct capture *cap, char *err, size_t errlen)
{
	int e = vm_create(vm, kvm, RAM_SIZE, ncpus, 0, NULL, err, errlen);

	if (e < 0)
		return e;
	cap->vm = vm;
	if (bus_register(&vm->pio, LAYOUT_PORT_COM1, 8, BUS_SZ_ANY, &com1_ops, cap, "com1") < 0 ||
	    bus_register(&vm->pio, LAYOUT_PORT_DEBUG_EXIT, 1, BUS_SZ_1, &exit_ops, cap, "exit") < 0) {
		snprintf(err, errlen, "bus_register failed");
		vm_destroy(vm);
		return -EINVAL;
	}
	return 0;
}

static void stop_vm(struct vm *vm)
{
	vm_request_stop(vm, VM_STOP_USER, 0);
	vm_wait(vm);
}

/* Re-serialise a snapshot with the XSAVE length field of kvm.vcpu.0 changed. */
static int forge_xsave_size(const struct snap_reader *r, const char *path, uint32_t bad, char *err, size_t errlen)
{
	struct snap_writer w;
	int e = 0;

	snap_writer_init(&w);
	for (unsigned i = 0; i < r->nsections; i++) {
		uint8_t *copy = malloc(r->sec[i].len ? r->sec[i].len : 1);

		if (!copy) {
			e = -ENOMEM;
			break;
		}
		memcpy(copy, r->buf + r->sec[i].off, r->sec[i].len);
		if (!strcmp(r->sec[i].name, "kvm.vcpu.0")) {
			uint32_t nent;
			size_t off;

			memcpy(&nent, copy, 4);
			off = 4 + 4 + nent * sizeof(struct kvm_cpuid_entry2) + 4 + sizeof(struct kvm_sregs) + 4 +
			      sizeof(struct kvm_regs);
			if (off + 5 <= r->sec[i].len && copy[off] == 1)
				memcpy(copy + off + 1, &bad, 4);
			else
				e = -EINVAL;
		}
		snap_begin(&w, r->sec[i].name, r->sec[i].version);
		snap_put(&w, copy, r->sec[i].len);
		snap_end(&w);
		free(copy);
	}
	if (e == 0)
		e = snap_writer_save(&w, path, err, errlen);
	snap_writer_free(&w);
	return e;
}

static unsigned popcount_bitmap(const uint64_t *b, size_t words)
{
	unsigned n = 0;

	for (size_t i = 0; i < words; i++)
		n += (unsigned)__builtin_popcountll(b[i]);
	return n;
}

int main(int argc, char **argv)
{
	static struct kvm kvm;
	static struct vm vm1, vm2, vm3;
	static struct capture cap1 = { .lock = PTHREAD_MUTEX_INITIALIZER };
	static struct capture cap2 = { .lock = PTHREAD_MUTEX_INITIALIZER };
	static struct capture cap3 = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct boot_config bcfg = { 0 };
	struct boot_entry entry;
	struct snap_writer w;
	struct snap_reader rd;
	char err[512], why[256], cmdline[64], path[] = "/tmp/vmstate_test.XXXXXX";
	void *ram_copy[GM_MAX_REGIONS] = { 0 };
	unsigned nregions;
	double t0, t_pause, t_resume, t_first;
	long before, seen, lines;
	size_t len_paused;
	int e, fd;

	if (argc < 2) {
		fprintf(stderr, "usage: vmstate_test GUEST-COUNTER.elf [poll|irq]\n");
		return 2;
	}
	if (argc > 2)
		mode = argv[2];
	if (kvm_open(&kvm, "/dev/kvm", err, sizeof(err)) < 0) {
		printf("SKIP: vmstate-%s: %s\n", mode, err);
		return 0;
	}
	snprintf(cmdline, sizeof(cmdline), "mode=%s delay_ms=10", mode);
	bcfg.kernel_path = argv[1];
	bcfg.cmdline = cmdline;
	fd = mkstemp(path);
	if (fd < 0) {
		perror("mkstemp");
		return 1;
	}
	close(fd);

	/* 1. Boot and let it count. */
	if (make_vm(&vm1, &kvm, NCPUS, &cap1, err, sizeof(err)) < 0 ||
	    boot_load(&vm1.gm, &bcfg, &entry, err, sizeof(err)) < 0 ||
	    vm_setup_vcpus(&vm1, &entry, err, sizeof(err)) < 0 || vm_start(&vm1) < 0) {
		fail("boot", err);
		return 1;
	}
	if (!wait_count(&cap1, 5, 60000)) {
		pthread_mutex_lock(&cap1.lock);
		printf("# guest output: %.2000s\n", cap1.buf ? cap1.buf : "(none)");
		pthread_mutex_unlock(&cap1.lock);
		fail("boot", "no 'count 5' within 60 s");
		return 1;
	}
	pass("boot");
	sleep_ms(200);

	/* 2. Pause: nothing more comes out; resume: it goes on. */
	e = vm_save_state(&vm1, &(struct snap_writer){ 0 }, err, sizeof(err));
	check("save-refused-while-running", e == -EBUSY, "vm_save_state did not refuse running vCPUs");
	t0 = now_ms();
	vm_pause(&vm1);
	t_pause = now_ms() - t0;
	check("paused-flag", vm_paused(&vm1), "vm_paused() is false after vm_pause()");
	len_paused = capture_len(&cap1);
	sleep_ms(300);
	check("pause-silences-guest", capture_len(&cap1) == len_paused, "output grew while paused");
	vm_pause(&vm1); /* idempotent */
	before = capture_last_count(&cap1);
	t0 = now_ms();
	vm_resume(&vm1);
	t_resume = now_ms() - t0;
	while (capture_len(&cap1) == len_paused && now_ms() - t0 < 5000)
		sleep_ms(0);
	t_first = now_ms() - t0;
	check("resume-continues", wait_count(&cap1, before + 5, 10000), "no new lines after resume");
	printf("# vmstate %s: vm_pause %.3f ms, vm_resume %.3f ms, first guest byte %.3f ms after resume\n",
	       mode, t_pause, t_resume, t_first);

	/*
	 * Pause/resume cycles with gaps of 0..250 us, so kicks land in every
	 * part of the vCPU loop: none may be lost (vm_pause would hang).
	 */
	{
		double sum = 0, max = 0;

		for (int i = 0; i < 200; i++) {
			struct timespec gap = { 0, (i % 6) * 50000L };
			double d;

			if (gap.tv_nsec)
				nanosleep(&gap, NULL);
			t0 = now_ms();
			vm_pause(&vm1);
			d = now_ms() - t0;
			sum += d;
			max = d > max ? d : max;
			vm_resume(&vm1);
		}
		printf("# vmstate %s: 200 pause/resume cycles: vm_pause mean %.3f ms, max %.3f ms\n", mode,
		       sum / 200, max);
	}
	before = capture_last_count(&cap1);
	check("pause-resume-cycles", wait_count(&cap1, before + 3, 10000), "stuck after 200 cycles");

	/* 3. Save: pause, KVM state to a file, RAM to a buffer. */
	vm_pause(&vm1);
	snap_writer_init(&w);
	e = vm_save_state(&vm1, &w, err, sizeof(err));
	if (e == 0)
		e = snap_writer_save(&w, path, err, sizeof(err));
	snap_writer_free(&w);
	check("save", e == 0, err);
	nregions = vm1.gm.nr_regions;
	for (unsigned i = 0; i < nregions; i++) {
		ram_copy[i] = malloc(vm1.gm.regions[i].size);
		if (!ram_copy[i]) {
			fail("ram-copy", "out of memory");
			return 1;
		}
		memcpy(ram_copy[i], vm1.gm.regions[i].host, vm1.gm.regions[i].size);
	}
	seen = capture_last_count(&cap1);

	/* A stop while paused ends the VM. */
	t0 = now_ms();
	stop_vm(&vm1);
	printf("# vmstate %s: stop while paused took %.3f ms\n", mode, now_ms() - t0);
	pass("stop-while-paused");
	vm_destroy(&vm1);
	if (e < 0)
		return 1;

	e = snap_reader_open(&rd, path, err, sizeof(err));
	if (e < 0) {
		fail("reader", err);
		return 1;
	}

	/* 4. Refusals: wrong vCPU count, wrong XSAVE size; the VM is left untouched. */
	if (make_vm(&vm3, &kvm, 1, &cap3, err, sizeof(err)) == 0) {
		err[0] = 0;
		e = vm_load_state(&vm3, &rd, err, sizeof(err));
		printf("# %s\n", err);
		check("refuse-vcpu-count", e == -EINVAL && strstr(err, "kvm.vcpu.1"), err);
		vm_destroy(&vm3);
	}
	{
		struct snap_reader bad;
		char bpath[] = "/tmp/vmstate_bad.XXXXXX";
		int bfd = mkstemp(bpath);

		close(bfd);
		e = forge_xsave_size(&rd, bpath, 2696, err, sizeof(err));
		if (e == 0 && (e = snap_reader_open(&bad, bpath, err, sizeof(err))) == 0) {
			if (make_vm(&vm3, &kvm, NCPUS, &cap3, err, sizeof(err)) == 0) {
				err[0] = 0;
				e = vm_load_state(&vm3, &bad, err, sizeof(err));
				printf("# %s\n", err);
				check("refuse-xsave-size", e == -EINVAL && strstr(err, "XSAVE size 2696"), err);
				vm_destroy(&vm3);
			}
			snap_reader_free(&bad);
		} else {
			printf("# forging skipped: %s\n", e == -EINVAL ? "no XSAVE form in this snapshot" : err);
		}
		unlink(bpath);
	}

	/* 5. Restore into a fresh VM and check the count goes on. */
	if (make_vm(&vm2, &kvm, NCPUS, &cap2, err, sizeof(err)) < 0) {
		fail("restore-create", err);
		return 1;
	}
	check("restore-layout", vm2.gm.nr_regions == nregions, "guest memory layout differs");
	for (unsigned i = 0; i < nregions && i < vm2.gm.nr_regions; i++)
		memcpy(vm2.gm.regions[i].host, ram_copy[i], vm2.gm.regions[i].size);
	/* What the first VM printed comes first in the combined stream. */
	pthread_mutex_lock(&cap1.lock);
	for (size_t i = 0; i < cap1.len; i++)
		com1_write(&cap2, 0, (uint8_t)cap1.buf[i], 1);
	pthread_mutex_unlock(&cap1.lock);
	t0 = now_ms();
	e = vm_load_state(&vm2, &rd, err, sizeof(err));
	printf("# vmstate %s: vm_load_state %.3f ms\n", mode, now_ms() - t0);
	check("load", e == 0, err);
	if (e == 0 && vm_start(&vm2) == 0) {
		check("restored-continues", wait_count(&cap2, seen + 20, 20000),
		      "fewer than 20 new lines after restore");
		pthread_mutex_lock(&cap2.lock);
		lines = check_sequence(cap2.buf, why, sizeof(why));
		pthread_mutex_unlock(&cap2.lock);
		if (lines >= 0)
			snprintf(why, sizeof(why), "%ld lines", lines);
		check("sequence-unbroken", lines > seen + 1, why);
		printf("# vmstate %s: counted to %ld before the snapshot, %ld lines in all\n", mode, seen, lines);

		/* 6. Dirty log: the running guest dirties pages; a second fetch is empty. */
		e = vm_dirty_log_enable(&vm2, true);
		check("dirty-log-enable", e == 0 && vm_dirty_log_enabled(&vm2), strerror(-e));
		if (e == 0) {
			size_t words = (vm2.gm.regions[0].size / 4096 + 63) / 64;
			uint64_t *bm = calloc(words, 8);
			unsigned n1, n2;

			sleep_ms(200);
			vm_pause(&vm2);
			e = vm_dirty_log_fetch(&vm2, 0, bm);
			n1 = popcount_bitmap(bm, words);
			memset(bm, 0, words * 8);
			e = e ?: vm_dirty_log_fetch(&vm2, 0, bm);
			n2 = popcount_bitmap(bm, words);
			snprintf(why, sizeof(why), "fetch %s, %u then %u dirty pages", strerror(-e), n1, n2);
			printf("# vmstate %s: dirty log: %s\n", mode, why);
			check("dirty-log-fetch", e == 0 && n1 > 0 && n2 == 0, why);
			e = vm_dirty_log_enable(&vm2, false);
			check("dirty-log-disable", e == 0 && !vm_dirty_log_enabled(&vm2), strerror(-e));
			vm_resume(&vm2);
			free(bm);
		}
		stop_vm(&vm2);
	}
	vm_destroy(&vm2);
	snap_reader_free(&rd);
	unlink(path);
	for (unsigned i = 0; i < nregions; i++)
		free(ram_copy[i]);
	kvm_close(&kvm);
	return failures ? 1 : 0;
}

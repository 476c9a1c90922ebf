/* virtio-mmio (version 2) transport, driven like a guest driver, with virtio-rng behind it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/virtio/rng.h"
#include "loop/loop.h"
#include "snapshot/snap.h"
#include "virtio/mmio.h"
#include "vring_driver.h"

#define BASE 0xd0000000ull

struct fx {
	struct bus mmio;
	struct loop *loop;
	struct vrd d;
	struct virtio_rng rng;
	struct virtio_mmio vm;
	int ioeventfds;
};

static int f_ioeventfd(void *o, uint64_t addr, unsigned len, bool pio, int64_t match, int fd, bool assign)
{
	struct fx *f = o;

	/* One per queue, on QueueNotify, matching the queue index. */
	assert_int_equal(addr, BASE + 0x50);
	assert_true(match >= 0);
	f->ioeventfds += assign ? 1 : -1;
	return 0;
}

static const struct msi_host_ops ops = { .ioeventfd = f_ioeventfd };

static void line(struct irq *irq, bool level)
{
}

static const struct irq_ops line_ops = { .set_level = line };

static int setup(void **state)
{
	static struct fx f;
	static struct msi_host msi;

	memset(&f, 0, sizeof(f));
	assert_int_equal(bus_init(&f.mmio, "mmio"), 0);
	f.loop = loop_new();
	assert_int_equal(vrd_init(&f.d, 8), 0);
	rng_init(&f.rng, &f.d.gm);
	msi = (struct msi_host){ &ops, &f };
	assert_int_equal(virtio_mmio_init(&f.vm, &f.rng.vdev, &msi, f.loop, BASE), 0);
	f.vm.irq = (struct irq){ .ops = &line_ops };
	assert_int_equal(bus_register(&f.mmio, BASE, VMMIO_SIZE, BUS_SZ_ANY, &virtio_mmio_ops, &f.vm, "vmmio"), 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	virtio_mmio_exit(&f->vm);
	assert_int_equal(f->ioeventfds, 0);
	loop_free(f->loop);
	vrd_exit(&f->d);
	bus_exit(&f->mmio);
	return 0;
}

static uint32_t rd(struct fx *f, unsigned off)
{
	uint64_t v;

	bus_read(&f->mmio, BASE + off, 4, &v);
	return (uint32_t)v;
}

static void wr(struct fx *f, unsigned off, uint32_t v)
{
	bus_write(&f->mmio, BASE + off, 4, v);
}

static void test_identity(void **state)
{
	struct fx *f = *state;

	assert_int_equal(rd(f, 0x000), 0x74726976);   /* "virt" */
	assert_int_equal(rd(f, 0x004), 2);            /* modern */
	assert_int_equal(rd(f, 0x008), VIRTIO_ID_RNG);
	wr(f, 0x014, 1);
	assert_true(rd(f, 0x010) & 1);                /* VERSION_1 */
	wr(f, 0x030, 0);
	assert_int_equal(rd(f, 0x034), 256);          /* QueueNumMax */
	wr(f, 0x030, 5);
	assert_int_equal(rd(f, 0x034), 0);            /* no such queue */
	assert_int_equal(f->ioeventfds, 1);
	/* Sub-word register accesses read 0 and write nothing. */
	uint64_t v;
	bus_read(&f->mmio, BASE, 2, &v);
	assert_int_equal(v, 0);
}

static void test_request_and_interrupt(void **state)
{
	struct fx *f = *state;
	struct vrd_buf b;
	uint16_t head;
	uint32_t id, len;

	wr(f, 0x070, 0x03);
	wr(f, 0x024, 1);
	wr(f, 0x020, 1);
	wr(f, 0x070, 0x0b);
	assert_int_equal(rd(f, 0x070) & 0x08, 0x08);
	wr(f, 0x030, 0);
	wr(f, 0x038, f->d.size);
	wr(f, 0x080, (uint32_t)f->d.desc_gpa);
	wr(f, 0x084, 0);
	wr(f, 0x090, (uint32_t)f->d.avail_gpa);
	wr(f, 0x094, 0);
	wr(f, 0x0a0, (uint32_t)f->d.used_gpa);
	wr(f, 0x0a4, 0);
	wr(f, 0x044, 1);
	wr(f, 0x070, 0x0f);
	assert_int_equal(rd(f, 0x070), 0x0f);

	b = vrd_buf_data(&f->d, NULL, 16, true);
	head = vrd_add_chain(&f->d, &b, 1);
	vrd_publish(&f->d, head);
	wr(f, 0x050, 0);                 /* a kick that exited is forwarded to the I/O loop */
	assert_true(loop_run_once(f->loop, 1000) >= 1);
	assert_true(vrd_get_used(&f->d, &id, &len));
	assert_int_equal(id, head);
	assert_int_equal(len, 16);
	assert_int_equal(rd(f, 0x060) & 1, 1);   /* used-buffer interrupt */
	assert_true(f->vm.irq.level);
	wr(f, 0x064, 1);                         /* InterruptACK */
	assert_int_equal(rd(f, 0x060), 0);
	assert_false(f->vm.irq.level);
	/* Setup is frozen while running. */
	wr(f, 0x080, 0x1000);
	assert_int_equal(f->rng.vdev.queues[0].desc_gpa, f->d.desc_gpa);
	/* Kicks for queues that do not exist are ignored. */
	wr(f, 0x050, 9);
	assert_int_equal(loop_run_once(f->loop, 0), 0);
}

static void test_bad_ring_needs_reset(void **state)
{
	struct fx *f = *state;

	wr(f, 0x070, 0x03);
	wr(f, 0x024, 1);
	wr(f, 0x020, 1);
	wr(f, 0x070, 0x0b);
	wr(f, 0x030, 0);
	wr(f, 0x038, 3);                 /* not a power of two */
	wr(f, 0x080, (uint32_t)f->d.desc_gpa);
	wr(f, 0x090, (uint32_t)f->d.avail_gpa);
	wr(f, 0x0a0, (uint32_t)f->d.used_gpa);
	wr(f, 0x044, 1);
	wr(f, 0x070, 0x0f);
	assert_int_equal(rd(f, 0x070) & 0x44, 0x40);   /* NEEDS_RESET, not DRIVER_OK */
	assert_int_equal(rd(f, 0x060) & 2, 2);         /* config interrupt */
	wr(f, 0x070, 0);
	assert_int_equal(rd(f, 0x070), 0);
	assert_int_equal(rd(f, 0x044), 0);
}

/*
 * A driver that writes a status without DRIVER_OK while its queues run
 * or sets reserved bits (both found by fuzz_vmmio): only a reset clears
 * bits and reserved ones are not kept, so the device stays consistent and
 * its own snapshot loads back.
 */
static void test_status_bits_clear_only_by_reset(void **state)
{
	static struct snap_reader r;
	struct fx *f = *state;
	struct snap_writer w;
	struct snap_sec s;
	char path[] = "/tmp/kestrel-test-vmmio-XXXXXX", err[256];
	int fd;

	wr(f, 0x070, 0x03);
	wr(f, 0x024, 1);
	wr(f, 0x020, 1);
	wr(f, 0x070, 0x0b);
	wr(f, 0x030, 0);
	wr(f, 0x038, f->d.size);
	wr(f, 0x080, (uint32_t)f->d.desc_gpa);
	wr(f, 0x090, (uint32_t)f->d.avail_gpa);
	wr(f, 0x0a0, (uint32_t)f->d.used_gpa);
	wr(f, 0x044, 1);
	wr(f, 0x070, 0x0f);
	assert_int_equal(rd(f, 0x070), 0x0f);
	wr(f, 0x070, 0x03);                      /* DRIVER_OK and FEATURES_OK left out */
	assert_int_equal(rd(f, 0x070), 0x0f);
	assert_int_equal(rd(f, 0x044), 1);
	wr(f, 0x070, 0x3f);                      /* 0x10 and 0x20 are reserved */
	assert_int_equal(rd(f, 0x070), 0x0f);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	snap_writer_init(&w);
	snap_begin(&w, "vdev", 1);
	virtio_mmio_save(&f->vm, &w);
	snap_end(&w);
	assert_int_equal(snap_writer_save(&w, path, err, sizeof(err)), 0);
	snap_writer_free(&w);
	assert_int_equal(snap_reader_open(&r, path, err, sizeof(err)), 0);
	unlink(path);
	assert_int_equal(snap_find(&r, "vdev", &s), 0);
	assert_int_equal(virtio_mmio_load(&f->vm, &s, false, err, sizeof(err)), 0);
	snap_reader_free(&r);

	wr(f, 0x070, 0);                         /* a reset still clears everything */
	assert_int_equal(rd(f, 0x070), 0);
	assert_int_equal(rd(f, 0x044), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_and_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_ring_needs_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_bits_clear_only_by_reset, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

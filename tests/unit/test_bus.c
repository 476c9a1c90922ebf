#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "bus/bus.h"

struct fake_dev {
	uint64_t last_off, last_val;
	unsigned last_size, reads, writes;
	uint64_t read_val;
	struct bus *remap_bus;   /* if set, a write unregisters this device's range */
	uint64_t remap_base;
};

static uint64_t fake_read(void *opaque, uint64_t off, unsigned size)
{
	struct fake_dev *d = opaque;

	d->reads++;
	d->last_off = off;
	d->last_size = size;
	return d->read_val;
}

static void fake_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct fake_dev *d = opaque;

	d->writes++;
	d->last_off = off;
	d->last_val = val;
	d->last_size = size;
	if (d->remap_bus)
		assert_int_equal(bus_unregister(d->remap_bus, d->remap_base), 0);
}

static const struct bus_dev_ops fake_ops = { .read = fake_read, .write = fake_write };

static void test_register_and_dispatch(void **state)
{
	struct bus b;
	struct fake_dev a = { .read_val = 0x1122334455667788ull }, c = { 0 };
	uint64_t v;

	assert_int_equal(bus_init(&b, "mmio"), 0);
	assert_int_equal(bus_register(&b, 0x1000, 0x100, BUS_SZ_ANY, &fake_ops, &a, "a"), 0);
	assert_int_equal(bus_register(&b, 0x3000, 0x10, BUS_SZ_4, &fake_ops, &c, "c"), 0);

	assert_int_equal(bus_read(&b, 0x1010, 2, &v), 0);
	assert_int_equal(v, 0x7788);            /* truncated to the access size */
	assert_int_equal(a.last_off, 0x10);
	assert_int_equal(a.last_size, 2);

	assert_int_equal(bus_write(&b, 0x3008, 4, 0xdeadbeefcafeull), 0);
	assert_int_equal(c.last_off, 8);
	assert_int_equal(c.last_val, 0xbeefcafeull); /* value masked to 4 bytes */

	assert_int_equal(bus_counters_at(&b, 0x1000)->reads, 1);
	assert_int_equal(bus_counters_at(&b, 0x3000)->writes, 1);
	bus_exit(&b);
}

static void test_overlap_rejected(void **state)
{
	struct bus b;
	struct fake_dev d = { 0 };

	assert_int_equal(bus_init(&b, "pio"), 0);
	assert_int_equal(bus_register(&b, 0x100, 0x10, BUS_SZ_1, &fake_ops, &d, "x"), 0);
	assert_int_equal(bus_register(&b, 0x10f, 1, BUS_SZ_1, &fake_ops, &d, "y"), -EEXIST);
	assert_int_equal(bus_register(&b, 0xf8, 0x10, BUS_SZ_1, &fake_ops, &d, "y"), -EEXIST);
	assert_int_equal(bus_register(&b, 0x0, 0x1000, BUS_SZ_1, &fake_ops, &d, "y"), -EEXIST);
	assert_int_equal(bus_register(&b, 0x100, 0x10, BUS_SZ_1, &fake_ops, &d, "y"), -EEXIST);
	/* Adjacent on both sides is fine. */
	assert_int_equal(bus_register(&b, 0xf0, 0x10, BUS_SZ_1, &fake_ops, &d, "lo"), 0);
	assert_int_equal(bus_register(&b, 0x110, 0x10, BUS_SZ_1, &fake_ops, &d, "hi"), 0);
	assert_int_equal(b.nr, 3);
	/* Sorted. */
	assert_true(b.ranges[0].base < b.ranges[1].base && b.ranges[1].base < b.ranges[2].base);
	bus_exit(&b);
}

static void test_bad_registrations(void **state)
{
	struct bus b;
	struct fake_dev d = { 0 };

	assert_int_equal(bus_init(&b, "mmio"), 0);
	assert_int_equal(bus_register(&b, 0x100, 0, BUS_SZ_1, &fake_ops, &d, "empty"), -EINVAL);
	assert_int_equal(bus_register(&b, ~0ull - 4, 0x10, BUS_SZ_1, &fake_ops, &d, "wrap"), -EINVAL);
	assert_int_equal(bus_register(&b, 0x100, 0x10, 0, &fake_ops, &d, "nosizes"), -EINVAL);
	assert_int_equal(bus_register(&b, 0x100, 0x10, BUS_SZ_1, NULL, &d, "noops"), -EINVAL);
	/* The very top of the address space is a valid range. */
	assert_int_equal(bus_register(&b, ~0ull - 0xf, 0x10, BUS_SZ_1, &fake_ops, &d, "top"), 0);
	assert_int_equal(bus_unregister(&b, 0x12345), -ENOENT);
	bus_exit(&b);
}

static void test_unmapped_and_straddle(void **state)
{
	struct bus b;
	struct fake_dev d = { .read_val = 0 };
	uint64_t v;

	assert_int_equal(bus_init(&b, "mmio"), 0);
	assert_int_equal(bus_register(&b, 0x1000, 0x10, BUS_SZ_ANY, &fake_ops, &d, "d"), 0);
	assert_int_equal(bus_read(&b, 0x2000, 4, &v), -ENOENT);
	assert_int_equal(v, 0xffffffffull);
	assert_int_equal(bus_write(&b, 0xfff, 1, 0), -ENOENT);
	/* An access running past the end of a range does not reach the device. */
	assert_int_equal(bus_read(&b, 0x100e, 4, &v), -ENOENT);
	assert_int_equal(bus_read(&b, 0x1008, 8, &v), 0);
	assert_int_equal(b.unmapped_reads, 2);
	assert_int_equal(b.unmapped_writes, 1);
	assert_int_equal(d.reads, 1);
	/* Odd sizes never reach a device. */
	assert_int_equal(bus_write(&b, 0x1000, 3, 0), -ENOENT);
	assert_int_equal(d.writes, 0);
	bus_exit(&b);
}

static void test_size_refused(void **state)
{
	struct bus b;
	struct fake_dev d = { 0 };
	uint64_t v;

	assert_int_equal(bus_init(&b, "pio"), 0);
	assert_int_equal(bus_register(&b, 0x3f8, 8, BUS_SZ_1, &fake_ops, &d, "uart"), 0);
	assert_int_equal(bus_write(&b, 0x3f8, 4, 0x41424344), -EINVAL);
	assert_int_equal(bus_read(&b, 0x3f8, 2, &v), -EINVAL);
	assert_int_equal(v, 0xffff);
	assert_int_equal(d.writes + d.reads, 0);
	assert_int_equal(b.bad_size, 2);
	assert_int_equal(bus_write(&b, 0x3f8, 1, 0x41), 0);
	assert_int_equal(d.writes, 1);
	bus_exit(&b);
}

/* A device may remove its own range from inside its handler (PCI BAR moves). */
static void test_unregister_from_handler(void **state)
{
	struct bus b;
	struct fake_dev d = { 0 };

	assert_int_equal(bus_init(&b, "mmio"), 0);
	d.remap_bus = &b;
	d.remap_base = 0x5000;
	assert_int_equal(bus_register(&b, 0x5000, 0x1000, BUS_SZ_4, &fake_ops, &d, "bar"), 0);
	assert_int_equal(bus_write(&b, 0x5004, 4, 1), 0);
	assert_int_equal(b.nr, 0);
	assert_int_equal(bus_write(&b, 0x5004, 4, 1), -ENOENT);
	bus_exit(&b);
}

static void test_many_ranges_lookup(void **state)
{
	struct bus b;
	struct fake_dev d[40];
	uint64_t v;

	assert_int_equal(bus_init(&b, "pio"), 0);
	/* Register out of order to exercise the sorted insert. */
	for (int i = 39; i >= 0; i--) {
		d[i] = (struct fake_dev){ .read_val = (uint64_t)i };
		assert_int_equal(bus_register(&b, 0x100u * (unsigned)i, 0x10, BUS_SZ_1, &fake_ops, &d[i], "d"), 0);
	}
	for (int i = 0; i < 40; i++) {
		assert_int_equal(bus_read(&b, 0x100u * (unsigned)i + 0xf, 1, &v), 0);
		assert_int_equal(v, (uint64_t)i);
		assert_int_equal(bus_read(&b, 0x100u * (unsigned)i + 0x10, 1, &v), -ENOENT);
	}
	bus_exit(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_and_dispatch),
		cmocka_unit_test(test_overlap_rejected),
		cmocka_unit_test(test_bad_registrations),
		cmocka_unit_test(test_unmapped_and_straddle),
		cmocka_unit_test(test_size_refused),
		cmocka_unit_test(test_unregister_from_handler),
		cmocka_unit_test(test_many_ranges_lookup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

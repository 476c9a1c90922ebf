/*
 * The machine's legacy-device table (vmm/machine_legacy.c): set-up and
 * teardown walk the same table, so every range a device registers is gone
 * after teardown, also after a set-up that failed part way; save and load
 * walk it too, with the section names old snapshots carry.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "mem/layout.h"
#include "snapshot/snap.h"
#include "vmm/machine_priv.h"

static void count_range(const struct bus_range *r, void *arg)
{
	(void)r;
	(*(unsigned *)arg)++;
}

static unsigned nranges(struct bus *b)
{
	unsigned n = 0;

	bus_for_each(b, count_range, &n);
	return n;
}

static void noop_event(void *opaque, enum sysevent ev, int status)
{
	(void)opaque; (void)ev; (void)status;
}

/* A machine with buses and nothing else: no KVM, no guest memory. */
static struct machine *bare_machine(void)
{
	struct machine *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	assert_int_equal(bus_init(&m->vm.pio, "pio"), 0);
	assert_int_equal(bus_init(&m->vm.mmio, "mmio"), 0);
	m->vm.gm.ram_size = 64ull << 20;
	m->cfg.virtio_console = true;   /* COM1 without an output */
	m->sink = (struct sysevent_sink){ .fire = noop_event };
	return m;
}

static void free_machine(struct machine *m)
{
	bus_exit(&m->vm.pio);
	bus_exit(&m->vm.mmio);
	free(m);
}

static uint64_t dummy_read(void *opaque, uint64_t off, unsigned size)
{
	(void)opaque; (void)off; (void)size;
	return 0;
}

static void dummy_write(void *opaque, uint64_t off, uint64_t v, unsigned size)
{
	(void)opaque; (void)off; (void)v; (void)size;
}

static const struct bus_dev_ops dummy_ops = { .read = dummy_read, .write = dummy_write };

static void test_teardown_mirrors_init(void **state)
{
	struct machine *m = bare_machine();
	char err[256];

	(void)state;
	assert_int_equal(machine_legacy_init(m, err, sizeof(err)), 0);
	assert_int_equal(m->nlegacy, machine_legacy_count());
	/* COM1, i8042 data + control, RTC, debug exit, ACPI PM, PCI address + data; ECAM. */
	assert_int_equal(nranges(&m->vm.pio), 8);
	assert_int_equal(nranges(&m->vm.mmio), 1);
	machine_legacy_exit(m);
	/* A device whose teardown was forgotten leaves its range behind. */
	assert_int_equal(nranges(&m->vm.pio), 0);
	assert_int_equal(nranges(&m->vm.mmio), 0);
	assert_int_equal(m->nlegacy, 0);
	machine_legacy_exit(m);   /* twice: a no-op */
	/* And the devices can be set up again on the same buses. */
	assert_int_equal(machine_legacy_init(m, err, sizeof(err)), 0);
	machine_legacy_exit(m);
	assert_int_equal(nranges(&m->vm.pio), 0);
	free_machine(m);
}

/*
 * A range taken before set-up makes one device fail: set-up stops there
 * with an error naming it, and teardown leaves exactly the blocker behind
 * (what the failing device registered before failing is unwound too).
 */
static void test_failed_init_unwinds(void **state)
{
	static const struct {
		int pio;
		uint64_t base;
		const char *name;
	} blockers[] = {
		{ 1, LAYOUT_PORT_COM1, "uart-com1" },
		{ 1, LAYOUT_PORT_I8042, "i8042" },
		{ 1, LAYOUT_PORT_I8042 + 4, "i8042" },
		{ 1, LAYOUT_PORT_RTC, "rtc" },
		{ 1, LAYOUT_PORT_DEBUG_EXIT, "debug-exit" },
		{ 1, LAYOUT_PORT_ACPI_PM, "acpi-pm" },
		{ 1, LAYOUT_PORT_PCI_CONF, "pci-host" },
		{ 1, LAYOUT_PORT_PCI_CONF + 4, "pci-host" },
		{ 0, LAYOUT_ECAM_START, "pci-host" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(blockers) / sizeof(blockers[0]); i++) {
		struct machine *m = bare_machine();
		struct bus *b = blockers[i].pio ? &m->vm.pio : &m->vm.mmio;
		char err[256] = "";

		assert_int_equal(bus_register(b, blockers[i].base, 1, BUS_SZ_ANY, &dummy_ops, NULL, "blocker"), 0);
		assert_true(machine_legacy_init(m, err, sizeof(err)) < 0);
		assert_non_null(strstr(err, blockers[i].name));
		assert_true(m->nlegacy < machine_legacy_count());
		machine_legacy_exit(m);
		assert_int_equal(nranges(&m->vm.pio) + nranges(&m->vm.mmio), 1);
		assert_int_equal(nranges(b), 1);
		free_machine(m);
	}
}

/* Save writes the sections old snapshots have; load reads them back; a missing one is named. */
static void test_save_load_sections(void **state)
{
	static const char *const sections[] = { "uart.com1", "i8042", "rtc", "acpi_pm", "pci.host" };
	struct machine *a = bare_machine(), *b = bare_machine();
	char path[] = "/tmp/kestrel-legacy-XXXXXX", err[256];
	struct snap_writer w;
	struct snap_reader *r = malloc(sizeof(*r));
	struct snap_sec s;
	int fd = mkstemp(path);

	(void)state;
	assert_non_null(r);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(machine_legacy_init(a, err, sizeof(err)), 0);
	assert_int_equal(machine_legacy_init(b, err, sizeof(err)), 0);
	a->rtc.cmos[0x40] = 0x5a;
	a->kbd.cmd_byte = 0x61;
	a->pm.status = 0x80;
	snap_writer_init(&w);
	machine_legacy_save(a, &w);
	assert_int_equal(w.nsections, sizeof(sections) / sizeof(sections[0]));
	assert_int_equal(snap_writer_write(&w, path, err, sizeof(err)), 0);
	snap_writer_free(&w);
	assert_int_equal(snap_reader_open(r, path, err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		assert_int_equal(snap_find(r, sections[i], &s), 0);
	assert_int_equal(machine_legacy_load(b, r, err, sizeof(err)), 0);
	assert_int_equal(b->rtc.cmos[0x40], 0x5a);
	assert_int_equal(b->kbd.cmd_byte, 0x61);
	assert_int_equal(b->pm.status, 0x80);
	snap_reader_free(r);

	/* Without the RTC's section: refused, and the error names it. */
	snap_writer_init(&w);
	snap_begin(&w, "uart.com1", UART_SNAP_VERSION);
	uart_save(&a->com1, &w);
	snap_end(&w);
	snap_begin(&w, "i8042", I8042_SNAP_VERSION);
	i8042_save(&a->kbd, &w);
	snap_end(&w);
	assert_int_equal(snap_writer_write(&w, path, err, sizeof(err)), 0);
	snap_writer_free(&w);
	assert_int_equal(snap_reader_open(r, path, err, sizeof(err)), 0);
	assert_true(machine_legacy_load(b, r, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "'rtc'"));
	snap_reader_free(r);

	/* A section with another version: refused with both versions. */
	snap_writer_init(&w);
	snap_begin(&w, "uart.com1", UART_SNAP_VERSION + 1);
	uart_save(&a->com1, &w);
	snap_end(&w);
	assert_int_equal(snap_writer_write(&w, path, err, sizeof(err)), 0);
	snap_writer_free(&w);
	assert_int_equal(snap_reader_open(r, path, err, sizeof(err)), 0);
	assert_int_equal(machine_legacy_load(b, r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "version"));
	snap_reader_free(r);

	unlink(path);
	free(r);
	machine_legacy_exit(a);
	machine_legacy_exit(b);
	free_machine(a);
	free_machine(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_teardown_mirrors_init),
		cmocka_unit_test(test_failed_init_unwinds),
		cmocka_unit_test(test_save_load_sections),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pci/pci.h"
#include "mem/layout.h"

struct bar_dev {
	unsigned writes;
	uint64_t last_off;
};

static uint64_t bar_read(void *opaque, uint64_t off, unsigned size)
{
	return 0xabcd;
}

static void bar_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct bar_dev *d = opaque;

	d->writes++;
	d->last_off = off;
}

static const struct bus_dev_ops bar_ops = { .read = bar_read, .write = bar_write };

struct fixture {
	struct bus pio, mmio;
	struct pci_host host;
	struct pci_dev dev;
	struct bar_dev bd;
	unsigned resets;
};

static void on_event(void *opaque, enum sysevent ev, int status)
{
	((struct fixture *)opaque)->resets++;
}

static int setup(void **state)
{
	static struct fixture f;
	struct sysevent_sink sink = { on_event, &f };

	memset(&f, 0, sizeof(f));
	assert_int_equal(bus_init(&f.pio, "pio"), 0);
	assert_int_equal(bus_init(&f.mmio, "mmio"), 0);
	assert_int_equal(pci_host_init(&f.host, &f.pio, &f.mmio, &sink), 0);
	assert_int_equal(pci_host_register(&f.host, LAYOUT_ECAM_START), 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	pci_host_exit(&f->host);
	bus_exit(&f->pio);
	bus_exit(&f->mmio);
	return 0;
}

static uint32_t conf1_read(struct fixture *f, unsigned slot, unsigned reg, unsigned size)
{
	uint64_t v;

	bus_write(&f->pio, 0xcf8, 4, 0x80000000u | slot << 11 | (reg & 0xfc));
	bus_read(&f->pio, 0xcfc + (reg & 3), size, &v);
	return (uint32_t)v;
}

static void conf1_write(struct fixture *f, unsigned slot, unsigned reg, unsigned size, uint32_t v)
{
	bus_write(&f->pio, 0xcf8, 4, 0x80000000u | slot << 11 | (reg & 0xfc));
	bus_write(&f->pio, 0xcfc + (reg & 3), size, v);
}

static void test_host_bridge_conf1(void **state)
{
	struct fixture *f = *state;
	uint64_t v;

	assert_int_equal(conf1_read(f, 0, 0, 4), 0x0d578086);
	assert_int_equal(conf1_read(f, 0, 0x0a, 2), 0x0600);  /* class: host bridge */
	assert_int_equal(conf1_read(f, 0, 0x0b, 1), 0x06);
	/* Empty slots read all-ones. */
	assert_int_equal(conf1_read(f, 5, 0, 4), 0xffffffffu);
	assert_int_equal(conf1_read(f, 5, 0, 2), 0xffff);
	/* Linux's type-1 probe reads the address register back. */
	bus_write(&f->pio, 0xcf8, 4, 0x80000000u);
	bus_read(&f->pio, 0xcf8, 4, &v);
	assert_int_equal(v, 0x80000000u);
	/* Disabled address (bit 31 clear): data port reads all-ones. */
	bus_write(&f->pio, 0xcf8, 4, 0x0);
	bus_read(&f->pio, 0xcfc, 4, &v);
	assert_int_equal(v, 0xffffffffu);
}

static void test_ecam_matches_conf1(void **state)
{
	struct fixture *f = *state;
	uint64_t v;

	assert_int_equal(bus_read(&f->mmio, LAYOUT_ECAM_START, 4, &v), 0);
	assert_int_equal(v, 0x0d578086);
	/* Another bus or function is absent. */
	bus_read(&f->mmio, LAYOUT_ECAM_START + (1u << 12), 4, &v);
	assert_int_equal(v, 0xffffffffu);
	/* Misaligned ECAM access is refused without touching config space. */
	bus_read(&f->mmio, LAYOUT_ECAM_START + 1, 2, &v);
	assert_int_equal(v, 0xffff);
}

static void test_device_add_and_bar_sizing(void **state)
{
	struct fixture *f = *state;
	int slot;

	pci_dev_init(&f->dev, 0x1af4, 0x1041, 0x020000, 1, "test-dev");
	assert_int_equal(pci_dev_set_bar(&f->dev, 0, 0x4000, PCI_BAR_MEM64, &bar_ops, &f->bd), 0);
	assert_int_equal(pci_dev_set_bar(&f->dev, 2, 0x20, PCI_BAR_IO, &bar_ops, &f->bd), 0);
	slot = pci_host_add(&f->host, &f->dev, 1);
	assert_int_equal(slot, 1);
	assert_int_equal(conf1_read(f, 1, 0, 4), 0x10411af4);
	assert_int_equal(conf1_read(f, 1, PCI_INT_PIN, 1), 1);
	assert_int_equal(conf1_read(f, 1, PCI_INT_LINE, 1), LAYOUT_PCI_IRQ(1, 0));
	/* Size probe: all-ones reads back the size mask plus the type bits. */
	conf1_write(f, 1, PCI_BAR0, 4, 0xffffffffu);
	assert_int_equal(conf1_read(f, 1, PCI_BAR0, 4), 0xffffc004u);
	conf1_write(f, 1, PCI_BAR0 + 4, 4, 0xffffffffu);
	assert_int_equal(conf1_read(f, 1, PCI_BAR0 + 4, 4), 0xffffffffu);
	conf1_write(f, 1, PCI_BAR0 + 8, 4, 0xffffffffu);
	assert_int_equal(conf1_read(f, 1, PCI_BAR0 + 8, 4), 0xffffffe1u);
	/* Unused BARs and the ROM stay zero. */
	conf1_write(f, 1, PCI_BAR0 + 12, 4, 0xffffffffu);
	assert_int_equal(conf1_read(f, 1, PCI_BAR0 + 12, 4), 0);
	conf1_write(f, 1, PCI_ROM, 4, 0xffffffffu);
	assert_int_equal(conf1_read(f, 1, PCI_ROM, 4), 0);
	/* Read-only ids stay. */
	conf1_write(f, 1, 0, 4, 0);
	assert_int_equal(conf1_read(f, 1, 0, 4), 0x10411af4);
}

static void test_bar_decode_follows_command(void **state)
{
	struct fixture *f = *state;
	uint64_t v;

	pci_dev_init(&f->dev, 0x1af4, 0x1041, 0x020000, 1, "test-dev");
	assert_int_equal(pci_dev_set_bar(&f->dev, 0, 0x1000, 0, &bar_ops, &f->bd), 0);
	assert_true(pci_host_add(&f->host, &f->dev, 1) > 0);
	conf1_write(f, 1, PCI_BAR0, 4, 0xc0001000u);
	/* Not decoded until memory space is enabled. */
	assert_int_equal(bus_read(&f->mmio, 0xc0001000u, 4, &v), -ENOENT);
	conf1_write(f, 1, PCI_COMMAND, 2, PCI_CMD_MEM);
	assert_int_equal(bus_read(&f->mmio, 0xc0001000u, 4, &v), 0);
	assert_int_equal(v, 0xabcd);
	bus_write(&f->mmio, 0xc0001010u, 4, 1);
	assert_int_equal(f->bd.last_off, 0x10);
	/* Moving the BAR moves the mapping. */
	conf1_write(f, 1, PCI_BAR0, 4, 0xc0100000u);
	assert_int_equal(bus_read(&f->mmio, 0xc0001000u, 4, &v), -ENOENT);
	assert_int_equal(bus_read(&f->mmio, 0xc0100000u, 4, &v), 0);
	/* Disabling decode removes it. */
	conf1_write(f, 1, PCI_COMMAND, 2, 0);
	assert_int_equal(bus_read(&f->mmio, 0xc0100000u, 4, &v), -ENOENT);
}

static void test_hostile_bar_overlap(void **state)
{
	struct fixture *f = *state;
	uint64_t v;

	pci_dev_init(&f->dev, 0x1af4, 0x1041, 0x020000, 1, "test-dev");
	assert_int_equal(pci_dev_set_bar(&f->dev, 0, 0x100000, 0, &bar_ops, &f->bd), 0);
	assert_true(pci_host_add(&f->host, &f->dev, 1) > 0);
	/* Over the ECAM window: refused, ECAM keeps working, nothing crashes. */
	conf1_write(f, 1, PCI_BAR0, 4, LAYOUT_ECAM_START);
	conf1_write(f, 1, PCI_COMMAND, 2, PCI_CMD_MEM);
	assert_int_equal(bus_read(&f->mmio, LAYOUT_ECAM_START, 4, &v), 0);
	assert_int_equal(v, 0x0d578086);
	assert_false(f->dev.bars[0].mapped);
	/* Config accesses past the end or with odd sizes are ignored. */
	pci_host_cfg_write(&f->host, 0, 1, 0, PCI_CFG_SIZE - 2, 4, 0xffffffff);
	assert_int_equal(pci_host_cfg_read(&f->host, 0, 1, 0, PCI_CFG_SIZE - 2, 4), 0xffffffffu);
	assert_int_equal(pci_host_cfg_read(&f->host, 0, 40, 0, 0, 4), 0xffffffffu);
}

static void test_capabilities(void **state)
{
	struct fixture *f = *state;
	int a, b;

	pci_dev_init(&f->dev, 0x1af4, 0x1041, 0x020000, 1, "test-dev");
	a = pci_dev_add_cap(&f->dev, 0x11, 12);
	b = pci_dev_add_cap(&f->dev, 0x09, 16);
	assert_int_equal(a, 0x40);
	assert_int_equal(b, 0x4c);
	assert_int_equal(f->dev.cfg[PCI_CAP_PTR], 0x40);
	assert_int_equal(f->dev.cfg[0x41], 0x4c);
	assert_int_equal(f->dev.cfg[0x4d], 0);
	assert_true(pci_get16(&f->dev, PCI_STATUS) & PCI_STATUS_CAPS);
	assert_int_equal(pci_dev_add_cap(&f->dev, 0x09, 200), -ENOSPC);
}

static void test_slots_fill_up(void **state)
{
	struct fixture *f = *state;
	static struct pci_dev devs[32];

	for (int i = 0; i < 31; i++) {
		pci_dev_init(&devs[i], 0x1af4, 0x1000, 0, 0, "d");
		assert_int_equal(pci_host_add(&f->host, &devs[i], 0), i + 1);
	}
	pci_dev_init(&devs[31], 0x1af4, 0x1000, 0, 0, "d");
	assert_int_equal(pci_host_add(&f->host, &devs[31], 0), -ENOSPC);
}

static void test_reset_control(void **state)
{
	struct fixture *f = *state;

	bus_write(&f->pio, 0xcf9, 1, 0x02);
	assert_int_equal(f->resets, 0);
	bus_write(&f->pio, 0xcf9, 1, 0x06);
	assert_int_equal(f->resets, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_host_bridge_conf1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ecam_matches_conf1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_add_and_bar_sizing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_decode_follows_command, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_bar_overlap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capabilities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slots_fill_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_control, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

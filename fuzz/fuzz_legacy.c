/*
 * libFuzzer target: the legacy devices and the PCI host as a guest sees
 * them, laid out as in the machine (src/vmm/machine.c): the 16550A at
 * 0x3f8, the i8042 at 0x60/0x64, the RTC at 0x70, the ACPI PM block at
 * 0x600, PCI config mechanism #1 at 0xcf8 and the ECAM window. Behind the
 * host sit virtio-rng on virtio-pci (64-bit memory BARs) and a plain
 * function with an I/O BAR and a 32-bit memory BAR, so BAR programming
 * can move ranges over the legacy ports and each other. Each input step is
 * op (1 byte), where (2), size (1), value (4): port and ECAM accesses,
 * MMIO accesses wherever BARs may land, and host input to the UART and
 * keyboard. After every step the devices' invariants are checked.
 */
#include <string.h>

#include "fuzz_common.h"
#include "backends/chardev.h"
#include "devices/legacy/acpi_pm.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/rtc.h"
#include "devices/legacy/uart.h"
#include "devices/virtio/rng.h"
#include "loop/loop.h"
#include "mem/layout.h"
#include "pci/pci.h"
#include "virtio/pci.h"
#include "mem/gm_test.h"

#define RAM_GPA  0x100000ull
#define RAM_SIZE 0x10000ull

struct dummy {
	struct pci_dev pci;
	uint64_t io_hits, mem_hits;
};

static uint64_t dummy_io_read(void *o, uint64_t off, unsigned size)
{
	if (off >= 32)
		abort();   /* the bus only hands a BAR offsets inside it */
	((struct dummy *)o)->io_hits++;
	return off;
}

static void dummy_io_write(void *o, uint64_t off, uint64_t v, unsigned size)
{
	if (off >= 32)
		abort();
	((struct dummy *)o)->io_hits++;
}

static uint64_t dummy_mem_read(void *o, uint64_t off, unsigned size)
{
	if (off >= 0x1000)
		abort();
	((struct dummy *)o)->mem_hits++;
	return off;
}

static void dummy_mem_write(void *o, uint64_t off, uint64_t v, unsigned size)
{
	if (off >= 0x1000)
		abort();
	((struct dummy *)o)->mem_hits++;
}

static const struct bus_dev_ops dummy_io_ops = { dummy_io_read, dummy_io_write };
static const struct bus_dev_ops dummy_mem_ops = { dummy_mem_read, dummy_mem_write };

static unsigned events;

static void sink_fire(void *o, enum sysevent ev, int status)
{
	events++;
}

static void cd_write(struct chardev *cd, const uint8_t *buf, size_t len)
{
	volatile uint8_t s = 0;

	for (size_t i = 0; i < len; i++)
		s ^= buf[i];
	(void)s;
}

static const struct chardev_ops cd_ops = { cd_write };

/* The ports the devices answer on; an index past the table is a raw 16-bit port. */
static const uint16_t ports[] = {
	0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe, 0x3ff, 0x60, 0x64, 0x70, 0x71,
	0x600, 0x601, 0xcf8, 0xcf9, 0xcfa, 0xcfb, 0xcfc, 0xcfd, 0xcfe, 0xcff,
};

/* Every mapped BAR must be on its bus where the device thinks it is. */
static void check_bars(const struct pci_dev *d, struct bus *pio, struct bus *mmio)
{
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		const struct pci_bar *b = &d->bars[i];

		if (!b->size || !b->mapped)
			continue;
		if (!bus_counters_at((b->flags & PCI_BAR_IO) ? pio : mmio, b->mapped_at))
			abort();
		if ((b->flags & PCI_BAR_IO) && b->mapped_at + b->size > 0x10000)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned sizes[] = { 1, 2, 4, 8 };
	struct sysevent_sink sink = { sink_fire, NULL };
	struct chardev out = { .ops = &cd_ops, .out_fd = -1, .in_fd = -1 };
	struct irq com_irq = { .ops = &fz_irq_ops }, kbd_irq = { .ops = &fz_irq_ops };
	struct msi_host msi = { &fz_msi_ops, NULL };
	struct fz f = { data, size };
	struct uart *u = calloc(1, sizeof(*u));
	struct i8042 *k = calloc(1, sizeof(*k));
	struct rtc *r = calloc(1, sizeof(*r));
	struct acpi_pm *pm = calloc(1, sizeof(*pm));
	struct pci_host *h = calloc(1, sizeof(*h));
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	struct dummy *dm = calloc(1, sizeof(*dm));
	uint8_t *ram = calloc(1, RAM_SIZE);
	struct loop *loop = loop_new();
	struct bus pio, mmio;
	struct guest_mem gm;
	int e = 0;

	if (!u || !k || !r || !pm || !h || !rng || !vp || !dm || !ram || !loop)
		abort();
	fz_routes = 0;
	events = 0;
	gm_init_fake(&gm, RAM_GPA, ram, RAM_SIZE);
	if (bus_init(&pio, "pio") < 0 || bus_init(&mmio, "mmio") < 0)
		abort();
	uart_init(u, &com_irq, &out);
	i8042_init(k, &sink, &kbd_irq);
	rtc_init(r, 256ull << 20);
	acpi_pm_init(pm, &sink, 5);
	e = e ?: bus_register(&pio, LAYOUT_PORT_COM1, UART_REG_COUNT, BUS_SZ_1, &uart_ops, u, "uart");
	e = e ?: bus_register(&pio, LAYOUT_PORT_I8042, 1, BUS_SZ_1, &i8042_data_ops, k, "i8042");
	e = e ?: bus_register(&pio, LAYOUT_PORT_I8042 + 4, 1, BUS_SZ_1, &i8042_ctl_ops, k, "i8042");
	e = e ?: bus_register(&pio, LAYOUT_PORT_RTC, 2, BUS_SZ_1, &rtc_ops, r, "rtc");
	e = e ?: bus_register(&pio, LAYOUT_PORT_ACPI_PM, 2, BUS_SZ_1, &acpi_pm_ops, pm, "acpi-pm");
	e = e ?: pci_host_init(h, &pio, &mmio, &sink);
	e = e ?: pci_host_register(h, LAYOUT_ECAM_START);
	rng_init(rng, &gm);
	e = e ?: virtio_pci_init(vp, &rng->vdev, &msi, loop);
	if (e < 0 || pci_host_add(h, &vp->pci, 1) != 1)
		abort();
	pci_dev_init(&dm->pci, 0x1234, 0x5678, 0xff0000, 1, "dummy");
	if (pci_dev_set_bar(&dm->pci, 0, 32, PCI_BAR_IO, &dummy_io_ops, dm) < 0 ||
	    pci_dev_set_bar(&dm->pci, 1, 0x1000, 0, &dummy_mem_ops, dm) < 0 || pci_host_add(h, &dm->pci, 2) != 2)
		abort();

	for (unsigned steps = 0; f.n >= 4 && steps < 1024; steps++) {
		unsigned op = (unsigned)fz_take(&f, 1);
		unsigned where = (unsigned)fz_take(&f, 2);
		unsigned szb = (unsigned)fz_take(&f, 1);
		unsigned sz = sizes[szb & 3];
		uint64_t val = fz_take(&f, 4), v;
		unsigned port = where % 256 < sizeof(ports) / sizeof(ports[0]) ? ports[where % 256] : where;
		uint8_t bytes[8];

		switch (op % 8) {
		case 0:
			bus_write(&pio, port, sz, val);
			break;
		case 1:
			bus_read(&pio, port, sz, &v);
			break;
		case 2: /* ECAM: where picks device/function and register, szb the high bits */
			bus_write(&mmio, LAYOUT_ECAM_START + ((((uint64_t)szb >> 2) << 16 | where) & 0xfffff), sz, val);
			break;
		case 3:
			bus_read(&mmio, LAYOUT_ECAM_START + ((((uint64_t)szb >> 2) << 16 | where) & 0xfffff), sz, &v);
			break;
		case 4: /* wherever a memory BAR may have gone */
			bus_write(&mmio, val << 12 | (where & 0xfff), sz, val);
			break;
		case 5:
			bus_read(&mmio, val << 12 | (where & 0xfff), sz, &v);
			break;
		case 6: /* host input: bytes typed on the serial console and keyboard */
			memcpy(bytes, &val, 4);
			memcpy(bytes + 4, &where, 2);
			if (szb & 1)
				uart_receive(u, bytes, 1 + (szb >> 1) % 6);
			else
				i8042_kbd_input(k, bytes, 1 + (szb >> 1) % 6);
			break;
		case 7:
			loop_run_once(loop, 0);
			break;
		}
		if (u->rx_count > UART_FIFO_SIZE || u->rx_head >= UART_FIFO_SIZE)
			abort();
		if (k->q_len > I8042_QUEUE || k->q_head >= I8042_QUEUE)
			abort();
		if (r->index >= RTC_CMOS_SIZE)
			abort();
		/* The host bridge and the functions keep their identity. */
		if (pci_get16(&h->bridge, PCI_VENDOR_ID) == 0xffff || pci_get16(&dm->pci, PCI_VENDOR_ID) != 0x1234 ||
		    pci_get16(&vp->pci, PCI_VENDOR_ID) != 0x1af4)
			abort();
		check_bars(&vp->pci, &pio, &mmio);
		check_bars(&dm->pci, &pio, &mmio);
	}
	virtio_reset(&rng->vdev);
	virtio_pci_exit(vp);
	pci_host_exit(h);
	uart_exit(u);
	loop_free(loop);
	bus_exit(&pio);
	bus_exit(&mmio);
	free(ram);
	free(dm);
	free(vp);
	free(rng);
	free(h);
	free(pm);
	free(r);
	free(k);
	free(u);
	return 0;
}

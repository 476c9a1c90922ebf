/*
 * The machine's legacy devices (COM1, the i8042, the RTC, the debug-exit
 * port, ACPI PM and the PCI host) in one table that set-up, snapshot save,
 * snapshot load and teardown all walk: a device added here is initialised,
 * saved, loaded and taken down, teardown in the reverse order of set-up.
 * The snapshot sections keep their names, versions and order.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "devices/legacy/acpi_pm.h"
#include "devices/legacy/debug_exit.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/rtc.h"
#include "devices/legacy/uart.h"
#include "machine_priv.h"
#include "mem/layout.h"
#include "pci/pci.h"
#include "snapshot/snap.h"

/*
 * One legacy device. init sets it up and registers its ranges, undoing its
 * own partial work when it fails; exit unregisters them and releases the
 * device. A device without snapshot state has no section.
 */
struct machine_legacy {
	const char *name;
	const char *section;   /* snapshot section, NULL: no state */
	unsigned version;
	int (*init)(struct machine *m);
	void (*exit)(struct machine *m);
	void (*save)(struct machine *m, struct snap_writer *w);
	int (*load)(struct machine *m, struct snap_sec *s);
};

/* Teardown: a range not registered (an init that failed part way) is simply absent. */
static void machine_unregister(struct bus *b, uint64_t base)
{
	(void)bus_unregister(b, base);   /* -ENOENT is fine here: nothing left to remove */
}

/* --- COM1 --- */

static int legacy_uart_init(struct machine *m)
{
	vm_irq_init(&m->vm, &m->com1_irq, LAYOUT_IRQ_COM1);
	uart_init(&m->com1, &m->com1_irq, m->cfg.virtio_console ? NULL : &m->console);
	return bus_register(&m->vm.pio, LAYOUT_PORT_COM1, UART_REG_COUNT, BUS_SZ_1, &uart_ops, &m->com1,
			    "uart-com1");
}

static void legacy_uart_exit(struct machine *m)
{
	machine_unregister(&m->vm.pio, LAYOUT_PORT_COM1);
	uart_exit(&m->com1);
}

static void legacy_uart_save(struct machine *m, struct snap_writer *w)
{
	uart_save(&m->com1, w);
}

static int legacy_uart_load(struct machine *m, struct snap_sec *s)
{
	return uart_load(&m->com1, s);
}

/* --- i8042 --- */

static int legacy_i8042_init(struct machine *m)
{
	int e;

	vm_irq_init(&m->vm, &m->kbd_irq, LAYOUT_IRQ_KBD);
	i8042_init(&m->kbd, &m->sink, &m->kbd_irq);
	e = bus_register(&m->vm.pio, LAYOUT_PORT_I8042, 1, BUS_SZ_1, &i8042_data_ops, &m->kbd, "i8042");
	if (e < 0)
		goto err_exit;
	e = bus_register(&m->vm.pio, LAYOUT_PORT_I8042 + 4, 1, BUS_SZ_1, &i8042_ctl_ops, &m->kbd, "i8042");
	if (e < 0)
		goto err_data;
	return 0;

err_data:
	machine_unregister(&m->vm.pio, LAYOUT_PORT_I8042);
err_exit:
	i8042_exit(&m->kbd);
	return e;
}

static void legacy_i8042_exit(struct machine *m)
{
	machine_unregister(&m->vm.pio, LAYOUT_PORT_I8042 + 4);
	machine_unregister(&m->vm.pio, LAYOUT_PORT_I8042);
	i8042_exit(&m->kbd);
}

static void legacy_i8042_save(struct machine *m, struct snap_writer *w)
{
	i8042_save(&m->kbd, w);
}

static int legacy_i8042_load(struct machine *m, struct snap_sec *s)
{
	return i8042_load(&m->kbd, s);
}

/* --- RTC --- */

static int legacy_rtc_init(struct machine *m)
{
	int e;

	rtc_init(&m->rtc, m->vm.gm.ram_size);
	e = bus_register(&m->vm.pio, LAYOUT_PORT_RTC, 2, BUS_SZ_1, &rtc_ops, &m->rtc, "rtc");
	if (e < 0)
		rtc_exit(&m->rtc);
	return e;
}

static void legacy_rtc_exit(struct machine *m)
{
	machine_unregister(&m->vm.pio, LAYOUT_PORT_RTC);
	rtc_exit(&m->rtc);
}

static void legacy_rtc_save(struct machine *m, struct snap_writer *w)
{
	rtc_save(&m->rtc, w);
}

static int legacy_rtc_load(struct machine *m, struct snap_sec *s)
{
	return rtc_load(&m->rtc, s);
}

/* --- debug exit (no state) --- */

static int legacy_dbg_init(struct machine *m)
{
	m->dbg.sink = m->sink;
	return bus_register(&m->vm.pio, LAYOUT_PORT_DEBUG_EXIT, 1, BUS_SZ_ANY, &debug_exit_ops, &m->dbg,
			    "debug-exit");
}

static void legacy_dbg_exit(struct machine *m)
{
	machine_unregister(&m->vm.pio, LAYOUT_PORT_DEBUG_EXIT);
}

/* --- ACPI PM --- */

static int legacy_pm_init(struct machine *m)
{
	acpi_pm_init(&m->pm, &m->sink, LAYOUT_ACPI_S5_TYPE);
	return bus_register(&m->vm.pio, LAYOUT_PORT_ACPI_PM, 2, BUS_SZ_1, &acpi_pm_ops, &m->pm, "acpi-pm");
}

static void legacy_pm_exit(struct machine *m)
{
	machine_unregister(&m->vm.pio, LAYOUT_PORT_ACPI_PM);
}

static void legacy_pm_save(struct machine *m, struct snap_writer *w)
{
	acpi_pm_save(&m->pm, w);
}

static int legacy_pm_load(struct machine *m, struct snap_sec *s)
{
	return acpi_pm_load(&m->pm, s);
}

/* --- PCI host --- */

static int legacy_pci_init(struct machine *m)
{
	int e = pci_host_init(&m->pci, &m->vm.pio, &m->vm.mmio, &m->sink);

	if (e < 0)
		return e;
	e = pci_host_register(&m->pci, LAYOUT_ECAM_START);
	if (e < 0)
		pci_host_exit(&m->pci);
	return e;
}

static void legacy_pci_exit(struct machine *m)
{
	pci_host_unregister(&m->pci);
	pci_host_exit(&m->pci);
}

static void legacy_pci_save(struct machine *m, struct snap_writer *w)
{
	pci_host_save(&m->pci, w);
}

static int legacy_pci_load(struct machine *m, struct snap_sec *s)
{
	return pci_host_load(&m->pci, s);
}

/* Set-up order; teardown runs it backwards. */
static const struct machine_legacy machine_legacy_devs[] = {
	{ "uart-com1", "uart.com1", UART_SNAP_VERSION, legacy_uart_init, legacy_uart_exit, legacy_uart_save,
	  legacy_uart_load },
	{ "i8042", "i8042", I8042_SNAP_VERSION, legacy_i8042_init, legacy_i8042_exit, legacy_i8042_save,
	  legacy_i8042_load },
	{ "rtc", "rtc", RTC_SNAP_VERSION, legacy_rtc_init, legacy_rtc_exit, legacy_rtc_save, legacy_rtc_load },
	{ "debug-exit", NULL, 0, legacy_dbg_init, legacy_dbg_exit, NULL, NULL },
	{ "acpi-pm", "acpi_pm", ACPI_PM_SNAP_VERSION, legacy_pm_init, legacy_pm_exit, legacy_pm_save,
	  legacy_pm_load },
	{ "pci-host", "pci.host", PCI_HOST_SNAP_VERSION, legacy_pci_init, legacy_pci_exit, legacy_pci_save,
	  legacy_pci_load },
};

#define MACHINE_NLEGACY (sizeof(machine_legacy_devs) / sizeof(machine_legacy_devs[0]))

int machine_legacy_init(struct machine *m, char *err, size_t errlen)
{
	for (size_t i = 0; i < MACHINE_NLEGACY; i++) {
		int e = machine_legacy_devs[i].init(m);

		if (e < 0) {
			snprintf(err, errlen, "registering devices: %s: %s", machine_legacy_devs[i].name,
				 strerror(-e));
			return e;
		}
		m->nlegacy = (unsigned)i + 1;
	}
	return 0;
}

void machine_legacy_exit(struct machine *m)
{
	while (m->nlegacy > 0)
		machine_legacy_devs[--m->nlegacy].exit(m);
}

void machine_legacy_save(struct machine *m, struct snap_writer *w)
{
	for (size_t i = 0; i < MACHINE_NLEGACY; i++) {
		const struct machine_legacy *d = &machine_legacy_devs[i];

		if (!d->section)
			continue;
		snap_begin(w, d->section, d->version);
		d->save(m, w);
		snap_end(w);
	}
}

int machine_legacy_load(struct machine *m, const struct snap_reader *r, char *err, size_t errlen)
{
	for (size_t i = 0; i < MACHINE_NLEGACY; i++) {
		const struct machine_legacy *d = &machine_legacy_devs[i];
		struct snap_sec s;
		int e;

		if (!d->section)
			continue;
		e = snap_find(r, d->section, &s);
		if (e < 0) {
			snprintf(err, errlen, "snapshot has no '%s' section", d->section);
			return e;
		}
		if (s.version != d->version) {
			snprintf(err, errlen, "snapshot section '%s' has version %u; this kestrel reads %u", d->section,
				 s.version, d->version);
			return -EINVAL;
		}
		e = d->load(m, &s);
		e = e < 0 ? e : snap_sec_end(&s);
		if (e < 0) {
			snprintf(err, errlen, "snapshot section '%s' is invalid for this machine", d->section);
			return -EINVAL;
		}
	}
	return 0;
}

size_t machine_legacy_count(void)
{
	return MACHINE_NLEGACY;
}

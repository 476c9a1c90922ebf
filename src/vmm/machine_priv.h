/* The machine's parts, shared by machine.c (boot, run), machine_legacy.c, machine_virtio.c, machine_snap.c. */
#ifndef KESTREL_MACHINE_PRIV_H
#define KESTREL_MACHINE_PRIV_H

#include "util/compiler.h"

#include <stdio.h>

#include "backends/chardev.h"
#include "bus/irq.h"
#include "core/kvm.h"
#include "core/vm.h"
#include "devices/legacy/acpi_pm.h"
#include "devices/legacy/debug_exit.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/rtc.h"
#include "devices/legacy/uart.h"
#include "pci/pci.h"
#include "snapshot/memfile.h"
#include "devices/virtio/console.h"
#include "devices/virtio/rng.h"
#include "loop/iothread.h"
#include "loop/loop.h"
#include "machine.h"
#include "virtio/mmio.h"
#include "virtio/pci.h"

#define MACHINE_MAX_VDEVS 16

/* One virtio device with its I/O thread and transport. */
struct machine_vdev {
	struct virtio_dev *vdev;
	struct iothread io;
	struct virtio_pci *pci;
	struct virtio_mmio *mmio;
	uint64_t mmio_base;
	unsigned gsi;
	void (*free)(void *dev);       /* the device object's destructor */
	void *dev;
};

struct e1000;

/* An emulated e1000 NIC: its own I/O thread for receive, an INTx line. */
struct machine_nic {
	struct e1000 *dev;
	struct iothread io;
	struct irq intx;
};

#define MACHINE_MAX_NICS 4

struct machine {
	struct machine_config cfg;     /* as built (strings owned by the caller) */
	bool console_open, kvm_open, vm_created;
	bool restored;                 /* RAM is a private map of a snapshot memory file */
	/* Snapshot generations (snapshot/memfile.h): of the memory file RAM maps when
	 * restored, and of the last snapshot taken or restored (a Diff's base). */
	uint8_t mem_gen[MEMFILE_GEN_LEN], last_gen[MEMFILE_GEN_LEN];
	bool have_last_gen, last_complete;
	struct kvm kvm;
	struct vm vm;
	struct loop *loop;
	struct chardev console;
	struct uart com1;
	struct irq com1_irq;
	struct irq kbd_irq;
	struct i8042 kbd;
	struct rtc rtc;
	struct debug_exit dbg;
	struct acpi_pm pm;
	struct pci_host pci;
	struct sysevent_sink sink;
	unsigned nlegacy;              /* legacy devices set up (machine_legacy.c), torn down backwards */
	struct msi_host msi;

	struct machine_vdev vdevs[MACHINE_MAX_VDEVS];
	unsigned nvdevs;
	struct virtio_console *vcon;
	struct machine_nic nics[MACHINE_MAX_NICS];
	unsigned nnics;
	/* --metrics */
	int metrics_fd;
	struct loop_timer metrics_timer;
	uint64_t metrics_dropped;   /* lines a FIFO reader had no room for */

	/* kernel command line with the virtio-mmio device list appended */
	char *cmdline;
};

/* machine.c: SIGINT/SIGTERM/SIGHUP blocked and delivered to a signalfd (the main loop's). */
KESTREL_MUST_CHECK int machine_signalfd(void);

/*
 * machine_legacy.c: the legacy devices (COM1, i8042, RTC, debug exit, ACPI PM,
 * PCI host) from one table. Init sets them up in order (m->sink and m->cfg
 * set first) and stops at the first failure with a one-line error; exit
 * takes down, in reverse, those that were set up (none: a no-op). Save
 * writes one section per stateful device; load checks and loads each, 0 or
 * -errno with a one-line error naming the section.
 */
struct snap_writer;
struct snap_reader;
KESTREL_MUST_CHECK int machine_legacy_init(struct machine *m, char *err, size_t errlen);
void machine_legacy_exit(struct machine *m);
void machine_legacy_save(struct machine *m, struct snap_writer *w);
KESTREL_MUST_CHECK int machine_legacy_load(struct machine *m, const struct snap_reader *r, char *err, size_t errlen);
size_t machine_legacy_count(void);   /* the table's length (tests) */

/* machine_virtio.c */
KESTREL_MUST_CHECK int machine_add_virtio_devices(struct machine *m, const struct machine_config *cfg,
		char *err, size_t errlen);
void machine_free_virtio_devices(struct machine *m);
KESTREL_MUST_CHECK int machine_start_iothreads(struct machine *m);
/*
 * Pause (main thread, vCPUs already paused): stop every virtio and e1000 I/O
 * thread, then quiesce each device, so nothing is in flight and every
 * completion is in the used rings / descriptor rings with its interrupt sent.
 * Idempotent. Resume restarts the I/O threads; devices carry on by
 * themselves. 0 or -errno.
 */
void machine_virtio_pause(struct machine *m);
KESTREL_MUST_CHECK int machine_virtio_resume(struct machine *m);
/*
 * Snapshot, paused: one section "vdev.N" per virtio device (its transport,
 * core, device and PCI config state) and one "e1000.N" per e1000 NIC.
 * Restore into the same machine freshly built (I/O threads not started yet):
 * every vdev section is checked first, then the e1000 sections are loaded
 * (each checks itself before it changes anything), then the vdevs applied.
 * 0, or -errno with a one-line error naming the device in err.
 */
struct snap_writer;
struct snap_reader;
void machine_virtio_save(struct machine *m, struct snap_writer *w);
KESTREL_MUST_CHECK int machine_virtio_load(struct machine *m, const struct snap_reader *r, char *err, size_t errlen);
void machine_print_virtio_stats(struct machine *m, FILE *out);

#endif

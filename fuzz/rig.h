/*
 * A small machine for the snapshot-section fuzzer (fuzz_devsnap.c) and the
 * seed generator (seedgen.c): one device under test wired as the machine
 * wires it (src/vmm/machine.c, machine_virtio.c) on its own buses, PCI
 * host and event loop, over 64 KiB of fake guest RAM. Header only, so the
 * two programs build the very same devices.
 */
#ifndef KESTREL_FUZZ_RIG_H
#define KESTREL_FUZZ_RIG_H

#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "backends/chardev.h"
#include "backends/net.h"
#include "devices/e1000.h"
#include "devices/legacy/acpi_pm.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/rtc.h"
#include "devices/legacy/uart.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/console.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "loop/loop.h"
#include "mem/layout.h"
#include "pci/pci.h"
#include "snapshot/snap.h"
#include "virtio/mmio.h"
#include "virtio/pci.h"
#include "mem/gm_test.h"

#define RIG_RAM_GPA   0x100000ull
#define RIG_RAM_SIZE  0x10000ull
#define RIG_MMIO_BASE 0xd0000000ull
#define RIG_BAR0      0xc0000000ull   /* virtio-pci BAR0 / e1000 BAR0 */
#define RIG_BAR2      0xc0010000ull   /* virtio-pci BAR2 (MSI-X) */
#define RIG_IOBAR     0xc000          /* e1000 BAR1 (I/O) */
#define RIG_SLOT      1

enum rig_kind {
	RIG_UART, RIG_I8042, RIG_RTC, RIG_ACPI_PM, RIG_PCI_HOST,
	RIG_VPCI_RNG, RIG_VMMIO_CONSOLE, RIG_VPCI_BLK, RIG_VPCI_NET, RIG_VMMIO_NET, RIG_E1000,
	RIG_KINDS
};

static const char *const rig_names[RIG_KINDS] __attribute__((unused)) = {
	"uart", "i8042", "rtc", "acpi_pm", "pci_host",
	"vpci_rng", "vmmio_console", "vpci_blk", "vpci_net", "vmmio_net", "e1000",
};

/* A backend that drops what is sent and never has a frame to receive. */
struct rig_nb {
	struct net_backend be;
	uint64_t sink;
};

static inline ssize_t rig_nb_send(struct net_backend *be, const struct iovec *iov, int iovcnt)
{
	struct rig_nb *n = (struct rig_nb *)be;
	size_t len = 0;

	for (int i = 0; i < iovcnt; i++) {
		for (size_t j = 0; j < iov[i].iov_len; j++)
			n->sink += ((const uint8_t *)iov[i].iov_base)[j];
		len += iov[i].iov_len;
	}
	return (ssize_t)len;
}

static inline ssize_t rig_nb_recv(struct net_backend *be, void *buf, size_t cap)
{
	return -EAGAIN;
}

static inline void rig_nb_free(struct net_backend *be)
{
	close(be->fd);
	free(be);
}

static const struct net_backend_ops rig_nb_ops __attribute__((unused)) = {
	.send = rig_nb_send, .recv = rig_nb_recv, .free = rig_nb_free,
};

static inline struct net_backend *rig_nb_new(void)
{
	struct rig_nb *n = calloc(1, sizeof(*n));

	if (!n)
		abort();
	n->be.ops = &rig_nb_ops;
	n->be.kind = "fuzz";
	n->be.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->be.fd < 0)
		abort();
	return &n->be;
}

static inline void rig_cd_write(struct chardev *cd, const uint8_t *buf, size_t len)
{
	volatile uint8_t s = 0;

	for (size_t i = 0; i < len; i++)
		s ^= buf[i];
	(void)s;
}

static const struct chardev_ops rig_cd_ops __attribute__((unused)) = { rig_cd_write };

struct rig {
	enum rig_kind kind;
	struct bus pio, mmio;
	struct pci_host host;
	struct loop *loop;
	uint8_t *ram;
	struct guest_mem gm;
	struct msi_host msi;
	struct irq line;
	struct chardev out;

	struct uart uart;
	struct i8042 kbd;
	struct rtc rtc;
	struct acpi_pm pm;
	struct virtio_rng rng;
	struct virtio_console con;
	struct virtio_blk *blk;
	struct virtio_net *net;
	struct e1000 *e1000;
	struct virtio_dev *vdev;     /* the virtio device, if the kind has one */
	struct virtio_pci vp;
	struct virtio_mmio vm;
	bool on_pci, on_mmio;
};

/* The block device's image: a memfd, opened by path as --drive would. */
static inline const char *rig_blk_image(void)
{
	static char path[64];

	if (!path[0]) {
		int fd = memfd_create("kestrel-fuzz-rig", MFD_CLOEXEC);

		if (fd < 0 || ftruncate(fd, 64 << 10) < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	return path;
}

static inline void rig_init(struct rig *r, enum rig_kind kind)
{
	char err[256];
	int e = 0;

	memset(r, 0, sizeof(*r));
	r->kind = kind;
	fz_routes = 0;
	r->ram = calloc(1, RIG_RAM_SIZE);
	r->loop = loop_new();
	if (!r->ram || !r->loop)
		abort();
	gm_init_fake(&r->gm, RIG_RAM_GPA, r->ram, RIG_RAM_SIZE);
	if (bus_init(&r->pio, "pio") < 0 || bus_init(&r->mmio, "mmio") < 0)
		abort();
	r->msi = (struct msi_host){ &fz_msi_ops, NULL };
	r->line = (struct irq){ .ops = &fz_irq_ops };
	r->out = (struct chardev){ .ops = &rig_cd_ops, .out_fd = -1, .in_fd = -1 };
	e = pci_host_init(&r->host, &r->pio, &r->mmio, NULL);
	e = e ?: pci_host_register(&r->host, LAYOUT_ECAM_START);

	switch (kind) {
	case RIG_UART:
		uart_init(&r->uart, &r->line, &r->out);
		e = e ?: bus_register(&r->pio, LAYOUT_PORT_COM1, UART_REG_COUNT, BUS_SZ_1, &uart_ops, &r->uart, "uart");
		break;
	case RIG_I8042:
		i8042_init(&r->kbd, NULL, &r->line);
		e = e ?: bus_register(&r->pio, LAYOUT_PORT_I8042, 1, BUS_SZ_1, &i8042_data_ops, &r->kbd, "i8042");
		e = e ?: bus_register(&r->pio, LAYOUT_PORT_I8042 + 4, 1, BUS_SZ_1, &i8042_ctl_ops, &r->kbd, "i8042");
		break;
	case RIG_RTC:
		rtc_init(&r->rtc, 256ull << 20);
		e = e ?: bus_register(&r->pio, LAYOUT_PORT_RTC, 2, BUS_SZ_1, &rtc_ops, &r->rtc, "rtc");
		break;
	case RIG_ACPI_PM:
		acpi_pm_init(&r->pm, NULL, 5);
		e = e ?: bus_register(&r->pio, LAYOUT_PORT_ACPI_PM, 2, BUS_SZ_1, &acpi_pm_ops, &r->pm, "acpi-pm");
		break;
	case RIG_PCI_HOST:
		break;
	case RIG_VPCI_RNG:
		rng_init(&r->rng, &r->gm);
		r->vdev = &r->rng.vdev;
		r->on_pci = true;
		break;
	case RIG_VMMIO_CONSOLE:
		vcon_init(&r->con, &r->gm, &r->out);
		e = e ?: vcon_attach(&r->con, r->loop);
		r->vdev = &r->con.vdev;
		r->on_mmio = true;
		break;
	case RIG_VPCI_BLK: {
		struct blk_config cfg;

		blk_config_init(&cfg);
		snprintf(cfg.path, sizeof(cfg.path), "%s", rig_blk_image());
		cfg.engine = BLOCK_ENGINE_SYNC;
		cfg.queue_size = 64;
		if (blk_new(&r->blk, &cfg, &r->gm, err, sizeof(err)) < 0) {
			fprintf(stderr, "rig: %s\n", err);
			abort();
		}
		e = e ?: blk_attach(r->blk, r->loop);
		r->vdev = blk_virtio(r->blk);
		r->on_pci = true;
		break;
	}
	case RIG_VPCI_NET:
	case RIG_VMMIO_NET: {
		struct vnet_config cfg = { .mac = { 0x52, 0x54, 0, 1, 2, 3 }, .queue_size = 64 };

		cfg.custom = rig_nb_new();
		if (vnet_new(&r->net, &cfg, &r->gm, err, sizeof(err)) < 0) {
			fprintf(stderr, "rig: %s\n", err);
			abort();
		}
		e = e ?: vnet_attach(r->net, r->loop);
		r->vdev = vnet_virtio(r->net);
		r->on_pci = kind == RIG_VPCI_NET;
		r->on_mmio = kind == RIG_VMMIO_NET;
		break;
	}
	case RIG_E1000: {
		struct e1000_config cfg = { .mac = { 0x52, 0x54, 0, 4, 5, 6 } };

		cfg.backend = rig_nb_new();
		if (e1000_new(&r->e1000, &cfg, &r->gm, &r->msi, err, sizeof(err)) < 0) {
			fprintf(stderr, "rig: %s\n", err);
			abort();
		}
		if (pci_host_add(&r->host, e1000_pci(r->e1000), 1) != RIG_SLOT)
			abort();
		e1000_set_irq(r->e1000, &r->line);
		e = e ?: e1000_attach(r->e1000, r->loop);
		break;
	}
	default:
		abort();
	}
	if (r->on_pci) {
		e = e ?: virtio_pci_init(&r->vp, r->vdev, &r->msi, r->loop);
		if (!e && pci_host_add(&r->host, &r->vp.pci, 1) != RIG_SLOT)
			abort();
		r->vp.intx = r->line;
	}
	if (r->on_mmio) {
		e = e ?: virtio_mmio_init(&r->vm, r->vdev, &r->msi, r->loop, RIG_MMIO_BASE);
		r->vm.irq = r->line;
		e = e ?: bus_register(&r->mmio, RIG_MMIO_BASE, VMMIO_SIZE, BUS_SZ_ANY, &virtio_mmio_ops, &r->vm,
				      "virtio-mmio");
	}
	if (e < 0) {
		fprintf(stderr, "rig: %s: setup failed (%d)\n", rig_names[kind], e);
		abort();
	}
}

static inline void rig_exit(struct rig *r)
{
	if (r->vdev)
		virtio_reset(r->vdev);
	if (r->on_pci)
		virtio_pci_exit(&r->vp);
	if (r->on_mmio)
		virtio_mmio_exit(&r->vm);
	switch (r->kind) {
	case RIG_UART: uart_exit(&r->uart); break;
	case RIG_VMMIO_CONSOLE: vcon_detach(&r->con); vcon_exit(&r->con); break;
	case RIG_VPCI_BLK:
		blk_free(r->blk);   /* detaches too */
		break;
	case RIG_VPCI_NET: case RIG_VMMIO_NET: vnet_free(r->net); break;
	case RIG_E1000: e1000_free(r->e1000); break;
	default: break;
	}
	loop_free(r->loop);
	pci_host_exit(&r->host);
	bus_exit(&r->pio);
	bus_exit(&r->mmio);
	free(r->ram);
}

/* The device's section payload, as the machine writes it (machine_snap.c, machine_virtio.c). */
static inline void rig_save(struct rig *r, struct snap_writer *w)
{
	switch (r->kind) {
	case RIG_UART: uart_save(&r->uart, w); break;
	case RIG_I8042: i8042_save(&r->kbd, w); break;
	case RIG_RTC: rtc_save(&r->rtc, w); break;
	case RIG_ACPI_PM: acpi_pm_save(&r->pm, w); break;
	case RIG_PCI_HOST: pci_host_save(&r->host, w); break;
	case RIG_E1000: e1000_quiesce(r->e1000); e1000_save(r->e1000, w); break;
	default:
		virtio_dev_quiesce(r->vdev);
		if (r->on_pci)
			virtio_pci_save(&r->vp, w);
		else
			virtio_mmio_save(&r->vm, w);
		break;
	}
}

/* The section versions the machine checks before calling a loader. */
static inline uint32_t rig_version(enum rig_kind kind)
{
	switch (kind) {
	case RIG_UART: return UART_SNAP_VERSION;
	case RIG_I8042: return I8042_SNAP_VERSION;
	case RIG_RTC: return RTC_SNAP_VERSION;
	case RIG_ACPI_PM: return ACPI_PM_SNAP_VERSION;
	case RIG_PCI_HOST: return PCI_HOST_SNAP_VERSION;
	case RIG_E1000: return E1000_SNAP_VERSION;
	default: return 1;
	}
}

/* Load a section payload the way the machine does: 0, or < 0 when refused. */
static inline int rig_load(struct rig *r, struct snap_sec *s)
{
	char err[256] = "";
	int e;

	switch (r->kind) {
	case RIG_UART: e = uart_load(&r->uart, s); break;
	case RIG_I8042: e = i8042_load(&r->kbd, s); break;
	case RIG_RTC: e = rtc_load(&r->rtc, s); break;
	case RIG_ACPI_PM: e = acpi_pm_load(&r->pm, s); break;
	case RIG_PCI_HOST: e = pci_host_load(&r->host, s); break;
	case RIG_E1000: e = e1000_load(r->e1000, s); break;
	default: {
		struct snap_sec again = *s;
		struct snap_writer before, after;

		/* Check first, then apply (machine_virtio_load); a check must not change the device. */
		snap_writer_init(&before);
		rig_save(r, &before);
		e = r->on_pci ? virtio_pci_load(&r->vp, s, false, err, sizeof(err))
			      : virtio_mmio_load(&r->vm, s, false, err, sizeof(err));
		snap_writer_init(&after);
		rig_save(r, &after);
		if (before.oom || after.oom || before.len != after.len || memcmp(before.buf, after.buf, before.len)) {
			fprintf(stderr, "rig: %s: checking a state changed the device\n", rig_names[r->kind]);
			abort();
		}
		snap_writer_free(&before);
		snap_writer_free(&after);
		if (e == 0) {
			*s = again;
			e = r->on_pci ? virtio_pci_load(&r->vp, s, true, err, sizeof(err))
				      : virtio_mmio_load(&r->vm, s, true, err, sizeof(err));
			if (e < 0) {
				fprintf(stderr, "rig: the check passed, the apply refused: %s\n", err);
				abort();
			}
		}
		if (e < 0 && (!err[0] || strchr(err, '\n')))
			abort();   /* a refusal comes with a one-line reason */
		break;
	}
	}
	if (e == 0 && snap_sec_end(s) < 0)
		e = -EINVAL;
	return e;
}

#endif

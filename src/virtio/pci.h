/*
 * virtio-pci, modern interface (Virtio 1.2 section 4.1): vendor capabilities
 * for the common, notify, ISR and device configuration structures in BAR 0,
 * an MSI-X table and PBA in BAR 2 routed through KVM GSI routes and irqfds,
 * queue notifications through ioeventfds, and INTx as the fallback.
 */
#ifndef KESTREL_VIRTIO_PCI_H
#define KESTREL_VIRTIO_PCI_H

#include "util/compiler.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus/irq.h"
#include "pci/pci.h"
#include "loop/loop.h"
#include "virtio/virtio.h"

#define VPCI_MAX_VECTORS (VIRTIO_MAX_QUEUES + 1)
#define VPCI_NO_VECTOR   0xffff

/* BAR 0 layout. */
#define VPCI_COMMON_OFF  0x0000
#define VPCI_ISR_OFF     0x1000
#define VPCI_DEVICE_OFF  0x2000
#define VPCI_NOTIFY_OFF  0x3000
#define VPCI_NOTIFY_MULT 4
#define VPCI_BAR0_SIZE   0x4000
/* BAR 2 layout. */
#define VPCI_MSIX_TABLE_OFF 0x0000
#define VPCI_MSIX_PBA_OFF   0x0800
#define VPCI_BAR2_SIZE      0x1000

struct vpci_msix_entry {
	uint32_t addr_lo, addr_hi, data, ctrl;
};

struct virtio_pci;

struct vpci_kick_ctx {
	struct virtio_pci *vp;
	unsigned q;
};

struct virtio_pci {
	struct pci_dev pci;
	struct virtio_dev *vdev;
	const struct msi_host *msi;
	struct loop *loop;              /* the device's I/O thread: kicks are read there */
	struct irq intx;                /* set up by the machine once the slot is known */
	pthread_mutex_t lock;

	uint32_t dfselect, gfselect;
	uint16_t queue_select;
	uint16_t config_vector;
	uint8_t isr;

	/* MSI-X */
	unsigned nvectors;
	bool msix_enabled, msix_masked;
	struct vpci_msix_entry table[VPCI_MAX_VECTORS];
	uint64_t pending[(VPCI_MAX_VECTORS + 63) / 64];
	int vec_gsi[VPCI_MAX_VECTORS];  /* -1: no route yet */
	int vec_fd[VPCI_MAX_VECTORS];

	/* Queue notifications */
	int kick_fd[VIRTIO_MAX_QUEUES];
	struct vpci_kick_ctx kick_ctx[VIRTIO_MAX_QUEUES];
	bool kicks_on_ioeventfd;
	uint64_t bar0_addr;
	struct log_ratelimit rl;
};

KESTREL_MUST_CHECK int virtio_pci_init(struct virtio_pci *vp, struct virtio_dev *vdev, const struct msi_host *msi,
		    struct loop *loop);
void virtio_pci_exit(struct virtio_pci *vp);

/*
 * Snapshot of a virtio-pci function, into the section the caller opened:
 * transport registers (feature selectors, queue select, config vector, ISR),
 * the MSI-X table and PBA, the virtio core (virtio_dev_save), the device's
 * own state (its save op) and last the PCI configuration space
 * (pci_dev_save). Take it paused: device I/O threads stopped, devices
 * quiesced.
 */
#define VPCI_SNAP_VERSION 1
struct snap_writer;
struct snap_sec;
void virtio_pci_save(const struct virtio_pci *vp, struct snap_writer *w);
/*
 * apply false: check everything against this function (vector numbers, ISR
 * bits, MSI-X control bits, the core, the device's state, the read-only
 * bits of the config space) and change nothing. apply true: the same
 * checks, then the core and device state, the config space
 * (pci_dev_load_apply: BARs re-decoded, the notify ioeventfds registered
 * through bar_remap), the registers; then the host side: an MSI route and
 * irqfd for every unmasked vector while MSI-X is on, the INTx level from
 * the ISR, the device restarted if the driver had reached DRIVER_OK
 * (virtio_dev_restored) and one kick queued for every enabled queue, so
 * that buffers made available before the snapshot are seen once the I/O
 * thread runs. The caller then calls snap_sec_end(). 0, or -EINVAL / -errno
 * with a one-line reason in err; after a failed check nothing has changed.
 */
KESTREL_MUST_CHECK int virtio_pci_load(struct virtio_pci *vp, struct snap_sec *s, bool apply, char *err, size_t errlen);

#endif

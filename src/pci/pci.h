/*
 * Conventional PCI on bus 0: the host bridge, configuration mechanism #1
 * (0xCF8/0xCFC), a PCIe ECAM window, config-space write masks, BAR sizing
 * and decoding onto the PIO/MMIO buses, and capability lists.
 */
#ifndef KESTREL_PCI_H
#define KESTREL_PCI_H

#include "util/compiler.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus/bus.h"
#include "devices/sysevent.h"

#define PCI_CFG_SIZE     4096   /* PCIe extended config space through ECAM */
#define PCI_MAX_SLOTS    32
#define PCI_NUM_BARS     6

#define PCI_VENDOR_ID    0x00
#define PCI_DEVICE_ID    0x02
#define PCI_COMMAND      0x04
#define PCI_STATUS       0x06
#define PCI_REVISION     0x08
#define PCI_CLASS_PROG   0x09
#define PCI_CACHE_LINE   0x0c
#define PCI_LATENCY      0x0d
#define PCI_HEADER_TYPE  0x0e
#define PCI_BAR0         0x10
#define PCI_SUBSYS_VENDOR 0x2c
#define PCI_SUBSYS_ID    0x2e
#define PCI_ROM          0x30
#define PCI_CAP_PTR      0x34
#define PCI_INT_LINE     0x3c
#define PCI_INT_PIN      0x3d

#define PCI_CMD_IO       0x0001
#define PCI_CMD_MEM      0x0002
#define PCI_CMD_MASTER   0x0004
#define PCI_CMD_INTX_OFF 0x0400
#define PCI_STATUS_CAPS  0x0010
#define PCI_STATUS_INTX  0x0008

#define PCI_BAR_IO       0x1
#define PCI_BAR_MEM64    0x4
#define PCI_BAR_PREFETCH 0x8

#define PCI_SNAP_VERSION      1   /* pci_dev_save: one function's config space */
#define PCI_HOST_SNAP_VERSION 1   /* pci_host_save: CONFIG_ADDRESS and the host bridge */

struct pci_dev;
struct snap_writer;
struct snap_sec;

struct pci_bar {
	uint64_t size;              /* 0: unused; power of two */
	unsigned flags;             /* PCI_BAR_IO / MEM64 / PREFETCH */
	const struct bus_dev_ops *ops;
	void *opaque;
	uint64_t mapped_at;         /* where it is on the bus now */
	bool mapped;
};

struct pci_dev_ops {
	/* After a config write landed in cfg[] (masks applied). Optional. */
	void (*cfg_write)(struct pci_dev *d, unsigned off, unsigned size, uint32_t value);
	/* Before a config read, to refresh live fields. Optional. */
	void (*cfg_read)(struct pci_dev *d, unsigned off, unsigned size);
	/* A BAR was mapped at addr, or unmapped (mapped false). Optional; for ioeventfds. */
	void (*bar_remap)(struct pci_dev *d, unsigned bar, uint64_t addr, bool mapped);
};

struct pci_dev {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];
	struct pci_bar bars[PCI_NUM_BARS];
	const struct pci_dev_ops *ops;
	void *opaque;
	const char *name;
	unsigned slot;
	uint8_t next_cap;           /* where the next capability goes */
	struct pci_host *host;
};

struct pci_host {
	pthread_mutex_t lock;
	uint32_t conf_addr;
	struct pci_dev *slots[PCI_MAX_SLOTS];
	struct pci_dev bridge;
	struct bus *pio, *mmio;
	struct sysevent_sink sink;  /* 0xCF9 reset control */
	struct log_ratelimit rl;
	uint64_t ecam_base;         /* where pci_host_register() put the ECAM window */
	bool registered;
};

KESTREL_MUST_CHECK int pci_host_init(struct pci_host *h, struct bus *pio, struct bus *mmio,
		const struct sysevent_sink *sink);
void pci_host_exit(struct pci_host *h);

/*
 * Register the host's PIO ports and ECAM window on its buses; on failure
 * nothing stays registered. Unregister takes them off again (a no-op when
 * not registered).
 */
KESTREL_MUST_CHECK int pci_host_register(struct pci_host *h, uint64_t ecam_base);
void pci_host_unregister(struct pci_host *h);

void pci_dev_init(struct pci_dev *d, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint8_t revision, const char *name);
/* Place a device in the first free slot (1..31); returns the slot or -ENOSPC. */
KESTREL_MUST_CHECK int pci_host_add(struct pci_host *h, struct pci_dev *d, uint8_t int_pin);

/* Declare BAR `idx` (a 64-bit BAR also takes idx+1). size: power of two. */
KESTREL_MUST_CHECK int pci_dev_set_bar(struct pci_dev *d, unsigned idx, uint64_t size, unsigned flags,
		    const struct bus_dev_ops *ops, void *opaque);
/* Append a capability of `len` bytes with id `cap_id`; returns its offset or -ENOSPC. */
KESTREL_MUST_CHECK int pci_dev_add_cap(struct pci_dev *d, uint8_t cap_id, unsigned len);

/* Config accesses by (slot, offset); used by both mechanisms and unit tests. */
uint32_t pci_host_cfg_read(struct pci_host *h, unsigned bus, unsigned slot, unsigned fn,
			   unsigned off, unsigned size);
void pci_host_cfg_write(struct pci_host *h, unsigned bus, unsigned slot, unsigned fn,
			unsigned off, unsigned size, uint32_t value);

/*
 * Snapshot of one function: its whole config space (PCI_CFG_SIZE bytes).
 * wmask, BAR sizes/ops and the capability layout are not state: the
 * restoring process builds the same device, and load insists that every
 * bit the guest cannot write (wmask 0: ids, class, header type, BAR type
 * bits, capability ids and chain, ...) equals the constructed device's,
 * else it refuses with a one-line error ("PCI 00:03.0 (e1000): device
 * 8086:100e, snapshot has 1af4:1042").
 *
 * pci_dev_load = pci_dev_load_check + pci_dev_load_apply. Apply copies the
 * config space in and re-decodes the BARs against the restored COMMAND
 * register and BAR addresses, exactly as a guest config write would: a BAR
 * mapped elsewhere is unmapped (ops->bar_remap(d, i, old, false)); an
 * enabled BAR with a non-zero address is registered on the PIO/MMIO bus
 * and ops->bar_remap(d, i, addr, true) runs (under the host lock, as for a
 * config write). ops->cfg_write is NOT called: a device that caches config
 * state (MSI/MSI-X enable, bus master) re-derives it in its own load, which
 * must therefore run after pci_dev_load. A device not yet on a host only
 * gets its cfg[] copied. Meant for a freshly built machine with nothing
 * mapped yet; a BAR whose address is still taken by another range stays
 * unmapped (logged), as it would on the running machine.
 */
struct pci_dev_snap {
	uint8_t cfg[PCI_CFG_SIZE];
};

void pci_dev_save(const struct pci_dev *d, struct snap_writer *w);
KESTREL_MUST_CHECK int pci_dev_load(struct pci_dev *d, struct snap_sec *s);
/* Read and check only (d unchanged); 0 or -EINVAL with s->err set. */
KESTREL_MUST_CHECK int pci_dev_load_check(const struct pci_dev *d, struct snap_sec *s, struct pci_dev_snap *out);
void pci_dev_load_apply(struct pci_dev *d, const struct pci_dev_snap *snap);

/*
 * The host's own state: CONFIG_ADDRESS (0xCF8) and the host bridge's config
 * space. Devices in the slots are saved by their own functions.
 */
void pci_host_save(const struct pci_host *h, struct snap_writer *w);
KESTREL_MUST_CHECK int pci_host_load(struct pci_host *h, struct snap_sec *s);

extern const struct bus_dev_ops pci_conf_addr_ops;  /* 0xCF8..0xCFB */
extern const struct bus_dev_ops pci_conf_data_ops;  /* 0xCFC..0xCFF */
extern const struct bus_dev_ops pci_ecam_ops;

static inline uint16_t pci_get16(const struct pci_dev *d, unsigned off)
{
	return (uint16_t)(d->cfg[off] | d->cfg[off + 1] << 8);
}

static inline uint32_t pci_get32(const struct pci_dev *d, unsigned off)
{
	return (uint32_t)d->cfg[off] | (uint32_t)d->cfg[off + 1] << 8 |
	       (uint32_t)d->cfg[off + 2] << 16 | (uint32_t)d->cfg[off + 3] << 24;
}

static inline void pci_set16(struct pci_dev *d, unsigned off, uint16_t v)
{
	d->cfg[off] = (uint8_t)v;
	d->cfg[off + 1] = (uint8_t)(v >> 8);
}

static inline void pci_set32(struct pci_dev *d, unsigned off, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		d->cfg[off + i] = (uint8_t)(v >> (8 * i));
}

#endif

/*
 * Intel 82540EM gigabit Ethernet controller (PCI 8086:100E), the NIC Linux's
 * stock e1000 driver drives: BAR0 memory-mapped registers, BAR1 I/O window
 * (IOADDR/IODATA), a 64-word Microwire EEPROM, an M88E1011 PHY behind MDIC,
 * legacy and extended (context + data, TSO/checksum offload) transmit
 * descriptors, legacy receive descriptors, INTx or MSI with ITR throttling.
 *
 * It is the emulated counterpart to virtio-net: every register access is a
 * VM exit, which is the point of having it.
 *
 * Threading: register accesses come from vCPU threads. Frames move on the
 * I/O thread whose loop the device is attached to (e1000_attach), the
 * only thread that calls the network backend. Without a loop (unit tests,
 * fuzzing) transmit runs inside the TDT write and receive in e1000_poll().
 */
#ifndef KESTREL_E1000_H
#define KESTREL_E1000_H

#include "util/compiler.h"

#include <stddef.h>
#include <stdint.h>

#include "backends/net.h"
#include "bus/irq.h"
#include "pci/pci.h"
#include "mem/gm.h"

#define E1000_VENDOR_ID     0x8086
#define E1000_DEVICE_ID     0x100e      /* 82540EM desktop */
#define E1000_SUBSYS_ID     0x001e
#define E1000_CLASS         0x020000    /* Ethernet controller */
#define E1000_MMIO_SIZE     0x20000     /* BAR0: 128 KiB of registers */
#define E1000_IO_SIZE       64          /* BAR1: IOADDR / IODATA */
#define E1000_SNAP_VERSION  1

struct e1000;
struct loop;
struct snap_writer;
struct snap_sec;

struct e1000_config {
	uint8_t mac[6];
	/* The backend e1000_new() opens; the device owns it and frees it in e1000_free(). */
	struct net_backend_spec net;
	/*
	 * Tests and fuzzers: an already-open backend to use instead of `net`.
	 * e1000_new() takes it over in every case: the device frees it in
	 * e1000_free(), or at once when e1000_new() fails.
	 */
	struct net_backend *backend;
};

/* Counters, for metrics and tests. */
struct e1000_stats {
	uint64_t mmio_exits;       /* BAR0 register accesses */
	uint64_t pio_exits;        /* BAR1 IOADDR/IODATA accesses */
	uint64_t tdt_writes;       /* transmit doorbells */
	uint64_t rdt_writes;
	uint64_t irqs;             /* interrupts raised: INTx assertions and MSI messages */
	uint64_t irqs_throttled;   /* of those, how many ITR held back for a while */
	uint64_t tx_packets;       /* frames handed to the backend (TSO: per segment) */
	uint64_t tx_bytes;
	uint64_t tx_tso;           /* TSO super-frames segmented */
	uint64_t tx_dropped;       /* malformed, oversized, unreadable or refused */
	uint64_t rx_packets;       /* frames delivered to the guest */
	uint64_t rx_bytes;
	uint64_t rx_filtered;      /* not addressed to us (address/VLAN filters) */
	uint64_t rx_dropped;       /* could never fit, bad buffer address, receiver off */
	uint64_t rx_no_desc;       /* times receive stalled for want of descriptors */
	uint64_t backend_dropped;  /* frames the backend itself dropped */
};

/*
 * Create the device: open its backend, PCI identity, BARs, MSI capability,
 * EEPROM holding cfg->mac. msi may be NULL (no MSI capability then). 0 or -errno with a
 * one-line reason in err.
 */
KESTREL_MUST_CHECK int e1000_new(struct e1000 **out, const struct e1000_config *cfg, const struct guest_mem *gm,
	      const struct msi_host *msi, char *err, size_t errlen);
/*
 * Frees the backend too. Still attached, it detaches first, which touches
 * the loop: the loop must still exist then (see e1000_detach). NULL: no-op.
 */
void e1000_free(struct e1000 *e);

/* The PCI function, for pci_host_add(). */
struct pci_dev *e1000_pci(struct e1000 *e);

/*
 * The INTx line of the slot the device was placed in (the machine makes it
 * after pci_host_add: GSI LAYOUT_PCI_IRQ(slot, 0) for INTA#). NULL: none.
 */
void e1000_set_irq(struct e1000 *e, struct irq *intx);

/*
 * Join the I/O thread's loop: register the backend's fds there, post
 * transmit/receive work and run the ITR timer on it. Frames move on this
 * loop's thread from now on. 0 or -errno (-EBUSY: attached).
 */
KESTREL_MUST_CHECK int e1000_attach(struct e1000 *e, struct loop *l);
/*
 * Call with that loop stopped (its thread joined) but not yet freed, or
 * from the loop's own thread: it removes the device's fds from the loop.
 */
void e1000_detach(struct e1000 *e);

/* No loop attached: do the receive (and any waiting transmit) work now. */
void e1000_poll(struct e1000 *e);

void e1000_get_stats(struct e1000 *e, struct e1000_stats *st);

/*
 * Pause: call on the main thread with the vCPUs paused and the device's I/O
 * thread stopped (joined), before saving any state (KVM's included: the
 * interrupts this raises must be in it). It does the transmit work the I/O
 * thread had pending: walks TDH up to TDT (when TCTL.EN and bus mastering
 * allow), sends what it gathers, writes descriptors back and raises TXDW/
 * TXQE, and delivers an ITR-deferred interrupt that is due. Afterwards no
 * ring work is pending and nothing is in flight; what cannot move now (a
 * frame the backend refused with EAGAIN, a frame gathered up to a TDT in
 * mid-packet, a received frame waiting for descriptors) stays in the device
 * and is part of e1000_save. Receive is not pumped: the backend keeps its
 * queue. Doing it on the main thread is safe: the I/O thread is the only
 * other user of the backend and it is stopped.
 */
void e1000_quiesce(struct e1000 *e);
/* After the I/O thread runs again: have it look at both rings and the backend. */
void e1000_resume_work(struct e1000 *e);

/*
 * Snapshot, after e1000_quiesce. One section holds everything, the PCI
 * function's config space first (pci_dev_save format: do not save
 * e1000_pci() separately): the MAC register file (statistics included),
 * PHY registers, EEPROM, the EECD bit-bang state, ICR/IMS line state, ITR
 * deferral (as time remaining / time since the last interrupt), IOADDR, both
 * transmit contexts, a partly gathered or backend-refused transmit frame and
 * a received frame waiting for descriptors. Host counters (e1000_stats)
 * are not state.
 *
 * Load validates the whole section (PCI part included) before it changes
 * anything (0 or -EINVAL, one-line reason logged, device untouched). Then it
 * applies the config space (BARs mapped at the restored addresses), re-derives
 * bus mastering, INTx disable and MSI from it (MSI enabled: a GSI route is
 * allocated, programmed and bound to the MSI irqfd; no message is sent for
 * an interrupt already asserted, it is in the saved LAPIC state), drives the
 * INTx line to the restored level, re-arms the ITR timer, and schedules
 * transmit/receive work for the I/O thread (runs once the thread starts).
 */
void e1000_save(const struct e1000 *e, struct snap_writer *w);
KESTREL_MUST_CHECK int e1000_load(struct e1000 *e, struct snap_sec *s);

#endif

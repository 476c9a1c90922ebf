/* SPDX-License-Identifier: MIT */
/*
 * Virtio over PCI, modern interface only (Virtio 1.2 section 4.1), and split
 * virtqueues (section 2.7), for polled test-guest drivers: no interrupts are
 * set up (MSI-X is enabled with every vector at NO_VECTOR, so the device
 * sends nothing), the driver watches the used ring instead.
 *
 * Like pci.c, all of it works at CPL3.
 */
#ifndef KESTREL_GUEST_VIRTIO_H
#define KESTREL_GUEST_VIRTIO_H

#include "pci.h"

#define VIRTIO_PCI_VENDOR 0x1af4

/* Device status (2.1). */
#define VIRTIO_S_ACKNOWLEDGE 1
#define VIRTIO_S_DRIVER      2
#define VIRTIO_S_DRIVER_OK   4
#define VIRTIO_S_FEATURES_OK 8
#define VIRTIO_S_NEEDS_RESET 64
#define VIRTIO_S_FAILED      128

/* Reserved feature bits (6). */
#define VIRTIO_F_EVENT_IDX   29
#define VIRTIO_F_VERSION_1   32

#define VIRTIO_NO_VECTOR 0xffff

/* Split virtqueue (2.7). */
#define VIRTQ_DESC_F_NEXT  1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
_Static_assert(sizeof(struct virtq_desc) == 16, "virtq_desc layout");

struct virtq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[]; /* queue size entries, then used_event */
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct virtq_used_elem ring[]; /* queue size entries, then avail_event */
};

/* A modern virtio-pci function, its structures located through the vendor
 * capabilities and its memory BARs mapped. */
struct virtio_pci {
	unsigned bdf;
	uint64_t common;      /* struct virtio_pci_common_cfg */
	uint64_t isr;
	uint64_t device;      /* device-specific configuration */
	uint32_t device_len;
	uint64_t notify;      /* notify capability base */
	uint32_t notify_mult; /* notify_off_multiplier */
	unsigned msix_cap;    /* 0: none */
	struct pci_bar bars[PCI_NUM_BARS];
};

struct virtq {
	uint16_t size;
	uint16_t index;
	struct virtq_desc *desc;
	struct virtq_avail *avail;
	struct virtq_used *used;
	uint64_t notify_addr;
};

/* Finds the common, notify, ISR and device capabilities of bdf (the first of
 * each type whose BAR is a memory BAR, as 4.1.4 asks of drivers), assigns
 * the BARs they use if needed (pci_assign_bars) and fills v. On failure
 * returns false with a reason in err. */
bool virtio_pci_open(unsigned bdf, uint64_t bar_window_start, uint64_t bar_window_end,
		     struct virtio_pci *v, char *err, size_t errlen);

/* Reset (writes 0 and waits until status reads 0), then ACKNOWLEDGE|DRIVER,
 * offers `want & device features`, sets FEATURES_OK and checks it stuck.
 * VERSION_1 must be in both. Returns false with a reason in err. */
bool virtio_init_features(struct virtio_pci *v, uint64_t want, uint64_t *got, char *err,
			  size_t errlen);

/* Maximum size of queue qi (0: no such queue). */
uint16_t virtio_queue_max(struct virtio_pci *v, uint16_t qi);

/* Sets queue qi up with the rings at desc/avail/used (caller-zeroed, sized
 * for `size`, which must be a power of two <= the maximum), vector
 * NO_VECTOR, and enables it. */
bool virtio_queue_setup(struct virtio_pci *v, uint16_t qi, uint16_t size, struct virtq *q,
			void *desc, void *avail, void *used, char *err, size_t errlen);

/* Sets the configuration vector to NO_VECTOR and enables MSI-X (if the
 * function has it) with the function mask set: no vector is in use, so
 * neither MSI-X messages nor INTx (which MSI-X replaces) are sent. */
void virtio_no_interrupts(struct virtio_pci *v);

void virtio_set_status(struct virtio_pci *v, uint8_t status);
uint8_t virtio_get_status(struct virtio_pci *v);
uint8_t virtio_config_generation(struct virtio_pci *v);

/* Ring byte sizes for queue size n (2.7). */
static inline uint64_t virtq_desc_bytes(uint16_t n) { return 16ull * n; }
static inline uint64_t virtq_avail_bytes(uint16_t n) { return 6ull + 2ull * n; }
static inline uint64_t virtq_used_bytes(uint16_t n) { return 6ull + 8ull * n; }

static inline volatile uint16_t *virtq_used_event(struct virtq *q)
{
	return &q->avail->ring[q->size];
}

static inline volatile uint16_t *virtq_avail_event(struct virtq *q)
{
	return (volatile uint16_t *)&q->used->ring[q->size];
}

/* 2.7.10: true if moving the index from old to new_idx passed event_idx. */
static inline bool virtq_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old);
}

/* Available buffer notification (4.1.5.2): the queue index to its notify
 * address. */
static inline void virtq_kick(struct virtq *q)
{
	mmio_write16(q->notify_addr, q->index);
}

#endif

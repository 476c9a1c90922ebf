/* SPDX-License-Identifier: MIT */
/* Modern virtio-pci transport and split virtqueues for polled drivers (virtio.h). */
#include "virtio.h"

/* cfg_type of the virtio vendor capabilities (4.1.4). */
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR    3
#define CAP_DEVICE 4

/* struct virtio_pci_cap: cap_vndr, cap_next, cap_len, cfg_type, bar, id,
 * padding[2], offset (le32), length (le32); the notify capability adds
 * notify_off_multiplier (le32). */
#define VCAP_LEN      2
#define VCAP_TYPE     3
#define VCAP_BAR      4
#define VCAP_OFFSET   8
#define VCAP_LENGTH   12
#define VCAP_NOTIFY_MULT 16

/* struct virtio_pci_common_cfg (4.1.4.3). */
#define CC_DFSELECT    0x00
#define CC_DF          0x04
#define CC_GFSELECT    0x08
#define CC_GF          0x0c
#define CC_MSIX_CONFIG 0x10
#define CC_NUM_QUEUES  0x12
#define CC_STATUS      0x14
#define CC_CFG_GEN     0x15
#define CC_Q_SELECT    0x16
#define CC_Q_SIZE      0x18
#define CC_Q_MSIX      0x1a
#define CC_Q_ENABLE    0x1c
#define CC_Q_NOFF      0x1e
#define CC_Q_DESC      0x20
#define CC_Q_DRIVER    0x28
#define CC_Q_DEVICE    0x30
#define CC_MIN_LEN     0x38

/* MSI-X capability: message control at +2, bit 15 enable, bit 14 function mask. */
#define MSIX_CTRL 2
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_MASKALL 0x4000

/* Waiting for a reset to finish: generous, each status read is an exit. */
#define RESET_POLLS 100000

static void fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	guest_vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

bool virtio_pci_open(unsigned bdf, uint64_t bar_window_start, uint64_t bar_window_end,
		     struct virtio_pci *v, char *err, size_t errlen)
{
	unsigned cap[5] = { 0 }; /* by cfg_type */

	*v = (struct virtio_pci){ .bdf = bdf };
	for (unsigned p = pci_next_cap(bdf, PCI_CAP_ID_VNDR, 0); p;
	     p = pci_next_cap(bdf, PCI_CAP_ID_VNDR, p)) {
		uint8_t type = pci_read8(bdf, p + VCAP_TYPE);
		uint8_t bar = pci_read8(bdf, p + VCAP_BAR);
		uint8_t len = pci_read8(bdf, p + VCAP_LEN);

		/* Reserved types and BAR numbers are ignored; the first usable one of each type wins. */
		if (type < CAP_COMMON || type > CAP_DEVICE || bar >= PCI_NUM_BARS || cap[type])
			continue;
		if (len < 16 || (type == CAP_NOTIFY && len < 20))
			continue;
		cap[type] = p;
	}
	if (!cap[CAP_COMMON] || !cap[CAP_NOTIFY] || !cap[CAP_ISR]) {
		fail(err, errlen, "missing virtio capabilities (common at 0x%x, notify at 0x%x, isr at 0x%x)",
		     cap[CAP_COMMON], cap[CAP_NOTIFY], cap[CAP_ISR]);
		return false;
	}
	v->msix_cap = pci_next_cap(bdf, PCI_CAP_ID_MSIX, 0);

	if (!pci_assign_bars(bdf, bar_window_start, bar_window_end, v->bars)) {
		fail(err, errlen, "memory BARs do not fit in 0x%lx..0x%lx", bar_window_start,
		     bar_window_end);
		return false;
	}

	uint64_t addr[5] = { 0 };
	uint32_t length[5] = { 0 };

	for (unsigned t = CAP_COMMON; t <= CAP_DEVICE; t++) {
		if (!cap[t])
			continue;
		uint8_t bar = pci_read8(bdf, cap[t] + VCAP_BAR);
		uint32_t off = pci_read32(bdf, cap[t] + VCAP_OFFSET);
		const struct pci_bar *b = &v->bars[bar];

		length[t] = pci_read32(bdf, cap[t] + VCAP_LENGTH);
		if (b->io || !b->size || !b->addr || (uint64_t)off + length[t] > b->size) {
			fail(err, errlen, "capability type %u: BAR%u (%s, size 0x%lx) cannot hold 0x%x+0x%x",
			     t, bar, b->io ? "I/O" : "memory", b->size, off, length[t]);
			return false;
		}
		addr[t] = b->addr + off;
	}
	if (length[CAP_COMMON] < CC_MIN_LEN) {
		fail(err, errlen, "common configuration too short (%u bytes)", length[CAP_COMMON]);
		return false;
	}
	v->common = addr[CAP_COMMON];
	v->isr = addr[CAP_ISR];
	v->notify = addr[CAP_NOTIFY];
	v->notify_mult = pci_read32(bdf, cap[CAP_NOTIFY] + VCAP_NOTIFY_MULT);
	v->device = addr[CAP_DEVICE];
	v->device_len = cap[CAP_DEVICE] ? length[CAP_DEVICE] : 0;
	return true;
}

void virtio_set_status(struct virtio_pci *v, uint8_t status)
{
	mmio_write8(v->common + CC_STATUS, status);
}

uint8_t virtio_get_status(struct virtio_pci *v)
{
	return mmio_read8(v->common + CC_STATUS);
}

uint8_t virtio_config_generation(struct virtio_pci *v)
{
	return mmio_read8(v->common + CC_CFG_GEN);
}

bool virtio_init_features(struct virtio_pci *v, uint64_t want, uint64_t *got, char *err,
			  size_t errlen)
{
	uint64_t dev;
	unsigned i;

	/* 3.1.1: reset, then ACKNOWLEDGE, then DRIVER. */
	virtio_set_status(v, 0);
	for (i = 0; i < RESET_POLLS && virtio_get_status(v) != 0; i++)
		cpu_relax();
	if (i == RESET_POLLS) {
		fail(err, errlen, "device status stays 0x%x after reset", virtio_get_status(v));
		return false;
	}
	virtio_set_status(v, VIRTIO_S_ACKNOWLEDGE);
	virtio_set_status(v, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);

	mmio_write32(v->common + CC_DFSELECT, 0);
	dev = mmio_read32(v->common + CC_DF);
	mmio_write32(v->common + CC_DFSELECT, 1);
	dev |= (uint64_t)mmio_read32(v->common + CC_DF) << 32;
	if (!(dev & (1ull << VIRTIO_F_VERSION_1))) {
		virtio_set_status(v, VIRTIO_S_FAILED);
		fail(err, errlen, "device does not offer VIRTIO_F_VERSION_1 (features 0x%lx)", dev);
		return false;
	}
	*got = want & dev;
	mmio_write32(v->common + CC_GFSELECT, 0);
	mmio_write32(v->common + CC_GF, (uint32_t)*got);
	mmio_write32(v->common + CC_GFSELECT, 1);
	mmio_write32(v->common + CC_GF, (uint32_t)(*got >> 32));

	virtio_set_status(v, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);
	if (!(virtio_get_status(v) & VIRTIO_S_FEATURES_OK)) {
		virtio_set_status(v, VIRTIO_S_FAILED);
		fail(err, errlen, "device refused features 0x%lx (offered 0x%lx)", *got, dev);
		return false;
	}
	return true;
}

uint16_t virtio_queue_max(struct virtio_pci *v, uint16_t qi)
{
	if (qi >= mmio_read16(v->common + CC_NUM_QUEUES))
		return 0;
	mmio_write16(v->common + CC_Q_SELECT, qi);
	return mmio_read16(v->common + CC_Q_SIZE);
}

static void write64(uint64_t a, uint64_t val)
{
	/* 4.1.3.1: 64-bit fields as two 32-bit accesses, low half first. */
	mmio_write32(a, (uint32_t)val);
	mmio_write32(a + 4, (uint32_t)(val >> 32));
}

bool virtio_queue_setup(struct virtio_pci *v, uint16_t qi, uint16_t size, struct virtq *q,
			void *desc, void *avail, void *used, char *err, size_t errlen)
{
	uint16_t max = virtio_queue_max(v, qi), vec;

	if (!max || size > max || !size || (size & (size - 1))) {
		fail(err, errlen, "queue %u: size %u not possible (max %u)", qi, size, max);
		return false;
	}
	mmio_write16(v->common + CC_Q_SELECT, qi);
	mmio_write16(v->common + CC_Q_SIZE, size);
	mmio_write16(v->common + CC_Q_MSIX, VIRTIO_NO_VECTOR);
	vec = mmio_read16(v->common + CC_Q_MSIX);
	if (vec != VIRTIO_NO_VECTOR) {
		fail(err, errlen, "queue %u: vector reads back 0x%x, not NO_VECTOR", qi, vec);
		return false;
	}
	write64(v->common + CC_Q_DESC, (uint64_t)(uintptr_t)desc);
	write64(v->common + CC_Q_DRIVER, (uint64_t)(uintptr_t)avail);
	write64(v->common + CC_Q_DEVICE, (uint64_t)(uintptr_t)used);
	uint16_t noff = mmio_read16(v->common + CC_Q_NOFF);
	mmio_write16(v->common + CC_Q_ENABLE, 1);

	*q = (struct virtq){
		.size = size,
		.index = qi,
		.desc = desc,
		.avail = avail,
		.used = used,
		.notify_addr = v->notify + (uint64_t)noff * v->notify_mult,
	};
	return true;
}

void virtio_no_interrupts(struct virtio_pci *v)
{
	mmio_write16(v->common + CC_MSIX_CONFIG, VIRTIO_NO_VECTOR);
	if (v->msix_cap) {
		uint16_t ctrl = pci_read16(v->bdf, v->msix_cap + MSIX_CTRL);

		pci_write16(v->bdf, v->msix_cap + MSIX_CTRL,
			    (uint16_t)(ctrl | MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL));
	}
}

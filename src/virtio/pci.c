#include "virtio/pci.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "snapshot/snap.h"

#define VIRTIO_PCI_VENDOR      0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040

/* Capability types (Virtio 1.2, 4.1.4). */
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR    3
#define CAP_DEVICE 4
#define CAP_PCI    5

#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_MASKALL 0x4000
#define MSIX_ENTRY_MASKED 0x1

/* Common configuration structure offsets. */
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
#define CC_Q_AVAIL     0x28
#define CC_Q_USED      0x30
#define CC_Q_NDATA     0x38
#define CC_Q_RESET     0x3a
#define CC_SIZE        0x3c

static const uint32_t vpci_class[] = {
	[VIRTIO_ID_NET] = 0x020000,      /* ethernet */
	[VIRTIO_ID_BLOCK] = 0x018000,    /* other mass storage */
	[VIRTIO_ID_CONSOLE] = 0x078000,  /* other communication */
	[VIRTIO_ID_RNG] = 0x00ff00,
};

static struct virtio_pci *vp_of(struct virtio_dev *d)
{
	return d->transport;
}

/* --- interrupts -------------------------------------------------------- */

static bool vpci_vector_masked(const struct virtio_pci *vp, unsigned v)
{
	return vp->msix_masked || (le32toh(vp->table[v].ctrl) & MSIX_ENTRY_MASKED);
}

/* Make vector v's route and irqfd match its table entry. Caller holds vp->lock. */
static void vpci_route_update(struct virtio_pci *vp, unsigned v)
{
	const struct vpci_msix_entry *e = &vp->table[v];
	uint64_t addr = (uint64_t)le32toh(e->addr_hi) << 32 | le32toh(e->addr_lo);
	int r;

	if (!vp->msi || !vp->msi->ops)
		return;
	if (vp->vec_gsi[v] < 0) {
		int gsi = vp->msi->ops->route_alloc(vp->msi->opaque);

		if (gsi < 0) {
			log_guest(&vp->rl, vp->vdev->name, "MSI-X vector %u: no GSI route available", v);
			return;
		}
		vp->vec_gsi[v] = gsi;
		r = vp->msi->ops->route_set(vp->msi->opaque, (unsigned)gsi, addr, le32toh(e->data));
		if (r == 0)
			r = vp->msi->ops->irqfd(vp->msi->opaque, vp->vec_fd[v], (unsigned)gsi, true);
	} else {
		r = vp->msi->ops->route_set(vp->msi->opaque, (unsigned)vp->vec_gsi[v], addr, le32toh(e->data));
	}
	if (r < 0)
		log_guest(&vp->rl, vp->vdev->name, "MSI-X vector %u: route setup failed (%d)", v, r);
	log_debug(vp->vdev->name, "MSI-X vector %u -> gsi %d addr %#llx data %#x", v, vp->vec_gsi[v],
		  (unsigned long long)addr, le32toh(e->data));
}

static void vpci_fire_vector(struct virtio_pci *vp, unsigned v)
{
	uint64_t one = 1;

	if (write(vp->vec_fd[v], &one, sizeof(one)) < 0)
		log_guest(&vp->rl, vp->vdev->name, "MSI-X vector %u: eventfd write failed", v);
}

/* Deliver vector v now, or remember it in the PBA while masked. */
static void vpci_signal_vector(struct virtio_pci *vp, unsigned v)
{
	bool fire = false;

	pthread_mutex_lock(&vp->lock);
	if (v < vp->nvectors) {
		if (vpci_vector_masked(vp, v))
			vp->pending[v / 64] |= 1ull << (v % 64);
		else
			fire = vp->vec_gsi[v] >= 0;
	}
	pthread_mutex_unlock(&vp->lock);
	if (fire)
		vpci_fire_vector(vp, v);
}

static void vpci_signal_intx(struct virtio_pci *vp, uint8_t isr_bit)
{
	pthread_mutex_lock(&vp->lock);
	vp->isr |= isr_bit;
	if (!(pci_get16(&vp->pci, PCI_COMMAND) & PCI_CMD_INTX_OFF))
		irq_set_level(&vp->intx, true);
	pthread_mutex_unlock(&vp->lock);
}

static void vpci_notify_queue(struct virtio_dev *d, unsigned q)
{
	struct virtio_pci *vp = vp_of(d);

	log_debug(d->name, "interrupt queue %u: msix %d vector %u gsi %d", q, vp->msix_enabled,
		  d->queues[q].msix_vector,
		  d->queues[q].msix_vector < VPCI_MAX_VECTORS ? vp->vec_gsi[d->queues[q].msix_vector] : -2);
	if (vp->msix_enabled) {
		uint16_t v = d->queues[q].msix_vector;

		if (v != VPCI_NO_VECTOR)
			vpci_signal_vector(vp, v);
	} else {
		vpci_signal_intx(vp, 0x1);
	}
}

static void vpci_notify_config(struct virtio_dev *d)
{
	struct virtio_pci *vp = vp_of(d);

	if (vp->msix_enabled) {
		if (vp->config_vector != VPCI_NO_VECTOR)
			vpci_signal_vector(vp, vp->config_vector);
	} else {
		vpci_signal_intx(vp, 0x2);
	}
}

static int vpci_queue_kick_fd(struct virtio_dev *d, unsigned q)
{
	return q < d->num_queues ? vp_of(d)->kick_fd[q] : -1;
}

/* The vector's irqfd while MSI-X is on; masking is not seen by a back-end writing it (docs/vhost-user.md). */
static int vpci_queue_irq_fd(struct virtio_dev *d, unsigned q)
{
	struct virtio_pci *vp = vp_of(d);
	uint16_t v;

	if (q >= d->num_queues || !vp->msix_enabled)
		return -1;
	v = d->queues[q].msix_vector;
	return v < vp->nvectors ? vp->vec_fd[v] : -1;
}

static const struct virtio_transport_ops vpci_transport_ops = {
	.notify_queue = vpci_notify_queue,
	.notify_config = vpci_notify_config,
	.queue_kick_fd = vpci_queue_kick_fd,
	.queue_irq_fd = vpci_queue_irq_fd,
};

/* --- queue notifications ------------------------------------------------ */

static void vpci_kick(struct virtio_pci *vp, unsigned q)
{
	struct virtio_dev *d = vp->vdev;

	__atomic_add_fetch(&d->metrics.kicks, 1, __ATOMIC_RELAXED);
	if ((d->status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_NEEDS_RESET) &&
	    d->queues[q].enabled && d->ops->queue_notify)
		d->ops->queue_notify(d, q);
}

static void vpci_kick_cb(void *opaque, uint32_t events)
{
	struct vpci_kick_ctx *k = opaque;
	uint64_t v;

	if (read(k->vp->kick_fd[k->q], &v, sizeof(v)) == sizeof(v)) {
		log_debug(k->vp->vdev->name, "kick queue %u (status %#x)", k->q, k->vp->vdev->status);
		vpci_kick(k->vp, k->q);
	}
}

static void vpci_bar_remap(struct pci_dev *pd, unsigned bar, uint64_t addr, bool mapped)
{
	struct virtio_pci *vp = pd->opaque;
	struct virtio_dev *d = vp->vdev;

	if (bar != 0 || !vp->msi || !vp->msi->ops)
		return;
	/* Kicks go to ioeventfds at the notify addresses; if that fails they exit and we forward them. */
	for (unsigned q = 0; q < d->num_queues; q++) {
		uint64_t a = addr + VPCI_NOTIFY_OFF + (uint64_t)q * VPCI_NOTIFY_MULT;

		if (!mapped) {
			if (vp->kicks_on_ioeventfd)
				vp->msi->ops->ioeventfd(vp->msi->opaque, a, 0, false, -1, vp->kick_fd[q], false);
			continue;
		}
		if (vp->msi->ops->ioeventfd(vp->msi->opaque, a, 0, false, -1, vp->kick_fd[q], true) < 0) {
			for (unsigned r = 0; r < q; r++)
				vp->msi->ops->ioeventfd(vp->msi->opaque,
							addr + VPCI_NOTIFY_OFF + (uint64_t)r * VPCI_NOTIFY_MULT,
							0, false, -1, vp->kick_fd[r], false);
			log_warn(d->name, "ioeventfd unavailable; queue kicks will exit to user space");
			vp->kicks_on_ioeventfd = false;
			return;
		}
	}
	vp->kicks_on_ioeventfd = mapped;
	vp->bar0_addr = mapped ? addr : 0;
	log_debug(d->name, "BAR0 %s at %#llx, kicks on ioeventfd", mapped ? "mapped" : "unmapped",
		  (unsigned long long)addr);
}

/* --- common configuration ------------------------------------------------ */

static struct virtq *vpci_selected(struct virtio_pci *vp)
{
	return vp->queue_select < vp->vdev->num_queues ? &vp->vdev->queues[vp->queue_select] : NULL;
}

static uint64_t vpci_common_read(struct virtio_pci *vp, unsigned off, unsigned size)
{
	struct virtio_dev *d = vp->vdev;
	struct virtq *q = vpci_selected(vp);

	switch (off) {
	case CC_DFSELECT: return vp->dfselect;
	case CC_DF: return virtio_get_host_features(d, vp->dfselect);
	case CC_GFSELECT: return vp->gfselect;
	case CC_GF:
		return vp->gfselect == 0 ? (uint32_t)d->driver_features :
		       vp->gfselect == 1 ? (uint32_t)(d->driver_features >> 32) : 0;
	case CC_MSIX_CONFIG: return vp->config_vector;
	case CC_NUM_QUEUES: return d->num_queues;
	case CC_STATUS: return d->status;
	case CC_CFG_GEN: return d->config_generation;
	case CC_Q_SELECT: return vp->queue_select;
	case CC_Q_SIZE: return q ? q->size : 0;
	case CC_Q_MSIX: return q ? q->msix_vector : VPCI_NO_VECTOR;
	case CC_Q_ENABLE: return q ? q->enabled : 0;
	case CC_Q_NOFF: return vp->queue_select;
	case CC_Q_DESC: return q ? (size == 8 ? q->desc_gpa : (uint32_t)q->desc_gpa) : 0;
	case CC_Q_DESC + 4: return q ? q->desc_gpa >> 32 : 0;
	case CC_Q_AVAIL: return q ? (size == 8 ? q->avail_gpa : (uint32_t)q->avail_gpa) : 0;
	case CC_Q_AVAIL + 4: return q ? q->avail_gpa >> 32 : 0;
	case CC_Q_USED: return q ? (size == 8 ? q->used_gpa : (uint32_t)q->used_gpa) : 0;
	case CC_Q_USED + 4: return q ? q->used_gpa >> 32 : 0;
	case CC_Q_NDATA: return vp->queue_select;
	case CC_Q_RESET: return 0;
	default: return 0;
	}
}

static void set_half(uint64_t *field, unsigned off_in_field, unsigned size, uint64_t v)
{
	if (size == 8)
		*field = v;
	else if (off_in_field == 0)
		*field = (*field & ~0xffffffffull) | (uint32_t)v;
	else
		*field = (*field & 0xffffffffull) | ((uint64_t)(uint32_t)v << 32);
}

static uint16_t vpci_check_vector(struct virtio_pci *vp, uint64_t v)
{
	/* An out-of-range vector reads back as NO_VECTOR: the driver sees it was refused. */
	return v < vp->nvectors ? (uint16_t)v : VPCI_NO_VECTOR;
}

static void vpci_common_write(struct virtio_pci *vp, unsigned off, unsigned size, uint64_t v)
{
	struct virtio_dev *d = vp->vdev;
	struct virtq *q = vpci_selected(vp);
	/* Queue setup is only allowed before the queue is enabled and the driver is up. */
	bool q_writable = q && !q->enabled && !(d->status & VIRTIO_STATUS_DRIVER_OK);

	switch (off) {
	case CC_DFSELECT: vp->dfselect = (uint32_t)v; break;
	case CC_GFSELECT: vp->gfselect = (uint32_t)v; break;
	case CC_MSIX_CONFIG: vp->config_vector = vpci_check_vector(vp, v); break;
	case CC_Q_SELECT: vp->queue_select = (uint16_t)v; break;
	case CC_Q_SIZE:
		/* Any power of two up to the maximum; anything else is refused at enable. */
		if (q_writable)
			q->size = (uint16_t)v;
		break;
	case CC_Q_MSIX:
		if (q)
			q->msix_vector = vpci_check_vector(vp, v);
		break;
	case CC_Q_ENABLE:
		if (q_writable && v == 1)
			q->enabled = true;
		break;
	case CC_Q_DESC: case CC_Q_DESC + 4:
		if (q_writable)
			set_half(&q->desc_gpa, off - CC_Q_DESC, size, v);
		break;
	case CC_Q_AVAIL: case CC_Q_AVAIL + 4:
		if (q_writable)
			set_half(&q->avail_gpa, off - CC_Q_AVAIL, size, v);
		break;
	case CC_Q_USED: case CC_Q_USED + 4:
		if (q_writable)
			set_half(&q->used_gpa, off - CC_Q_USED, size, v);
		break;
	default:
		break; /* read-only or reserved */
	}
}

/* --- BAR 0 ----------------------------------------------------------------- */

static uint64_t vpci_bar0_read(void *opaque, uint64_t off, unsigned size)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *d = vp->vdev;
	uint64_t v = 0;

	if (off < VPCI_COMMON_OFF + CC_SIZE) {
		pthread_mutex_lock(&vp->lock);
		v = vpci_common_read(vp, (unsigned)off, size);
		pthread_mutex_unlock(&vp->lock);
	} else if (off == VPCI_ISR_OFF) {
		/* Reading the ISR acknowledges the interrupt and lowers INTx. */
		pthread_mutex_lock(&vp->lock);
		v = vp->isr;
		vp->isr = 0;
		irq_set_level(&vp->intx, false);
		pthread_mutex_unlock(&vp->lock);
	} else if (off >= VPCI_DEVICE_OFF && off - VPCI_DEVICE_OFF + size <= d->config_size) {
		uint8_t buf[8] = { 0 };

		if (d->ops->config_read)
			d->ops->config_read(d, (uint32_t)(off - VPCI_DEVICE_OFF), buf, size);
		memcpy(&v, buf, size);
		v = le64toh(v);
	}
	return v;
}

static void vpci_bar0_write(void *opaque, uint64_t off, uint64_t v, unsigned size)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *d = vp->vdev;

	if (off == CC_STATUS) {
		/*
		 * Without vp->lock: a status change can activate or reset the
		 * device, which may raise a config interrupt (taking vp->lock)
		 * or wait for I/O in flight.
		 */
		virtio_set_status(d, (uint8_t)v);
	} else if (off == CC_GF) {
		uint32_t sel;

		pthread_mutex_lock(&vp->lock);
		sel = vp->gfselect;
		pthread_mutex_unlock(&vp->lock);
		virtio_set_driver_features(d, sel, (uint32_t)v);
	} else if (off < VPCI_COMMON_OFF + CC_SIZE) {
		pthread_mutex_lock(&vp->lock);
		vpci_common_write(vp, (unsigned)off, size, v);
		pthread_mutex_unlock(&vp->lock);
	} else if (off >= VPCI_DEVICE_OFF && off - VPCI_DEVICE_OFF + size <= d->config_size) {
		uint64_t le = htole64(v);

		if (d->ops->config_write)
			d->ops->config_write(d, (uint32_t)(off - VPCI_DEVICE_OFF), &le, size);
	} else if (off >= VPCI_NOTIFY_OFF && off < VPCI_NOTIFY_OFF + (uint64_t)d->num_queues * VPCI_NOTIFY_MULT) {
		/* A kick that exited (no ioeventfd): hand it to the I/O thread like one. */
		unsigned q = (unsigned)(off - VPCI_NOTIFY_OFF) / VPCI_NOTIFY_MULT;
		uint64_t one = 1;

		if (write(vp->kick_fd[q], &one, sizeof(one)) < 0)
			log_guest(&vp->rl, d->name, "queue %u: kick lost", q);
	}
}

static const struct bus_dev_ops vpci_bar0_ops = { .read = vpci_bar0_read, .write = vpci_bar0_write };

/* --- BAR 2: MSI-X table and PBA --------------------------------------------- */

static uint64_t vpci_bar2_read(void *opaque, uint64_t off, unsigned size)
{
	struct virtio_pci *vp = opaque;
	uint64_t v = 0;

	pthread_mutex_lock(&vp->lock);
	if (off + size <= (uint64_t)vp->nvectors * 16 && size <= 8) {
		memcpy(&v, (uint8_t *)vp->table + off, size);
		v = le64toh(v);
	} else if (off >= VPCI_MSIX_PBA_OFF && off + size <= VPCI_MSIX_PBA_OFF + sizeof(vp->pending)) {
		memcpy(&v, (uint8_t *)vp->pending + (off - VPCI_MSIX_PBA_OFF), size);
	}
	pthread_mutex_unlock(&vp->lock);
	return v;
}

static void vpci_bar2_write(void *opaque, uint64_t off, uint64_t v, unsigned size)
{
	struct virtio_pci *vp = opaque;
	unsigned vec;
	bool was_masked, fire = false;
	uint64_t le = htole64(v);

	if (off + size > (uint64_t)vp->nvectors * 16 || size > 8)
		return; /* the PBA is read-only */
	vec = (unsigned)(off / 16);
	pthread_mutex_lock(&vp->lock);
	was_masked = vpci_vector_masked(vp, vec);
	memcpy((uint8_t *)vp->table + off, &le, size);
	vp->table[vec].ctrl &= htole32(MSIX_ENTRY_MASKED); /* other control bits are reserved */
	if (!vpci_vector_masked(vp, vec) && vp->msix_enabled) {
		vpci_route_update(vp, vec);
		if (was_masked && (vp->pending[vec / 64] & (1ull << (vec % 64)))) {
			vp->pending[vec / 64] &= ~(1ull << (vec % 64));
			fire = true;
		}
	}
	pthread_mutex_unlock(&vp->lock);
	if (fire)
		vpci_fire_vector(vp, vec);
}

static const struct bus_dev_ops vpci_bar2_ops = { .read = vpci_bar2_read, .write = vpci_bar2_write };

/* --- PCI config space hooks ------------------------------------------------ */

static unsigned vpci_msix_cap_off(const struct virtio_pci *vp)
{
	/* The MSI-X capability is added first (see virtio_pci_init). */
	return vp->pci.cfg[PCI_CAP_PTR];
}

static void vpci_cfg_write(struct pci_dev *pd, unsigned off, unsigned size, uint32_t value)
{
	struct virtio_pci *vp = pd->opaque;
	unsigned cap = vpci_msix_cap_off(vp);
	uint16_t ctrl;
	bool was_enabled, was_masked;
	uint64_t fire[(VPCI_MAX_VECTORS + 63) / 64] = { 0 };

	if (off + size <= cap + 2 || off > cap + 3)
		return;
	ctrl = pci_get16(pd, cap + 2);
	pthread_mutex_lock(&vp->lock);
	was_enabled = vp->msix_enabled;
	was_masked = vp->msix_masked;
	vp->msix_enabled = ctrl & MSIX_CTRL_ENABLE;
	vp->msix_masked = ctrl & MSIX_CTRL_MASKALL;
	if (vp->msix_enabled && (!was_enabled || was_masked)) {
		for (unsigned v = 0; v < vp->nvectors; v++) {
			if (vpci_vector_masked(vp, v))
				continue;
			vpci_route_update(vp, v);
			if (vp->pending[v / 64] & (1ull << (v % 64))) {
				vp->pending[v / 64] &= ~(1ull << (v % 64));
				fire[v / 64] |= 1ull << (v % 64);
			}
		}
	}
	pthread_mutex_unlock(&vp->lock);
	for (unsigned v = 0; v < vp->nvectors; v++)
		if (fire[v / 64] & (1ull << (v % 64)))
			vpci_fire_vector(vp, v);
}

static const struct pci_dev_ops vpci_pci_ops = {
	.cfg_write = vpci_cfg_write,
	.bar_remap = vpci_bar_remap,
};

static void vpci_add_vendor_cap(struct pci_dev *pd, uint8_t type, uint8_t bar, uint32_t off, uint32_t len,
				unsigned extra)
{
	int c = pci_dev_add_cap(pd, PCI_CAP_ID_VNDR, 16 + extra);

	if (c < 0)
		return;
	pd->cfg[c + 2] = (uint8_t)(16 + extra);   /* cap_len */
	pd->cfg[c + 3] = type;
	pd->cfg[c + 4] = bar;
	pci_set32(pd, (unsigned)c + 8, off);
	pci_set32(pd, (unsigned)c + 12, len);
	if (type == CAP_NOTIFY)
		pci_set32(pd, (unsigned)c + 16, VPCI_NOTIFY_MULT);
}

int virtio_pci_init(struct virtio_pci *vp, struct virtio_dev *vdev, const struct msi_host *msi,
		    struct loop *loop)
{
	struct pci_dev *pd = &vp->pci;
	uint32_t class = vdev->device_id < sizeof(vpci_class) / sizeof(vpci_class[0]) ?
			 vpci_class[vdev->device_id] : 0xff0000;
	int cap, e;

	memset(vp, 0, sizeof(*vp));
	pthread_mutex_init(&vp->lock, NULL);
	vp->vdev = vdev;
	vp->msi = msi;
	vp->loop = loop;
	vp->config_vector = VPCI_NO_VECTOR;
	vp->nvectors = vdev->num_queues + 1;
	vp->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	for (unsigned v = 0; v < VPCI_MAX_VECTORS; v++) {
		vp->vec_gsi[v] = -1;
		vp->vec_fd[v] = -1;
		vp->table[v].ctrl = htole32(MSIX_ENTRY_MASKED);
	}
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vp->kick_fd[q] = -1;
	vdev->transport = vp;
	vdev->tops = &vpci_transport_ops;

	pci_dev_init(pd, VIRTIO_PCI_VENDOR, (uint16_t)(VIRTIO_PCI_DEVICE_BASE + vdev->device_id), class, 1,
		     vdev->name);
	pci_set16(pd, PCI_SUBSYS_VENDOR, VIRTIO_PCI_VENDOR);
	pci_set16(pd, PCI_SUBSYS_ID, 0x40);
	pd->ops = &vpci_pci_ops;
	pd->opaque = vp;
	e = pci_dev_set_bar(pd, 0, VPCI_BAR0_SIZE, PCI_BAR_MEM64, &vpci_bar0_ops, vp);
	e = e ?: pci_dev_set_bar(pd, 2, VPCI_BAR2_SIZE, PCI_BAR_MEM64, &vpci_bar2_ops, vp);
	if (e < 0)
		return e;

	/* MSI-X first, so vpci_msix_cap_off() finds it at the head of the list. */
	cap = pci_dev_add_cap(pd, PCI_CAP_ID_MSIX, 12);
	if (cap < 0)
		return cap;
	pci_set16(pd, (unsigned)cap + 2, (uint16_t)(vp->nvectors - 1));
	pd->wmask[cap + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) >> 8;
	pci_set32(pd, (unsigned)cap + 4, VPCI_MSIX_TABLE_OFF | 2);   /* BIR 2 */
	pci_set32(pd, (unsigned)cap + 8, VPCI_MSIX_PBA_OFF | 2);
	vpci_add_vendor_cap(pd, CAP_COMMON, 0, VPCI_COMMON_OFF, CC_SIZE, 0);
	vpci_add_vendor_cap(pd, CAP_ISR, 0, VPCI_ISR_OFF, 1, 0);
	vpci_add_vendor_cap(pd, CAP_DEVICE, 0, VPCI_DEVICE_OFF, vdev->config_size ? vdev->config_size : 4, 0);
	vpci_add_vendor_cap(pd, CAP_NOTIFY, 0, VPCI_NOTIFY_OFF, vdev->num_queues * VPCI_NOTIFY_MULT, 4);

	for (unsigned v = 0; v < vp->nvectors; v++) {
		vp->vec_fd[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->vec_fd[v] < 0)
			goto err_errno;
	}
	for (unsigned q = 0; q < vdev->num_queues; q++) {
		struct vpci_kick_ctx *k = &vp->kick_ctx[q];

		vp->kick_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->kick_fd[q] < 0)
			goto err_errno;
		k->vp = vp;
		k->q = q;
		e = loop && !vdev->vhost_user ? loop_add(loop, vp->kick_fd[q], EPOLLIN, vpci_kick_cb, k) : 0;
		if (e < 0) {
			virtio_pci_exit(vp);
			return e;
		}
	}
	return 0;

err_errno:
	e = -errno;
	virtio_pci_exit(vp);
	return e ? e : -ENOMEM;
}

void virtio_pci_exit(struct virtio_pci *vp)
{
	for (unsigned v = 0; v < VPCI_MAX_VECTORS; v++) {
		if (vp->vec_gsi[v] >= 0 && vp->msi && vp->msi->ops) {
			vp->msi->ops->irqfd(vp->msi->opaque, vp->vec_fd[v], (unsigned)vp->vec_gsi[v], false);
			vp->msi->ops->route_free(vp->msi->opaque, (unsigned)vp->vec_gsi[v]);
		}
		vp->vec_gsi[v] = -1;
		if (vp->vec_fd[v] >= 0)
			close(vp->vec_fd[v]);
		vp->vec_fd[v] = -1;
	}
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (vp->kick_fd[q] < 0)
			continue;
		if (vp->loop && !vp->vdev->vhost_user)
			loop_del(vp->loop, vp->kick_fd[q]);
		close(vp->kick_fd[q]);
		vp->kick_fd[q] = -1;
	}
}

/* --- snapshot ------------------------------------------------------------- */

#define VPCI_PBA_WORDS ((VPCI_MAX_VECTORS + 63) / 64)

void virtio_pci_save(const struct virtio_pci *vp, struct snap_writer *w)
{
	struct virtio_pci *v = (struct virtio_pci *)vp;   /* for the lock only */
	struct virtio_dev *d = vp->vdev;

	pthread_mutex_lock(&v->lock);
	snap_put_u32(w, VPCI_SNAP_VERSION);
	snap_put_u32(w, vp->nvectors);
	snap_put_u32(w, vp->dfselect);
	snap_put_u32(w, vp->gfselect);
	snap_put_u16(w, vp->queue_select);
	snap_put_u16(w, vp->config_vector);
	snap_put_u8(w, vp->isr);
	for (unsigned i = 0; i < vp->nvectors; i++) {
		snap_put_u32(w, le32toh(vp->table[i].addr_lo));
		snap_put_u32(w, le32toh(vp->table[i].addr_hi));
		snap_put_u32(w, le32toh(vp->table[i].data));
		snap_put_u32(w, le32toh(vp->table[i].ctrl));
	}
	for (unsigned i = 0; i < VPCI_PBA_WORDS; i++)
		snap_put_u64(w, vp->pending[i]);
	pthread_mutex_unlock(&v->lock);
	virtio_dev_save(d, w);
	if (d->ops->save)
		d->ops->save(d, w);
	pci_dev_save(&vp->pci, w);
}

/* The transport's registers as read from a snapshot. */
struct vpci_snap {
	uint32_t dfselect, gfselect;
	uint16_t queue_select, config_vector;
	uint8_t isr;
	struct vpci_msix_entry table[VPCI_MAX_VECTORS];
	uint64_t pending[VPCI_PBA_WORDS];
};

static bool vpci_vector_ok(const struct virtio_pci *vp, uint16_t v)
{
	return v == VPCI_NO_VECTOR || v < vp->nvectors;
}

static int vpci_load_regs(const struct virtio_pci *vp, struct snap_sec *s, struct vpci_snap *t,
			  char *err, size_t errlen)
{
	uint32_t version, nvec;

	memset(t, 0, sizeof(*t));
	version = snap_get_u32(s);
	nvec = snap_get_u32(s);
	if (!s->err && version != VPCI_SNAP_VERSION) {
		snprintf(err, errlen, "virtio-pci state has layout version %u, this kestrel reads %u",
			 version, VPCI_SNAP_VERSION);
		return -EINVAL;
	}
	if (!s->err && nvec != vp->nvectors) {
		snprintf(err, errlen, "snapshot has %u MSI-X vectors, this device %u", nvec, vp->nvectors);
		return -EINVAL;
	}
	t->dfselect = snap_get_u32(s);
	t->gfselect = snap_get_u32(s);
	t->queue_select = snap_get_u16(s);
	t->config_vector = snap_get_u16(s);
	t->isr = snap_get_u8(s);
	for (unsigned i = 0; i < vp->nvectors; i++) {
		t->table[i].addr_lo = htole32(snap_get_u32(s));
		t->table[i].addr_hi = htole32(snap_get_u32(s));
		t->table[i].data = htole32(snap_get_u32(s));
		t->table[i].ctrl = htole32(snap_get_u32(s));
		if (le32toh(t->table[i].ctrl) & ~(uint32_t)MSIX_ENTRY_MASKED) {
			snprintf(err, errlen, "MSI-X vector %u has reserved control bits set", i);
			return -EINVAL;
		}
	}
	for (unsigned i = vp->nvectors; i < VPCI_MAX_VECTORS; i++)
		t->table[i].ctrl = htole32(MSIX_ENTRY_MASKED);
	for (unsigned i = 0; i < VPCI_PBA_WORDS; i++)
		t->pending[i] = snap_get_u64(s);
	if (s->err) {
		snprintf(err, errlen, "virtio-pci state is truncated");
		return -EINVAL;
	}
	for (unsigned v = vp->nvectors; v < VPCI_PBA_WORDS * 64; v++) {
		if (t->pending[v / 64] & (1ull << (v % 64))) {
			snprintf(err, errlen, "MSI-X vector %u is pending but does not exist", v);
			return -EINVAL;
		}
	}
	if (!vpci_vector_ok(vp, t->config_vector)) {
		snprintf(err, errlen, "configuration vector %u does not exist", t->config_vector);
		return -EINVAL;
	}
	if (t->isr & ~3u) {
		snprintf(err, errlen, "ISR %#x has bits other than queue and configuration", t->isr);
		return -EINVAL;
	}
	return 0;
}

/* Take over checked registers; MSI-X on/off and the function mask come from the restored config space. */
static void vpci_commit_regs(struct virtio_pci *vp, const struct vpci_snap *t)
{
	uint16_t ctrl = pci_get16(&vp->pci, vpci_msix_cap_off(vp) + 2);
	bool intx;

	pthread_mutex_lock(&vp->lock);
	vp->dfselect = t->dfselect;
	vp->gfselect = t->gfselect;
	vp->queue_select = t->queue_select;
	vp->config_vector = t->config_vector;
	vp->isr = t->isr;
	memcpy(vp->table, t->table, sizeof(vp->table));
	memcpy(vp->pending, t->pending, sizeof(vp->pending));
	vp->msix_enabled = ctrl & MSIX_CTRL_ENABLE;
	vp->msix_masked = ctrl & MSIX_CTRL_MASKALL;
	/* Routes exist for the vectors a running device could fire; masked ones get theirs on unmask. */
	if (vp->msix_enabled)
		for (unsigned v = 0; v < vp->nvectors; v++)
			if (!vpci_vector_masked(vp, v))
				vpci_route_update(vp, v);
	intx = vp->isr && !(pci_get16(&vp->pci, PCI_COMMAND) & PCI_CMD_INTX_OFF);
	irq_set_level(&vp->intx, intx);
	pthread_mutex_unlock(&vp->lock);
}

/* The config space part: a pci_dev_save() inside this section, of its own layout version. */
static int vpci_load_cfg(const struct virtio_pci *vp, struct snap_sec *s, struct pci_dev_snap *cfg)
{
	struct snap_sec sub = *s;
	int rc;

	sub.version = PCI_SNAP_VERSION;
	rc = pci_dev_load_check(&vp->pci, &sub, cfg);
	s->off = sub.off;
	s->err = sub.err;
	return rc;
}

int virtio_pci_load(struct virtio_pci *vp, struct snap_sec *s, bool apply, char *err, size_t errlen)
{
	struct virtio_dev *d = vp->vdev;
	struct virtio_dev_snap *st;
	struct pci_dev_snap *cfg;
	struct vpci_snap *t;
	struct snap_sec dev_at;
	int rc;

	st = malloc(sizeof(*st));
	t = malloc(sizeof(*t));
	cfg = malloc(sizeof(*cfg));
	if (!st || !t || !cfg) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	rc = vpci_load_regs(vp, s, t, err, errlen);
	if (rc == 0)
		rc = virtio_dev_load_check(d, s, st, err, errlen);
	for (unsigned i = 0; rc == 0 && i < d->num_queues; i++) {
		if (!vpci_vector_ok(vp, st->queues[i].msix_vector)) {
			snprintf(err, errlen, "queue %u: MSI-X vector %u does not exist", i,
				 st->queues[i].msix_vector);
			rc = -EINVAL;
		}
	}
	if (rc == 0)
		rc = virtio_dev_load_check_device(d, s, &dev_at, err, errlen);
	if (rc == 0 && vpci_load_cfg(vp, s, cfg) < 0) {
		/* The PCI layer logged which byte it refused. */
		snprintf(err, errlen, "PCI configuration space does not fit this device (see the log)");
		rc = -EINVAL;
	}
	if (rc < 0) {
		snap_sec_fail(s);
		goto out;
	}
	if (!apply)
		goto out;

	/*
	 * Everything checked: from here on the function changes. The core
	 * first, since committing it resets a running device, which must not
	 * undo the device's own part; the config space before the registers,
	 * which take MSI-X enable and mask from it.
	 */
	rc = virtio_dev_load_commit(d, st, &dev_at, err, errlen);
	if (rc < 0)
		goto out;
	pci_dev_load_apply(&vp->pci, cfg);
	vpci_commit_regs(vp, t);
	rc = virtio_dev_restored(d);
	if (rc < 0) {
		snprintf(err, errlen, "cannot restart the device: %s", strerror(-rc));
		goto out;
	}
	for (unsigned q = 0; q < d->num_queues; q++) {
		uint64_t one = 1;

		if (d->queues[q].enabled && write(vp->kick_fd[q], &one, sizeof(one)) < 0)
			log_warn(d->name, "queue %u: cannot queue a kick after restore", q);
	}
out:
	free(st);
	free(t);
	free(cfg);
	return rc;
}

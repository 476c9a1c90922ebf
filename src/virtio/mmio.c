#include "virtio/mmio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "snapshot/snap.h"

#define R_MAGIC        0x000
#define R_VERSION      0x004
#define R_DEVICE_ID    0x008
#define R_VENDOR_ID    0x00c
#define R_DF           0x010
#define R_DF_SEL       0x014
#define R_GF           0x020
#define R_GF_SEL       0x024
#define R_Q_SEL        0x030
#define R_Q_NUM_MAX    0x034
#define R_Q_NUM        0x038
#define R_Q_READY      0x044
#define R_Q_NOTIFY     0x050
#define R_INT_STATUS   0x060
#define R_INT_ACK      0x064
#define R_STATUS       0x070
#define R_Q_DESC_LO    0x080
#define R_Q_DESC_HI    0x084
#define R_Q_AVAIL_LO   0x090
#define R_Q_AVAIL_HI   0x094
#define R_Q_USED_LO    0x0a0
#define R_Q_USED_HI    0x0a4
#define R_CFG_GEN      0x0fc
#define R_CONFIG       0x100

#define VMMIO_MAGIC   0x74726976   /* "virt" */
#define VMMIO_VENDOR  0x4c525453   /* "STRL" */

static void vmmio_raise(struct virtio_mmio *vm, uint32_t bit)
{
	pthread_mutex_lock(&vm->lock);
	vm->isr |= bit;
	irq_set_level(&vm->irq, true);
	pthread_mutex_unlock(&vm->lock);
}

static void vmmio_notify_queue(struct virtio_dev *d, unsigned q)
{
	vmmio_raise(d->transport, 0x1);
}

static void vmmio_notify_config(struct virtio_dev *d)
{
	vmmio_raise(d->transport, 0x2);
}

static const struct virtio_transport_ops vmmio_transport_ops = {
	.notify_queue = vmmio_notify_queue,
	.notify_config = vmmio_notify_config,
};

static void vmmio_kick_cb(void *opaque, uint32_t events)
{
	struct vmmio_kick_ctx *k = opaque;
	struct virtio_dev *d = k->vm->vdev;
	uint64_t v;

	if (read(k->vm->kick_fd[k->q], &v, sizeof(v)) != sizeof(v))
		return;
	__atomic_add_fetch(&d->metrics.kicks, 1, __ATOMIC_RELAXED);
	if ((d->status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_NEEDS_RESET) &&
	    d->queues[k->q].enabled && d->ops->queue_notify)
		d->ops->queue_notify(d, k->q);
}

static struct virtq *vmmio_selected(struct virtio_mmio *vm)
{
	return vm->queue_select < vm->vdev->num_queues ? &vm->vdev->queues[vm->queue_select] : NULL;
}

static uint64_t vmmio_read(void *opaque, uint64_t off, unsigned size)
{
	struct virtio_mmio *vm = opaque;
	struct virtio_dev *d = vm->vdev;
	struct virtq *q;
	uint64_t v = 0;

	if (off >= R_CONFIG) {
		uint8_t buf[8] = { 0 };

		if (off - R_CONFIG + size <= d->config_size && d->ops->config_read)
			d->ops->config_read(d, (uint32_t)(off - R_CONFIG), buf, size);
		memcpy(&v, buf, size);
		return v;
	}
	if (size != 4)
		return 0; /* registers are 32-bit only */
	pthread_mutex_lock(&vm->lock);
	q = vmmio_selected(vm);
	switch (off) {
	case R_MAGIC: v = VMMIO_MAGIC; break;
	case R_VERSION: v = 2; break;
	case R_DEVICE_ID: v = d->device_id; break;
	case R_VENDOR_ID: v = VMMIO_VENDOR; break;
	case R_DF: v = virtio_get_host_features(d, vm->dfselect); break;
	case R_Q_NUM_MAX: v = q ? q->max_size : 0; break;
	case R_Q_READY: v = q ? q->enabled : 0; break;
	case R_INT_STATUS: v = vm->isr; break;
	case R_STATUS: v = d->status; break;
	case R_CFG_GEN: v = d->config_generation; break;
	default: break;
	}
	pthread_mutex_unlock(&vm->lock);
	return v;
}

static void set32(uint64_t *f, bool hi, uint32_t v)
{
	*f = hi ? (*f & 0xffffffffull) | ((uint64_t)v << 32) : (*f & ~0xffffffffull) | v;
}

static void vmmio_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct virtio_mmio *vm = opaque;
	struct virtio_dev *d = vm->vdev;
	uint32_t v = (uint32_t)val;
	struct virtq *q;
	bool q_writable;
	uint64_t one = 1;

	if (off >= R_CONFIG) {
		if (off - R_CONFIG + size <= d->config_size && d->ops->config_write)
			d->ops->config_write(d, (uint32_t)(off - R_CONFIG), &val, size);
		return;
	}
	if (size != 4)
		return;
	if (off == R_Q_NOTIFY) {
		/* A kick that was not caught by the ioeventfd: forward it to the I/O thread. */
		if (v < d->num_queues && write(vm->kick_fd[v], &one, sizeof(one)) < 0)
			log_guest(&vm->rl, d->name, "queue %u: kick lost", v);
		return;
	}
	if (off == R_STATUS) {
		virtio_set_status(d, (uint8_t)v);
		return;
	}
	if (off == R_GF) {
		virtio_set_driver_features(d, vm->gfselect, v);
		return;
	}
	pthread_mutex_lock(&vm->lock);
	q = vmmio_selected(vm);
	q_writable = q && !q->enabled && !(d->status & VIRTIO_STATUS_DRIVER_OK);
	switch (off) {
	case R_DF_SEL: vm->dfselect = v; break;
	case R_GF_SEL: vm->gfselect = v; break;
	case R_Q_SEL: vm->queue_select = v; break;
	case R_Q_NUM: if (q_writable) q->size = (uint16_t)(v > 0xffff ? 0 : v); break;
	case R_Q_READY: if (q_writable && v == 1) q->enabled = true; break;
	case R_INT_ACK:
		vm->isr &= ~v;
		if (!vm->isr)
			irq_set_level(&vm->irq, false);
		break;
	case R_Q_DESC_LO: case R_Q_DESC_HI:
		if (q_writable) set32(&q->desc_gpa, off == R_Q_DESC_HI, v);
		break;
	case R_Q_AVAIL_LO: case R_Q_AVAIL_HI:
		if (q_writable) set32(&q->avail_gpa, off == R_Q_AVAIL_HI, v);
		break;
	case R_Q_USED_LO: case R_Q_USED_HI:
		if (q_writable) set32(&q->used_gpa, off == R_Q_USED_HI, v);
		break;
	default: break;
	}
	pthread_mutex_unlock(&vm->lock);
}

const struct bus_dev_ops virtio_mmio_ops = { .read = vmmio_read, .write = vmmio_write };

int virtio_mmio_init(struct virtio_mmio *vm, struct virtio_dev *vdev, const struct msi_host *msi,
		     struct loop *loop, uint64_t base)
{
	int e;

	memset(vm, 0, sizeof(*vm));
	pthread_mutex_init(&vm->lock, NULL);
	vm->vdev = vdev;
	vm->msi = msi;
	vm->loop = loop;
	vm->base = base;
	vm->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	vdev->transport = vm;
	vdev->tops = &vmmio_transport_ops;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vm->kick_fd[q] = -1;
	for (unsigned q = 0; q < vdev->num_queues; q++) {
		vm->kick_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vm->kick_fd[q] < 0) {
			e = -errno;
			goto err;
		}
		vm->kick_ctx[q] = (struct vmmio_kick_ctx){ .vm = vm, .q = q };
		e = loop_add(loop, vm->kick_fd[q], EPOLLIN, vmmio_kick_cb, &vm->kick_ctx[q]);
		if (e < 0)
			goto err;
	}
	/* QueueNotify takes the queue index as data: one ioeventfd per value. */
	vm->kicks_on_ioeventfd = msi && msi->ops;
	for (unsigned q = 0; vm->kicks_on_ioeventfd && q < vdev->num_queues; q++) {
		if (msi->ops->ioeventfd(msi->opaque, base + R_Q_NOTIFY, 4, false, q, vm->kick_fd[q], true) < 0) {
			while (q--)
				msi->ops->ioeventfd(msi->opaque, base + R_Q_NOTIFY, 4, false, q, vm->kick_fd[q], false);
			log_warn(vdev->name, "ioeventfd unavailable; queue kicks will exit to user space");
			vm->kicks_on_ioeventfd = false;
		}
	}
	return 0;
err:
	virtio_mmio_exit(vm);
	return e;
}

void virtio_mmio_exit(struct virtio_mmio *vm)
{
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (vm->kick_fd[q] < 0)
			continue;
		if (vm->kicks_on_ioeventfd)
			vm->msi->ops->ioeventfd(vm->msi->opaque, vm->base + R_Q_NOTIFY, 4, false, q,
						vm->kick_fd[q], false);
		if (vm->loop)
			loop_del(vm->loop, vm->kick_fd[q]);
		close(vm->kick_fd[q]);
		vm->kick_fd[q] = -1;
	}
}

/* ---- snapshot ---- */

void virtio_mmio_save(const struct virtio_mmio *vm, struct snap_writer *w)
{
	struct virtio_mmio *m = (struct virtio_mmio *)vm;   /* for the lock only */
	struct virtio_dev *d = vm->vdev;

	pthread_mutex_lock(&m->lock);
	snap_put_u32(w, VMMIO_SNAP_VERSION);
	snap_put_u64(w, vm->base);
	snap_put_u32(w, vm->dfselect);
	snap_put_u32(w, vm->gfselect);
	snap_put_u32(w, vm->queue_select);
	snap_put_u32(w, vm->isr);
	pthread_mutex_unlock(&m->lock);
	virtio_dev_save(d, w);
	if (d->ops->save)
		d->ops->save(d, w);
}

int virtio_mmio_load(struct virtio_mmio *vm, struct snap_sec *s, bool apply, char *err, size_t errlen)
{
	struct virtio_dev *d = vm->vdev;
	struct virtio_dev_snap *st = malloc(sizeof(*st));
	uint32_t version, dfsel, gfsel, qsel, isr;
	struct snap_sec dev_at;
	uint64_t base;
	int rc = -EINVAL;

	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	version = snap_get_u32(s);
	base = snap_get_u64(s);
	dfsel = snap_get_u32(s);
	gfsel = snap_get_u32(s);
	qsel = snap_get_u32(s);
	isr = snap_get_u32(s);
	if (s->err)
		snprintf(err, errlen, "virtio-mmio state is truncated");
	else if (version != VMMIO_SNAP_VERSION)
		snprintf(err, errlen, "virtio-mmio state has layout version %u, this kestrel reads %u", version,
			 VMMIO_SNAP_VERSION);
	else if (base != vm->base)
		snprintf(err, errlen, "snapshot has the device at %#llx, this machine at %#llx",
			 (unsigned long long)base, (unsigned long long)vm->base);
	else if (isr & ~3u)
		snprintf(err, errlen, "interrupt status %#x has bits other than queue and configuration", isr);
	else
		rc = virtio_dev_load_check(d, s, st, err, errlen);
	if (rc == 0)
		rc = virtio_dev_load_check_device(d, s, &dev_at, err, errlen);
	if (rc < 0) {
		snap_sec_fail(s);
		goto out;
	}
	if (!apply)
		goto out;

	rc = virtio_dev_load_commit(d, st, &dev_at, err, errlen);
	if (rc < 0)
		goto out;
	pthread_mutex_lock(&vm->lock);
	vm->dfselect = dfsel;
	vm->gfselect = gfsel;
	vm->queue_select = qsel;
	vm->isr = isr;
	irq_set_level(&vm->irq, isr != 0);
	pthread_mutex_unlock(&vm->lock);
	rc = virtio_dev_restored(d);
	if (rc < 0) {
		snprintf(err, errlen, "cannot restart the device: %s", strerror(-rc));
		goto out;
	}
	for (unsigned q = 0; q < d->num_queues; q++) {
		uint64_t one = 1;

		if (d->queues[q].enabled && write(vm->kick_fd[q], &one, sizeof(one)) < 0)
			log_warn(d->name, "queue %u: cannot queue a kick after restore", q);
	}
out:
	free(st);
	return rc;
}

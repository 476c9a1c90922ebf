/*
 * The transport-independent part of a virtio device: feature negotiation,
 * the status state machine, queue activation, interrupts and the
 * NEEDS_RESET path for drivers that break the protocol.
 */
#include "virtio/virtio.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "snapshot/snap.h"

/* What every kestrel virtio device offers on top of its own bits. */
#define VIRTIO_CORE_FEATURES \
	(VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))

void virtio_dev_init(struct virtio_dev *d, const char *name, uint16_t device_id,
		     const struct virtio_dev_ops *ops, void *priv, unsigned num_queues,
		     uint16_t max_queue_size, uint32_t config_size, const struct guest_mem *gm)
{
	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	d->name = name;
	d->device_id = device_id;
	d->ops = ops;
	d->priv = priv;
	d->gm = gm;
	d->config_size = config_size;
	d->num_queues = num_queues > VIRTIO_MAX_QUEUES ? VIRTIO_MAX_QUEUES : num_queues;
	d->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	for (unsigned i = 0; i < d->num_queues; i++) {
		d->queues[i].max_size = max_queue_size;
		d->queues[i].size = max_queue_size;
		d->queues[i].msix_vector = 0xffff;
		vq_reset(&d->queues[i]);
	}
	d->host_features = VIRTIO_CORE_FEATURES | (ops->features ? ops->features(d) : 0);
}

bool virtio_has_feature(const struct virtio_dev *d, unsigned bit)
{
	return bit < 64 && (d->driver_features & VIRTIO_BIT(bit));
}

uint32_t virtio_get_host_features(struct virtio_dev *d, unsigned sel)
{
	return sel == 0 ? (uint32_t)d->host_features : sel == 1 ? (uint32_t)(d->host_features >> 32) : 0;
}

void virtio_set_driver_features(struct virtio_dev *d, unsigned sel, uint32_t value)
{
	pthread_mutex_lock(&d->lock);
	/* Features are frozen once FEATURES_OK is set. */
	if (!(d->status & VIRTIO_STATUS_FEATURES_OK)) {
		if (sel == 0)
			d->driver_features = (d->driver_features & ~0xffffffffull) | value;
		else if (sel == 1)
			d->driver_features = (d->driver_features & 0xffffffffull) | ((uint64_t)value << 32);
	}
	pthread_mutex_unlock(&d->lock);
}

/* Caller holds d->lock. */
static void virtio_reset_locked(struct virtio_dev *d)
{
	if (d->ops->reset && (d->status & VIRTIO_STATUS_DRIVER_OK))
		d->ops->reset(d);
	d->status = 0;
	d->driver_features = 0;
	for (unsigned i = 0; i < d->num_queues; i++) {
		struct virtq *q = &d->queues[i];

		q->enabled = false;
		q->size = q->max_size;
		q->msix_vector = 0xffff;
		q->desc_gpa = q->avail_gpa = q->used_gpa = 0;
		vq_reset(q);
	}
}

void virtio_reset(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	virtio_reset_locked(d);
	pthread_mutex_unlock(&d->lock);
}

static bool virtio_features_acceptable(struct virtio_dev *d)
{
	uint64_t f = d->driver_features;

	/* kestrel is a modern-only device: a legacy driver is refused here. */
	if (!(f & VIRTIO_BIT(VIRTIO_F_VERSION_1)))
		return false;
	if (f & ~d->host_features)
		return false;
	return !d->ops->features_ok || d->ops->features_ok(d, f);
}

/* The status bits Virtio 1.2 (2.1) defines; a snapshot with others is refused. */
#define VIRTIO_STATUS_KNOWN \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK | \
	 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)

/* Caller holds d->lock. 0, or -errno after which the device needs a reset. */
static int virtio_activate_locked(struct virtio_dev *d)
{
	bool event_idx = virtio_has_feature(d, VIRTIO_F_EVENT_IDX);
	bool indirect = virtio_has_feature(d, VIRTIO_F_INDIRECT_DESC);

	for (unsigned i = 0; i < d->num_queues; i++) {
		struct virtq *q = &d->queues[i];

		if (!q->enabled)
			continue;
		if (vq_activate(q, d->gm, event_idx, indirect) < 0) {
			log_guest(&d->rl, d->name, "queue %u: size %u is not a power of two up to %u, or its "
				  "rings are not aligned inside guest RAM", i, q->size, q->max_size);
			return -EINVAL;
		}
	}
	return d->ops->activate ? d->ops->activate(d) : 0;
}

void virtio_set_status(struct virtio_dev *d, uint8_t status)
{
	bool fail = false;

	pthread_mutex_lock(&d->lock);
	if (status == 0) {
		virtio_reset_locked(d);
		goto out;
	}
	/*
	 * Only a reset clears status bits (Virtio 1.2, 2.1.2: the driver never
	 * does otherwise). A write that leaves bits out adds the others: were
	 * DRIVER_OK dropped, the queues would stay in use behind a status that
	 * says they are not, a state no snapshot of this device could restore.
	 */
	status |= d->status & (uint8_t)~VIRTIO_STATUS_NEEDS_RESET;
	/* Bits the specification reserves mean nothing: they are not kept either. */
	status &= VIRTIO_STATUS_KNOWN;
	/* FEATURES_OK sticks only if the negotiated set is acceptable. */
	if ((status & VIRTIO_STATUS_FEATURES_OK) && !(d->status & VIRTIO_STATUS_FEATURES_OK) &&
	    !virtio_features_acceptable(d))
		status &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
	if ((status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_DRIVER_OK)) {
		if (!(status & VIRTIO_STATUS_FEATURES_OK) || virtio_activate_locked(d) < 0) {
			status &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
			fail = true;
		}
	}
	/* NEEDS_RESET is the device's to set, never the driver's. */
	d->status = (uint8_t)((status & ~VIRTIO_STATUS_NEEDS_RESET) | (d->status & VIRTIO_STATUS_NEEDS_RESET));
	if (fail)
		d->status |= VIRTIO_STATUS_NEEDS_RESET;
out:
	pthread_mutex_unlock(&d->lock);
	if (fail)
		virtio_notify_config(d);
}

void virtio_notify_queue(struct virtio_dev *d, unsigned q)
{
	if (q >= d->num_queues || !d->tops)
		return;
	if (!vq_need_notify(&d->queues[q])) {
		__atomic_add_fetch(&d->metrics.suppressed, 1, __ATOMIC_RELAXED);
		return;
	}
	__atomic_add_fetch(&d->metrics.interrupts, 1, __ATOMIC_RELAXED);
	d->tops->notify_queue(d, q);
}

void virtio_notify_config(struct virtio_dev *d)
{
	if (!d->tops)
		return;
	__atomic_add_fetch(&d->config_generation, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&d->metrics.interrupts, 1, __ATOMIC_RELAXED);
	d->tops->notify_config(d);
}

void virtio_fail(struct virtio_dev *d, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	bool first;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&d->lock);
	first = !(d->status & VIRTIO_STATUS_NEEDS_RESET);
	d->status |= VIRTIO_STATUS_NEEDS_RESET;
	pthread_mutex_unlock(&d->lock);
	__atomic_add_fetch(&d->metrics.errors, 1, __ATOMIC_RELAXED);
	if (!first)
		return;
	log_guest(&d->rl, d->name, "driver error, device needs reset: %s", msg);
	virtio_notify_config(d);
}

/* ---- pause and snapshot ---- */


void virtio_dev_quiesce(struct virtio_dev *d)
{
	if (d->ops->quiesce)
		d->ops->quiesce(d);
}

void virtio_dev_save(const struct virtio_dev *d, struct snap_writer *w)
{
	snap_put_u32(w, VIRTIO_SNAP_VERSION);
	snap_put_u16(w, d->device_id);
	snap_put_u32(w, d->num_queues);
	snap_put_u64(w, d->host_features);
	snap_put_u64(w, d->driver_features);
	snap_put_u8(w, d->status);
	snap_put_u8(w, d->config_generation);
	for (unsigned i = 0; i < d->num_queues; i++)
		vq_save(&d->queues[i], w);
}

/* The queues against the status: what activation would have left. */
static int virtio_check_queues(const struct virtio_dev *d, const struct virtio_dev_snap *st,
			       char *err, size_t errlen)
{
	bool event_idx = st->driver_features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
	bool indirect = st->driver_features & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
	bool driver_ok = st->status & VIRTIO_STATUS_DRIVER_OK;
	bool needs_reset = st->status & VIRTIO_STATUS_NEEDS_RESET;

	for (unsigned i = 0; i < d->num_queues; i++) {
		const struct virtq *q = &st->queues[i];
		bool armed = q->gm != NULL;

		/* A failed activation (NEEDS_RESET without DRIVER_OK) may leave some queues armed. */
		if (armed && !driver_ok && !needs_reset) {
			snprintf(err, errlen, "queue %u is in use but the driver is not (status %#x)", i, st->status);
			return -EINVAL;
		}
		if (driver_ok && q->enabled != armed) {
			snprintf(err, errlen, "queue %u is %s but %s", i, q->enabled ? "enabled" : "not enabled",
				 armed ? "in use" : "not in use");
			return -EINVAL;
		}
		if (armed && (q->event_idx != event_idx || q->indirect != indirect)) {
			snprintf(err, errlen, "queue %u: ring features differ from the negotiated ones", i);
			return -EINVAL;
		}
	}
	return 0;
}

int virtio_dev_load_check(const struct virtio_dev *d, struct snap_sec *s, struct virtio_dev_snap *st,
			  char *err, size_t errlen)
{
	uint32_t version, nq;
	uint16_t id;
	uint64_t f;

	memset(st, 0, sizeof(*st));
	version = snap_get_u32(s);
	id = snap_get_u16(s);
	nq = snap_get_u32(s);
	(void)snap_get_u64(s);       /* what was offered then; what counts is what is offered now */
	st->driver_features = snap_get_u64(s);
	st->status = snap_get_u8(s);
	st->config_generation = snap_get_u8(s);
	if (s->err) {
		snprintf(err, errlen, "virtio state is truncated");
		return -EINVAL;
	}
	if (version != VIRTIO_SNAP_VERSION) {
		snprintf(err, errlen, "virtio state has layout version %u, this kestrel reads %u", version,
			 VIRTIO_SNAP_VERSION);
		goto bad;
	}
	if (id != d->device_id || nq != d->num_queues) {
		snprintf(err, errlen, "snapshot has virtio device id %u with %u queues, this one is id %u with %u",
			 id, nq, d->device_id, d->num_queues);
		goto bad;
	}
	if (st->status & ~VIRTIO_STATUS_KNOWN) {
		snprintf(err, errlen, "unknown device status bits %#x", st->status);
		goto bad;
	}
	f = st->driver_features;
	if (st->status & VIRTIO_STATUS_FEATURES_OK) {
		/* Before FEATURES_OK anything may be in the register; after it, only a valid set. */
		if (f & ~d->host_features) {
			snprintf(err, errlen, "driver features %#llx include %#llx, which this device does not offer",
				 (unsigned long long)f, (unsigned long long)(f & ~d->host_features));
			goto bad;
		}
		if (!(f & VIRTIO_BIT(VIRTIO_F_VERSION_1)) ||
		    (d->ops->features_ok && !d->ops->features_ok((struct virtio_dev *)d, f))) {
			snprintf(err, errlen, "driver features %#llx are not acceptable to this device",
				 (unsigned long long)f);
			goto bad;
		}
	} else if (st->status & VIRTIO_STATUS_DRIVER_OK) {
		snprintf(err, errlen, "status %#x has DRIVER_OK without FEATURES_OK", st->status);
		goto bad;
	}
	for (unsigned i = 0; i < d->num_queues; i++) {
		st->queues[i] = d->queues[i];
		if (vq_load(&st->queues[i], s, d->gm) < 0) {
			snprintf(err, errlen, "queue %u: truncated, or a bad size, ring address or index", i);
			goto bad;
		}
	}
	if (virtio_check_queues(d, st, err, errlen) < 0)
		goto bad;
	return 0;

bad:
	snap_sec_fail(s);
	return -EINVAL;
}

int virtio_dev_load_check_device(struct virtio_dev *d, struct snap_sec *s, struct snap_sec *dev_at,
				 char *err, size_t errlen)
{
	*dev_at = *s;
	return d->ops->load ? d->ops->load(d, s, false, err, errlen) : 0;
}

int virtio_dev_load_commit(struct virtio_dev *d, const struct virtio_dev_snap *st, struct snap_sec *dev_at,
			   char *err, size_t errlen)
{
	pthread_mutex_lock(&d->lock);
	/* A running device lets go of its queues first, as for a driver reset. */
	if (d->ops->reset && (d->status & VIRTIO_STATUS_DRIVER_OK))
		d->ops->reset(d);
	d->driver_features = st->driver_features;
	d->status = st->status;
	d->config_generation = st->config_generation;
	for (unsigned i = 0; i < d->num_queues; i++)
		d->queues[i] = st->queues[i];
	pthread_mutex_unlock(&d->lock);
	return d->ops->load ? d->ops->load(d, dev_at, true, err, errlen) : 0;
}

int virtio_dev_restored(struct virtio_dev *d)
{
	int rc = 0;

	pthread_mutex_lock(&d->lock);
	if ((d->status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_NEEDS_RESET)) {
		/* With d->lock held, as activation runs. */
		if (d->ops->restore)
			rc = d->ops->restore(d);
		else if (d->ops->activate)
			rc = d->ops->activate(d);
		if (rc < 0)
			d->status = (uint8_t)((d->status & ~VIRTIO_STATUS_DRIVER_OK) | VIRTIO_STATUS_NEEDS_RESET);
	}
	pthread_mutex_unlock(&d->lock);
	if (rc < 0)
		virtio_notify_config(d);
	return rc;
}

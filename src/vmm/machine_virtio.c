/*
 * Paravirtual devices of a machine: each virtio device gets its own I/O
 * thread and a transport (PCI by default, MMIO on request), with KVM's
 * irqfd, ioeventfd and MSI routes behind the transport's msi_host.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/epoll.h>

#include "backends/net.h"
#include "devices/e1000.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/net.h"
#include "devices/virtio/vhost_user_blk.h"
#include "devices/virtio/vhost_user_net.h"
#include "machine_priv.h"
#include "mem/layout.h"
#include "snapshot/snap.h"
#include "util/log.h"

/* virtio-mmio devices: 4 KiB windows from LAYOUT_VIRTIO_MMIO_START, IOAPIC pins from 16 up. */
#define MMIO_FIRST_GSI LAYOUT_PCI_IRQ_BASE

static int msi_route_alloc(void *opaque)
{
	return vm_msi_route_alloc(opaque);
}

static int msi_route_set(void *opaque, unsigned gsi, uint64_t addr, uint32_t data)
{
	return vm_msi_route_set(opaque, gsi, addr, data);
}

static void msi_route_free(void *opaque, unsigned gsi)
{
	vm_msi_route_free(opaque, gsi);
}

static int msi_irqfd(void *opaque, int fd, unsigned gsi, bool assign)
{
	return vm_irqfd(opaque, fd, gsi, assign);
}

static int msi_ioeventfd(void *opaque, uint64_t addr, unsigned len, bool pio, int64_t match, int fd, bool assign)
{
	return vm_ioeventfd(opaque, addr, len, pio, match, fd, assign);
}

static const struct msi_host_ops machine_msi_ops = {
	.route_alloc = msi_route_alloc,
	.route_set = msi_route_set,
	.route_free = msi_route_free,
	.irqfd = msi_irqfd,
	.ioeventfd = msi_ioeventfd,
};

static int io_cpu(const struct machine_config *cfg, unsigned idx)
{
	return cfg->n_io_cpus ? cfg->io_cpus[idx % cfg->n_io_cpus] : -1;
}

/* Reserve a slot with a fresh I/O thread (not started yet). */
static struct machine_vdev *machine_vdev_slot(struct machine *m, const struct machine_config *cfg,
					      const char *name, char *err, size_t errlen)
{
	struct machine_vdev *s;
	char tname[16];

	if (m->nvdevs == MACHINE_MAX_VDEVS) {
		snprintf(err, errlen, "too many virtio devices (at most %d)", MACHINE_MAX_VDEVS);
		return NULL;
	}
	s = &m->vdevs[m->nvdevs];
	memset(s, 0, sizeof(*s));
	snprintf(tname, sizeof(tname), "io-%s", name);
	if (iothread_init(&s->io, tname, io_cpu(cfg, m->nvdevs)) < 0) {
		snprintf(err, errlen, "%s: cannot create its I/O thread", name);
		return NULL;
	}
	return s;
}

/* Attach a device created on slot s's I/O loop to its transport. */
static int machine_vdev_attach(struct machine *m, const struct machine_config *cfg, struct machine_vdev *s,
			       struct virtio_dev *vdev, char *err, size_t errlen)
{
	int e;

	s->vdev = vdev;
	m->nvdevs++;
	if (cfg->transport_mmio) {
		unsigned idx = (unsigned)(s - m->vdevs);

		s->mmio = calloc(1, sizeof(*s->mmio));
		s->mmio_base = LAYOUT_VIRTIO_MMIO_START + (uint64_t)idx * VMMIO_SIZE;
		s->gsi = MMIO_FIRST_GSI + idx;
		if (!s->mmio || s->gsi >= LAYOUT_IOAPIC_PINS) {
			snprintf(err, errlen, "%s: no room for another virtio-mmio device", vdev->name);
			return -ENOSPC;
		}
		e = virtio_mmio_init(s->mmio, vdev, &m->msi, s->io.loop, s->mmio_base);
		if (e == 0) {
			vm_irq_init(&m->vm, &s->mmio->irq, s->gsi);
			e = bus_register(&m->vm.mmio, s->mmio_base, VMMIO_SIZE, BUS_SZ_ANY, &virtio_mmio_ops,
					 s->mmio, vdev->name);
		}
	} else {
		int slot;

		s->pci = calloc(1, sizeof(*s->pci));
		if (!s->pci)
			return -ENOMEM;
		e = virtio_pci_init(s->pci, vdev, &m->msi, s->io.loop);
		if (e == 0) {
			slot = pci_host_add(&m->pci, &s->pci->pci, 1);
			if (slot < 0)
				e = slot;
			else
				vm_irq_init(&m->vm, &s->pci->intx, LAYOUT_PCI_IRQ((unsigned)slot, 0));
		}
	}
	if (e < 0)
		snprintf(err, errlen, "%s: cannot attach to the %s transport: %s", vdev->name,
			 cfg->transport_mmio ? "mmio" : "pci", strerror(-e));
	return e;
}

static void free_rng(void *p)
{
	free(p);
}

static void free_vcon(void *p)
{
	vcon_exit(p);
	free(p);
}

static int machine_add_rng(struct machine *m, const struct machine_config *cfg, char *err, size_t errlen)
{
	struct machine_vdev *s = machine_vdev_slot(m, cfg, "rng", err, errlen);
	struct virtio_rng *r;

	if (!s)
		return -ENOSPC;
	r = calloc(1, sizeof(*r));
	if (!r) {
		iothread_exit(&s->io);
		return -ENOMEM;
	}
	rng_init(r, &m->vm.gm);
	s->dev = r;
	s->free = free_rng;
	return machine_vdev_attach(m, cfg, s, &r->vdev, err, errlen);
}

static int machine_add_console(struct machine *m, const struct machine_config *cfg, char *err, size_t errlen)
{
	struct machine_vdev *s = machine_vdev_slot(m, cfg, "console", err, errlen);
	struct virtio_console *c;
	int e;

	if (!s)
		return -ENOSPC;
	c = calloc(1, sizeof(*c));
	if (!c) {
		iothread_exit(&s->io);
		return -ENOMEM;
	}
	vcon_init(c, &m->vm.gm, &m->console);
	e = vcon_attach(c, s->io.loop);
	s->dev = c;
	s->free = free_vcon;
	if (e < 0) {
		m->nvdevs++;
		snprintf(err, errlen, "virtio-console: %s", strerror(-e));
		return e;
	}
	m->vcon = c;
	return machine_vdev_attach(m, cfg, s, &c->vdev, err, errlen);
}

static void free_disk(void *p)
{
	blk_free(p);
}

static void free_vublk(void *p)
{
	vublk_free(p);
}

/* A disk served by a vhost-user back-end: kestrel's I/O thread only forwards INTx interrupts. */
static int machine_add_vublk(struct machine *m, const struct machine_config *cfg, const struct blk_config *bc,
			     const char *name, char *err, size_t errlen)
{
	struct machine_vdev *s;
	struct vhost_user_blk *vb;
	int e;

	if (cfg->transport_mmio) {
		snprintf(err, errlen, "disk vhost-user=%s: needs the virtio-pci transport, not mmio", bc->path);
		return -EINVAL;
	}
	s = machine_vdev_slot(m, cfg, name, err, errlen);
	if (!s)
		return -ENOSPC;
	e = vublk_new(&vb, bc->path, &m->vm.gm, err, errlen);
	if (e < 0) {
		iothread_exit(&s->io);
		return e;
	}
	s->dev = vb;
	s->free = free_vublk;
	e = vublk_attach(vb, s->io.loop);
	if (e < 0) {
		m->nvdevs++;
		snprintf(err, errlen, "disk vhost-user=%s: event loop: %s", bc->path, strerror(-e));
		return e;
	}
	return machine_vdev_attach(m, cfg, s, vublk_virtio(vb), err, errlen);
}

static int machine_add_disk(struct machine *m, const struct machine_config *cfg, const struct blk_config *bc,
			    unsigned idx, char *err, size_t errlen)
{
	struct machine_vdev *s;
	struct virtio_blk *blk;
	char name[16];
	int e;

	snprintf(name, sizeof(name), "blk%u", idx);
	if (bc->vhost_user)
		return machine_add_vublk(m, cfg, bc, name, err, errlen);
	s = machine_vdev_slot(m, cfg, name, err, errlen);
	if (!s)
		return -ENOSPC;
	e = blk_new(&blk, bc, &m->vm.gm, err, errlen);
	if (e < 0) {
		iothread_exit(&s->io);
		return e;
	}
	s->dev = blk;
	s->free = free_disk;
	e = blk_attach(blk, s->io.loop);
	if (e < 0) {
		m->nvdevs++;
		snprintf(err, errlen, "disk %s: event loop: %s", bc->path, strerror(-e));
		return e;
	}
	return machine_vdev_attach(m, cfg, s, blk_virtio(blk), err, errlen);
}

int machine_set_disk_rate_limit(struct machine *m, unsigned index, const struct ratelimit_config *rl, char *err,
				size_t errlen)
{
	int e = ratelimit_config_check(rl, "rate_limiter", err, errlen);

	if (e < 0)
		return e;
	for (unsigned i = 0, k = 0; i < m->nvdevs; i++) {
		if (m->vdevs[i].free != free_disk || k++ != index)
			continue;
		blk_set_rate_limit(m->vdevs[i].dev, rl);
		/* What a snapshot of this machine saves from now on. */
		if (index < m->cfg.ndisks)
			m->cfg.disks[index].rate_limit = *rl;
		return 0;
	}
	snprintf(err, errlen, "the machine has no disk %u", index);
	return -EINVAL;
}

struct net_slot {
	struct virtio_net *net;
};

static void free_net(void *p)
{
	struct net_slot *ns = p;

	vnet_detach(ns->net);
	vnet_free(ns->net);
	free(ns);
}

/* The emulated Intel 82540EM: same backends, a real NIC's registers. */
static int machine_add_e1000(struct machine *m, const struct machine_config *cfg, const struct vnet_config *nc,
			     unsigned idx, char *err, size_t errlen)
{
	struct machine_nic *nic;
	struct e1000_config ec = {
		.net = { .kind = nc->backend, .ifname = nc->ifname, .hostfwd = nc->hostfwd,
			 .nr_hostfwd = nc->nr_hostfwd },
	};
	char name[24];   /* "io-e1000-" and any unsigned */
	int e, slot;

	if (m->nnics == MACHINE_MAX_NICS) {
		snprintf(err, errlen, "too many e1000 NICs (at most %d)", MACHINE_MAX_NICS);
		return -ENOSPC;
	}
	nic = &m->nics[m->nnics];
	memset(nic, 0, sizeof(*nic));
	snprintf(name, sizeof(name), "io-e1000-%u", idx);
	memcpy(ec.mac, nc->mac, sizeof(ec.mac));
	e = iothread_init(&nic->io, name, io_cpu(cfg, m->nvdevs + m->nnics));
	if (e < 0) {
		snprintf(err, errlen, "e1000: cannot create its I/O thread");
		return e;
	}
	e = e1000_new(&nic->dev, &ec, &m->vm.gm, &m->msi, err, errlen);
	m->nnics++;
	if (e < 0)
		return e;
	slot = pci_host_add(&m->pci, e1000_pci(nic->dev), 1);
	if (slot < 0) {
		snprintf(err, errlen, "e1000: no free PCI slot");
		return slot;
	}
	vm_irq_init(&m->vm, &nic->intx, LAYOUT_PCI_IRQ((unsigned)slot, 0));
	e1000_set_irq(nic->dev, &nic->intx);
	e = e1000_attach(nic->dev, nic->io.loop);
	if (e < 0)
		snprintf(err, errlen, "e1000: event loop: %s", strerror(-e));
	return e;
}

static void free_vunet(void *p)
{
	vunet_free(p);
}

/* A NIC served by a vhost-user back-end: kestrel's I/O thread only forwards INTx and notices hang-ups. */
static int machine_add_vunet(struct machine *m, const struct machine_config *cfg, const struct net_config *n,
			     const char *name, char *err, size_t errlen)
{
	struct machine_vdev *s;
	struct vhost_user_net *vn;
	int e;

	if (cfg->transport_mmio) {
		snprintf(err, errlen, "net vhost-user=%s: needs the virtio-pci transport, not mmio", n->vhost_socket);
		return -EINVAL;
	}
	s = machine_vdev_slot(m, cfg, name, err, errlen);
	if (!s)
		return -ENOSPC;
	e = vunet_new(&vn, n->vhost_socket, n->mac, &m->vm.gm, err, errlen);
	if (e < 0) {
		iothread_exit(&s->io);
		return e;
	}
	s->dev = vn;
	s->free = free_vunet;
	e = vunet_attach(vn, s->io.loop);
	if (e < 0) {
		m->nvdevs++;
		snprintf(err, errlen, "net vhost-user=%s: event loop: %s", n->vhost_socket, strerror(-e));
		return e;
	}
	return machine_vdev_attach(m, cfg, s, vunet_virtio(vn), err, errlen);
}

static int machine_add_net(struct machine *m, const struct machine_config *cfg, const struct net_config *n,
			   unsigned idx, char *err, size_t errlen)
{
	struct vnet_config nc = { .backend = n->backend, .nr_hostfwd = n->nr_hostfwd, .mtu = n->mtu };
	struct machine_vdev *s;
	struct net_slot *ns;
	char name[16];
	int e;

	memcpy(nc.ifname, n->ifname, sizeof(nc.ifname));
	memcpy(nc.hostfwd, n->hostfwd, sizeof(nc.hostfwd));
	memcpy(nc.mac, n->mac, sizeof(nc.mac));
	if (n->model == NET_MODEL_E1000)
		return machine_add_e1000(m, cfg, &nc, idx, err, errlen);
	snprintf(name, sizeof(name), "net%u", idx);
	if (n->backend == NET_BACKEND_VHOST_USER)
		return machine_add_vunet(m, cfg, n, name, err, errlen);
	s = machine_vdev_slot(m, cfg, name, err, errlen);
	if (!s)
		return -ENOSPC;
	ns = calloc(1, sizeof(*ns));
	if (!ns) {
		iothread_exit(&s->io);
		return -ENOMEM;
	}
	e = vnet_new(&ns->net, &nc, &m->vm.gm, err, errlen);
	if (e < 0) {
		free(ns);
		iothread_exit(&s->io);
		return e;
	}
	s->dev = ns;
	s->free = free_net;
	e = vnet_attach(ns->net, s->io.loop);
	if (e < 0) {
		m->nvdevs++;
		snprintf(err, errlen, "net%u: event loop: %s", idx, strerror(-e));
		return e;
	}
	return machine_vdev_attach(m, cfg, s, vnet_virtio(ns->net), err, errlen);
}

/* Tell a Linux guest where the virtio-mmio devices are (it has no other way to find them). */
static int machine_mmio_cmdline(struct machine *m, const struct machine_config *cfg)
{
	size_t len = strlen(cfg->cmdline) + 1;
	char *p;

	for (unsigned i = 0; i < m->nvdevs; i++)
		len += 64;
	m->cmdline = malloc(len);
	if (!m->cmdline)
		return -ENOMEM;
	p = m->cmdline;
	p += sprintf(p, "%s", cfg->cmdline);
	for (unsigned i = 0; i < m->nvdevs; i++)
		if (m->vdevs[i].mmio)
			p += sprintf(p, " virtio_mmio.device=4K@%#llx:%u",
				     (unsigned long long)m->vdevs[i].mmio_base, m->vdevs[i].gsi);
	return 0;
}

int machine_add_virtio_devices(struct machine *m, const struct machine_config *cfg, char *err, size_t errlen)
{
	int e = 0;

	m->msi = (struct msi_host){ .ops = &machine_msi_ops, .opaque = &m->vm };
	if (cfg->virtio_console)
		e = machine_add_console(m, cfg, err, errlen);
	for (unsigned i = 0; !e && i < cfg->ndisks; i++)
		e = machine_add_disk(m, cfg, &cfg->disks[i], i, err, errlen);
	for (unsigned i = 0; !e && i < cfg->nnets; i++)
		e = machine_add_net(m, cfg, &cfg->nets[i], i, err, errlen);
	if (!e && cfg->rng)
		e = machine_add_rng(m, cfg, err, errlen);
	if (!e && cfg->transport_mmio)
		e = machine_mmio_cmdline(m, cfg);
	return e;
}

int machine_start_iothreads(struct machine *m)
{
	for (unsigned i = 0; i < m->nnics; i++) {
		int e = iothread_start(&m->nics[i].io);

		if (e < 0)
			return e;
	}
	for (unsigned i = 0; i < m->nvdevs; i++) {
		int e = iothread_start(&m->vdevs[i].io);

		if (e < 0)
			return e;
	}
	return 0;
}

/* --- pause, resume, snapshot ------------------------------------------- */

/* Layout of a "vdev.N" section: device id, transport kind, then the transport's save. */
#define MACHINE_VDEV_SNAP_VERSION 1
#define VDEV_TRANSPORT_PCI  0
#define VDEV_TRANSPORT_MMIO 1

void machine_virtio_pause(struct machine *m)
{
	/* Threads first, all of them: quiesce runs device code on this thread instead. */
	for (unsigned i = 0; i < m->nnics; i++)
		iothread_stop(&m->nics[i].io);
	for (unsigned i = 0; i < m->nvdevs; i++)
		iothread_stop(&m->vdevs[i].io);
	for (unsigned i = 0; i < m->nvdevs; i++)
		virtio_dev_quiesce(m->vdevs[i].vdev);
	for (unsigned i = 0; i < m->nnics; i++)
		e1000_quiesce(m->nics[i].dev);
}

int machine_virtio_resume(struct machine *m)
{
	/* Kicks and completions that came while paused wait in their eventfds for the threads. */
	int e = machine_start_iothreads(m);

	if (e < 0)
		return e;
	for (unsigned i = 0; i < m->nnics; i++)
		e1000_resume_work(m->nics[i].dev);
	return 0;
}

/* "blk0", "net1", "console", "rng": the I/O thread's name without "io-". */
static const char *vdev_label(const struct machine_vdev *s)
{
	return strncmp(s->io.name, "io-", 3) ? s->io.name : s->io.name + 3;
}

void machine_virtio_save(struct machine *m, struct snap_writer *w)
{
	char name[SNAP_NAME_LEN];

	for (unsigned i = 0; i < m->nvdevs; i++) {
		struct machine_vdev *s = &m->vdevs[i];

		snprintf(name, sizeof(name), "vdev.%u", i);
		snap_begin(w, name, MACHINE_VDEV_SNAP_VERSION);
		snap_put_u16(w, s->vdev->device_id);
		snap_put_u8(w, s->pci ? VDEV_TRANSPORT_PCI : VDEV_TRANSPORT_MMIO);
		if (s->pci)
			virtio_pci_save(s->pci, w);
		else
			virtio_mmio_save(s->mmio, w);
		snap_end(w);
	}
	for (unsigned i = 0; i < m->nnics; i++) {
		snprintf(name, sizeof(name), "e1000.%u", i);
		snap_begin(w, name, E1000_SNAP_VERSION);
		e1000_save(m->nics[i].dev, w);
		snap_end(w);
	}
}

/* Check (apply false) or apply one vdev's section. */
static int machine_vdev_load(struct machine *m, unsigned i, const struct snap_reader *r, bool apply,
			     char *err, size_t errlen)
{
	struct machine_vdev *v = &m->vdevs[i];
	char name[SNAP_NAME_LEN], why[256] = "";
	struct snap_sec s;
	uint16_t id;
	uint8_t kind;
	int e;

	snprintf(name, sizeof(name), "vdev.%u", i);
	if (snap_find(r, name, &s) < 0) {
		snprintf(err, errlen, "snapshot: no state for virtio device %u (%s)", i, vdev_label(v));
		return -EINVAL;
	}
	if (s.version != MACHINE_VDEV_SNAP_VERSION) {
		snprintf(err, errlen, "snapshot: %s (%s): layout version %u, this kestrel reads %u", name,
			 vdev_label(v), s.version, MACHINE_VDEV_SNAP_VERSION);
		return -EINVAL;
	}
	id = snap_get_u16(&s);
	kind = snap_get_u8(&s);
	if (s.err || id != v->vdev->device_id || kind != (v->pci ? VDEV_TRANSPORT_PCI : VDEV_TRANSPORT_MMIO)) {
		snprintf(err, errlen, "snapshot: %s (%s): snapshot has virtio device id %u on %s, this machine "
			 "id %u on %s", name, vdev_label(v), id, kind == VDEV_TRANSPORT_PCI ? "pci" : "mmio",
			 v->vdev->device_id, v->pci ? "pci" : "mmio");
		return -EINVAL;
	}
	e = v->pci ? virtio_pci_load(v->pci, &s, apply, why, sizeof(why)) :
		     virtio_mmio_load(v->mmio, &s, apply, why, sizeof(why));
	if (e == 0 && apply && snap_sec_end(&s) < 0) {
		snprintf(why, sizeof(why), "unexpected bytes at the end of the section");
		e = -EINVAL;
	}
	if (e < 0)
		snprintf(err, errlen, "snapshot: %s (%s): %s", name, vdev_label(v), why);
	return e;
}

int machine_virtio_load(struct machine *m, const struct snap_reader *r, char *err, size_t errlen)
{
	char name[SNAP_NAME_LEN];
	struct snap_sec s;
	int e;

	/* The same devices, no more: a section this machine has no device for is refused too. */
	snprintf(name, sizeof(name), "vdev.%u", m->nvdevs);
	if (snap_find(r, name, &s) == 0) {
		snprintf(err, errlen, "snapshot: it has more virtio devices than this machine's %u", m->nvdevs);
		return -EINVAL;
	}
	snprintf(name, sizeof(name), "e1000.%u", m->nnics);
	if (snap_find(r, name, &s) == 0) {
		snprintf(err, errlen, "snapshot: it has more e1000 NICs than this machine's %u", m->nnics);
		return -EINVAL;
	}
	for (unsigned i = 0; i < m->nvdevs; i++) {
		e = machine_vdev_load(m, i, r, false, err, errlen);
		if (e < 0)
			return e;
	}
	/* Each e1000 checks its whole section before it changes anything. */
	for (unsigned i = 0; i < m->nnics; i++) {
		snprintf(name, sizeof(name), "e1000.%u", i);
		if (snap_find(r, name, &s) < 0) {
			snprintf(err, errlen, "snapshot: no state for e1000 NIC %u", i);
			return -EINVAL;
		}
		e = e1000_load(m->nics[i].dev, &s);
		if (e == 0 && snap_sec_end(&s) < 0)
			e = -EINVAL;
		if (e < 0) {
			snprintf(err, errlen, "snapshot: %s: state refused (the log says why)", name);
			return e;
		}
	}
	for (unsigned i = 0; i < m->nvdevs; i++) {
		e = machine_vdev_load(m, i, r, true, err, errlen);
		if (e < 0)
			return e;
	}
	return 0;
}

void machine_free_virtio_devices(struct machine *m)
{
	/*
	 * Threads first: nothing may run device code while it is taken apart.
	 * The loops themselves go last: devices unregister their fds from them.
	 */
	for (unsigned i = 0; i < m->nnics; i++)
		iothread_stop(&m->nics[i].io);
	for (unsigned i = 0; i < m->nvdevs; i++)
		iothread_stop(&m->vdevs[i].io);
	for (unsigned i = 0; i < m->nnics; i++) {
		if (m->nics[i].dev) {
			e1000_detach(m->nics[i].dev);
			e1000_free(m->nics[i].dev);
			m->nics[i].dev = NULL;
		}
		iothread_exit(&m->nics[i].io);
	}
	m->nnics = 0;
	for (unsigned i = 0; i < m->nvdevs; i++) {
		struct machine_vdev *s = &m->vdevs[i];

		if (s->pci)
			virtio_pci_exit(s->pci);
		if (s->mmio)
			virtio_mmio_exit(s->mmio);
		if (s->free && s->dev)
			s->free(s->dev);
		free(s->pci);
		free(s->mmio);
		iothread_exit(&s->io);
	}
	m->nvdevs = 0;
	free(m->cmdline);
	m->cmdline = NULL;
}

static void machine_print_nic_stats(struct machine *m, FILE *out)
{
	fprintf(out, "kestrel: e1000 NICs\n  %-8s %10s %10s %10s %10s %10s %10s %10s %10s\n", "nic", "mmio", "pio",
		"tdt", "irqs", "rx_pkts", "tx_pkts", "rx_drop", "tx_drop");
	for (unsigned i = 0; i < m->nnics; i++) {
		struct e1000_stats st;

		e1000_get_stats(m->nics[i].dev, &st);
		fprintf(out, "  e1000-%-2u %10llu %10llu %10llu %10llu %10llu %10llu %10llu %10llu\n", i,
			(unsigned long long)st.mmio_exits, (unsigned long long)st.pio_exits,
			(unsigned long long)st.tdt_writes, (unsigned long long)st.irqs,
			(unsigned long long)st.rx_packets, (unsigned long long)st.tx_packets,
			(unsigned long long)st.rx_dropped, (unsigned long long)st.tx_dropped);
	}
}

void machine_print_virtio_stats(struct machine *m, FILE *out)
{
	if (m->nnics)
		machine_print_nic_stats(m, out);
	if (!m->nvdevs)
		return;
	fprintf(out, "kestrel: virtio devices\n  %-16s %10s %10s %10s %10s %10s %10s %10s %10s\n", "device",
		"kicks", "irqs", "suppressed", "requests", "rx_pkts", "tx_pkts", "errors", "throttled");
	for (unsigned i = 0; i < m->nvdevs; i++) {
		const struct virtio_metrics *x = &m->vdevs[i].vdev->metrics;

		fprintf(out, "  %-16s %10llu %10llu %10llu %10llu %10llu %10llu %10llu %10llu\n",
			m->vdevs[i].vdev->name, (unsigned long long)x->kicks, (unsigned long long)x->interrupts,
			(unsigned long long)x->suppressed, (unsigned long long)x->requests,
			(unsigned long long)x->rx_packets, (unsigned long long)x->tx_packets,
			(unsigned long long)x->errors, (unsigned long long)x->throttled);
	}
}

#include "pci/pci.h"
#include "mem/layout.h"
#include "snapshot/snap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HOST_BRIDGE_VENDOR 0x8086
#define HOST_BRIDGE_DEVICE 0x0d57
#define CLASS_HOST_BRIDGE  0x060000

static void pci_set_wmask16(struct pci_dev *d, unsigned off, uint16_t m)
{
	d->wmask[off] = (uint8_t)m;
	d->wmask[off + 1] = (uint8_t)(m >> 8);
}

static void pci_set_wmask32(struct pci_dev *d, unsigned off, uint32_t m)
{
	for (unsigned i = 0; i < 4; i++)
		d->wmask[off + i] = (uint8_t)(m >> (8 * i));
}

void pci_dev_init(struct pci_dev *d, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint8_t revision, const char *name)
{
	memset(d, 0, sizeof(*d));
	pci_set16(d, PCI_VENDOR_ID, vendor);
	pci_set16(d, PCI_DEVICE_ID, device);
	d->cfg[PCI_REVISION] = revision;
	d->cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
	d->cfg[PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
	d->cfg[PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
	pci_set_wmask16(d, PCI_COMMAND, PCI_CMD_IO | PCI_CMD_MEM | PCI_CMD_MASTER | PCI_CMD_INTX_OFF);
	d->wmask[PCI_CACHE_LINE] = 0xff;
	d->wmask[PCI_LATENCY] = 0xff;
	d->wmask[PCI_INT_LINE] = 0xff;
	d->next_cap = 0x40;
	d->name = name;
}

int pci_host_init(struct pci_host *h, struct bus *pio, struct bus *mmio, const struct sysevent_sink *sink)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->lock, NULL);
	h->pio = pio;
	h->mmio = mmio;
	h->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	if (sink)
		h->sink = *sink;
	pci_dev_init(&h->bridge, HOST_BRIDGE_VENDOR, HOST_BRIDGE_DEVICE, CLASS_HOST_BRIDGE, 0, "host-bridge");
	h->bridge.host = h;
	h->slots[0] = &h->bridge;
	return 0;
}

void pci_host_exit(struct pci_host *h)
{
	pthread_mutex_destroy(&h->lock);
}

int pci_host_add(struct pci_host *h, struct pci_dev *d, uint8_t int_pin)
{
	int slot = -ENOSPC;

	pthread_mutex_lock(&h->lock);
	for (unsigned s = 1; s < PCI_MAX_SLOTS; s++) {
		if (h->slots[s])
			continue;
		h->slots[s] = d;
		d->slot = s;
		d->host = h;
		if (int_pin) {
			d->cfg[PCI_INT_PIN] = int_pin;
			d->cfg[PCI_INT_LINE] = (uint8_t)LAYOUT_PCI_IRQ(s, int_pin - 1u);
		}
		slot = (int)s;
		break;
	}
	pthread_mutex_unlock(&h->lock);
	return slot;
}

int pci_dev_set_bar(struct pci_dev *d, unsigned idx, uint64_t size, unsigned flags,
		    const struct bus_dev_ops *ops, void *opaque)
{
	unsigned off = PCI_BAR0 + 4 * idx;
	uint64_t mask;

	if (idx >= PCI_NUM_BARS || size < 16 || (size & (size - 1)) || !ops)
		return -EINVAL;
	if ((flags & PCI_BAR_MEM64) && (idx + 1 >= PCI_NUM_BARS || (flags & PCI_BAR_IO)))
		return -EINVAL;
	if ((flags & PCI_BAR_IO) && size > 256)
		return -EINVAL;
	d->bars[idx] = (struct pci_bar){ .size = size, .flags = flags, .ops = ops, .opaque = opaque };
	mask = ~(size - 1);
	pci_set32(d, off, (uint32_t)(flags & 0xf));
	pci_set_wmask32(d, off, (uint32_t)mask & ((flags & PCI_BAR_IO) ? ~0x3u : ~0xfu));
	if (flags & PCI_BAR_MEM64)
		pci_set_wmask32(d, off + 4, (uint32_t)(mask >> 32));
	return 0;
}

int pci_dev_add_cap(struct pci_dev *d, uint8_t cap_id, unsigned len)
{
	unsigned off = (d->next_cap + 3u) & ~3u;
	unsigned p;

	if (len < 2 || off + len > 256)
		return -ENOSPC;
	d->cfg[off] = cap_id;
	d->cfg[off + 1] = 0;
	/* Append at the end of the chain. */
	if (!d->cfg[PCI_CAP_PTR]) {
		d->cfg[PCI_CAP_PTR] = (uint8_t)off;
	} else {
		for (p = d->cfg[PCI_CAP_PTR]; d->cfg[p + 1]; p = d->cfg[p + 1])
			;
		d->cfg[p + 1] = (uint8_t)off;
	}
	pci_set16(d, PCI_STATUS, pci_get16(d, PCI_STATUS) | PCI_STATUS_CAPS);
	d->next_cap = (uint8_t)(off + len);
	return (int)off;
}

static uint64_t pci_bar_addr(const struct pci_dev *d, unsigned idx)
{
	const struct pci_bar *b = &d->bars[idx];
	uint64_t a = pci_get32(d, PCI_BAR0 + 4 * idx);

	if (b->flags & PCI_BAR_IO)
		return a & ~0x3ull;
	a &= ~0xfull;
	if (b->flags & PCI_BAR_MEM64)
		a |= (uint64_t)pci_get32(d, PCI_BAR0 + 4 * (idx + 1)) << 32;
	return a;
}

/* Bring one BAR's bus mapping in line with the command register and its address. */
static void pci_bar_update(struct pci_dev *d, unsigned idx)
{
	struct pci_bar *b = &d->bars[idx];
	bool io = b->flags & PCI_BAR_IO;
	struct bus *bus = io ? d->host->pio : d->host->mmio;
	uint16_t cmd = pci_get16(d, PCI_COMMAND);
	bool enabled = cmd & (io ? PCI_CMD_IO : PCI_CMD_MEM);
	uint64_t addr = pci_bar_addr(d, idx);
	bool valid = enabled && addr != 0 && addr + b->size > addr &&
		     (!io || addr + b->size <= 0x10000);

	if (b->mapped && (!valid || addr != b->mapped_at)) {
		bus_unregister(bus, b->mapped_at);
		b->mapped = false;
		if (d->ops && d->ops->bar_remap)
			d->ops->bar_remap(d, idx, b->mapped_at, false);
	}
	if (valid && !b->mapped) {
		int e = bus_register(bus, addr, b->size, BUS_SZ_ANY, b->ops, b->opaque, d->name);

		if (e == 0) {
			b->mapped = true;
			b->mapped_at = addr;
			if (d->ops && d->ops->bar_remap)
				d->ops->bar_remap(d, idx, addr, true);
		} else {
			log_guest(&d->host->rl, "pci", "%s: BAR%u at %#llx cannot be mapped (%s)", d->name,
				  idx, (unsigned long long)addr, e == -EEXIST ? "overlaps another range" : "error");
		}
	}
}

static void pci_update_bars(struct pci_dev *d)
{
	for (unsigned i = 0; i < PCI_NUM_BARS; i++)
		if (d->bars[i].size)
			pci_bar_update(d, i);
}

uint32_t pci_host_cfg_read(struct pci_host *h, unsigned bus, unsigned slot, unsigned fn,
			   unsigned off, unsigned size)
{
	struct pci_dev *d;
	uint32_t v = 0;

	if (bus != 0 || slot >= PCI_MAX_SLOTS || fn != 0 || off + size > PCI_CFG_SIZE)
		return size == 4 ? 0xffffffffu : (1u << (size * 8)) - 1;
	pthread_mutex_lock(&h->lock);
	d = h->slots[slot];
	if (!d) {
		v = size == 4 ? 0xffffffffu : (1u << (size * 8)) - 1;
	} else {
		if (d->ops && d->ops->cfg_read)
			d->ops->cfg_read(d, off, size);
		for (unsigned i = 0; i < size; i++)
			v |= (uint32_t)d->cfg[off + i] << (8 * i);
	}
	pthread_mutex_unlock(&h->lock);
	return v;
}

void pci_host_cfg_write(struct pci_host *h, unsigned bus, unsigned slot, unsigned fn,
			unsigned off, unsigned size, uint32_t value)
{
	struct pci_dev *d;
	bool bars = false;

	if (bus != 0 || slot >= PCI_MAX_SLOTS || fn != 0 || off + size > PCI_CFG_SIZE)
		return;
	pthread_mutex_lock(&h->lock);
	d = h->slots[slot];
	if (d) {
		for (unsigned i = 0; i < size; i++) {
			unsigned o = off + i;
			uint8_t m = d->wmask[o];

			d->cfg[o] = (uint8_t)((d->cfg[o] & ~m) | ((value >> (8 * i)) & m));
			if ((o >= PCI_COMMAND && o < PCI_COMMAND + 2) || (o >= PCI_BAR0 && o < PCI_BAR0 + 24))
				bars = true;
		}
		if (bars)
			pci_update_bars(d);
		if (d->ops && d->ops->cfg_write)
			d->ops->cfg_write(d, off, size, value);
	}
	pthread_mutex_unlock(&h->lock);
}

int pci_host_register(struct pci_host *h, uint64_t ecam_base)
{
	int e;

	e = bus_register(h->pio, LAYOUT_PORT_PCI_CONF, 4, BUS_SZ_ANY, &pci_conf_addr_ops, h, "pci-conf-addr");
	if (e < 0)
		return e;
	e = bus_register(h->pio, LAYOUT_PORT_PCI_CONF + 4, 4, BUS_SZ_ANY, &pci_conf_data_ops, h,
			 "pci-conf-data");
	if (e < 0)
		goto err_addr;
	e = bus_register(h->mmio, ecam_base, LAYOUT_ECAM_SIZE, BUS_SZ_1 | BUS_SZ_2 | BUS_SZ_4,
			 &pci_ecam_ops, h, "pci-ecam");
	if (e < 0)
		goto err_data;
	h->ecam_base = ecam_base;
	h->registered = true;
	return 0;

err_data:
	(void)bus_unregister(h->pio, LAYOUT_PORT_PCI_CONF + 4);   /* ours: registered just above */
err_addr:
	(void)bus_unregister(h->pio, LAYOUT_PORT_PCI_CONF);
	return e;
}

void pci_host_unregister(struct pci_host *h)
{
	if (!h->registered)
		return;
	/* Each range was registered by pci_host_register(), so each removal finds it. */
	(void)bus_unregister(h->mmio, h->ecam_base);
	(void)bus_unregister(h->pio, LAYOUT_PORT_PCI_CONF + 4);
	(void)bus_unregister(h->pio, LAYOUT_PORT_PCI_CONF);
	h->registered = false;
}

/* 0xCF8: the address register takes dword accesses; 0xCF9 is reset control. */
static uint64_t pci_conf_addr_read(void *opaque, uint64_t off, unsigned size)
{
	struct pci_host *h = opaque;
	uint32_t v;

	if (off != 0 || size != 4)
		return 0;
	pthread_mutex_lock(&h->lock);
	v = h->conf_addr;
	pthread_mutex_unlock(&h->lock);
	return v;
}

static void pci_conf_addr_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	struct pci_host *h = opaque;

	if (off == 0 && size == 4) {
		pthread_mutex_lock(&h->lock);
		h->conf_addr = (uint32_t)value & 0x80fffffcu;
		pthread_mutex_unlock(&h->lock);
	} else if (off == 1 && size == 1 && (value & 0x04)) {
		/* Reset control register: RST_CPU. */
		sysevent_fire(&h->sink, SYSEVENT_RESET, 0);
	}
}

static bool pci_conf_decode(struct pci_host *h, unsigned *bus, unsigned *slot, unsigned *fn, unsigned *reg)
{
	uint32_t a;

	pthread_mutex_lock(&h->lock);
	a = h->conf_addr;
	pthread_mutex_unlock(&h->lock);
	if (!(a & 0x80000000u))
		return false;
	*bus = (a >> 16) & 0xff;
	*slot = (a >> 11) & 0x1f;
	*fn = (a >> 8) & 0x7;
	*reg = a & 0xfc;
	return true;
}

static uint64_t pci_conf_data_read(void *opaque, uint64_t off, unsigned size)
{
	struct pci_host *h = opaque;
	unsigned bus, slot, fn, reg;

	if (size > 4 || off + size > 4 || !pci_conf_decode(h, &bus, &slot, &fn, &reg))
		return ~0ull;
	return pci_host_cfg_read(h, bus, slot, fn, reg + (unsigned)off, size);
}

static void pci_conf_data_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	struct pci_host *h = opaque;
	unsigned bus, slot, fn, reg;

	if (size > 4 || off + size > 4 || !pci_conf_decode(h, &bus, &slot, &fn, &reg))
		return;
	pci_host_cfg_write(h, bus, slot, fn, reg + (unsigned)off, size, (uint32_t)value);
}

/* ECAM: offset = bus << 20 | device << 15 | function << 12 | register. */
static uint64_t pci_ecam_read(void *opaque, uint64_t off, unsigned size)
{
	unsigned reg = off & 0xfff;

	if (size > 4 || (reg & (size - 1)))
		return ~0ull;
	return pci_host_cfg_read(opaque, (unsigned)(off >> 20), (off >> 15) & 0x1f, (off >> 12) & 7, reg, size);
}

static void pci_ecam_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	unsigned reg = off & 0xfff;

	if (size > 4 || (reg & (size - 1)))
		return;
	pci_host_cfg_write(opaque, (unsigned)(off >> 20), (off >> 15) & 0x1f, (off >> 12) & 7, reg, size,
			   (uint32_t)value);
}

/* ---- snapshot ---- */

void pci_dev_save(const struct pci_dev *d, struct snap_writer *w)
{
	pthread_mutex_t *lock = d->host ? (pthread_mutex_t *)&d->host->lock : NULL;

	if (lock)
		pthread_mutex_lock(lock);
	snap_put_u32(w, PCI_CFG_SIZE);
	snap_put(w, d->cfg, PCI_CFG_SIZE);
	if (lock)
		pthread_mutex_unlock(lock);
}

static int pci_snap_refuse(struct snap_sec *s)
{
	snap_sec_fail(s);
	return -EINVAL;
}

int pci_dev_load_check(const struct pci_dev *d, struct snap_sec *s, struct pci_dev_snap *out)
{
	const char *name = d->name ? d->name : "?";
	uint32_t len;

	if (s->version != PCI_SNAP_VERSION) {
		log_err("snapshot", "PCI 00:%02x.0 (%s): unknown section version %u", d->slot, name, s->version);
		return pci_snap_refuse(s);
	}
	len = snap_get_u32(s);
	if (len != PCI_CFG_SIZE || snap_get(s, out->cfg, PCI_CFG_SIZE) < 0) {
		log_err("snapshot", "PCI 00:%02x.0 (%s): config space truncated or of the wrong size", d->slot,
			name);
		return pci_snap_refuse(s);
	}
	if (memcmp(out->cfg, d->cfg, 4) != 0) {
		log_err("snapshot", "PCI 00:%02x.0 (%s): device %04x:%04x, snapshot has %04x:%04x", d->slot, name,
			pci_get16(d, PCI_VENDOR_ID), pci_get16(d, PCI_DEVICE_ID),
			out->cfg[0] | out->cfg[1] << 8, out->cfg[2] | out->cfg[3] << 8);
		return pci_snap_refuse(s);
	}
	for (unsigned i = 0; i < PCI_CFG_SIZE; i++) {
		if ((out->cfg[i] ^ d->cfg[i]) & ~d->wmask[i]) {
			log_err("snapshot", "PCI 00:%02x.0 (%s): read-only config byte %#x is 0x%02x, this device has 0x%02x",
				d->slot, name, i, out->cfg[i], d->cfg[i]);
			return pci_snap_refuse(s);
		}
	}
	return 0;
}

void pci_dev_load_apply(struct pci_dev *d, const struct pci_dev_snap *snap)
{
	struct pci_host *h = d->host;

	if (h)
		pthread_mutex_lock(&h->lock);
	memcpy(d->cfg, snap->cfg, PCI_CFG_SIZE);
	if (h)
		pci_update_bars(d);
	if (h)
		pthread_mutex_unlock(&h->lock);
}

int pci_dev_load(struct pci_dev *d, struct snap_sec *s)
{
	struct pci_dev_snap *snap = malloc(sizeof(*snap));
	int e;

	if (!snap) {
		snap_sec_fail(s);
		return -ENOMEM;
	}
	e = pci_dev_load_check(d, s, snap);
	if (e == 0)
		pci_dev_load_apply(d, snap);
	free(snap);
	return e;
}

void pci_host_save(const struct pci_host *h, struct snap_writer *w)
{
	pthread_mutex_t *lock = (pthread_mutex_t *)&h->lock;
	uint32_t conf_addr;

	pthread_mutex_lock(lock);
	conf_addr = h->conf_addr;
	pthread_mutex_unlock(lock);
	snap_put_u32(w, conf_addr);
	pci_dev_save(&h->bridge, w);
}

int pci_host_load(struct pci_host *h, struct snap_sec *s)
{
	struct pci_dev_snap *snap;
	struct snap_sec bridge;
	uint32_t conf_addr;
	int e;

	if (s->version != PCI_HOST_SNAP_VERSION) {
		log_err("snapshot", "PCI host: unknown section version %u", s->version);
		snap_sec_fail(s);
		return -EINVAL;
	}
	conf_addr = snap_get_u32(s);
	if (s->err || (conf_addr & ~0x80fffffcu)) {
		log_err("snapshot", "PCI host: %s", s->err ? "section truncated" : "CONFIG_ADDRESS has reserved bits set");
		snap_sec_fail(s);
		return -EINVAL;
	}
	snap = malloc(sizeof(*snap));
	if (!snap) {
		snap_sec_fail(s);
		return -ENOMEM;
	}
	/* The bridge's part is a pci_dev_save of its own version. */
	bridge = *s;
	bridge.version = PCI_SNAP_VERSION;
	e = pci_dev_load_check(&h->bridge, &bridge, snap);
	s->off = bridge.off;
	s->err = bridge.err;
	if (e == 0) {
		pci_dev_load_apply(&h->bridge, snap);
		pthread_mutex_lock(&h->lock);
		h->conf_addr = conf_addr;
		pthread_mutex_unlock(&h->lock);
	}
	free(snap);
	return e;
}

const struct bus_dev_ops pci_conf_addr_ops = { .read = pci_conf_addr_read, .write = pci_conf_addr_write };
const struct bus_dev_ops pci_conf_data_ops = { .read = pci_conf_data_read, .write = pci_conf_data_write };
const struct bus_dev_ops pci_ecam_ops = { .read = pci_ecam_read, .write = pci_ecam_write };

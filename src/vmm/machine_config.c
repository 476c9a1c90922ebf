/*
 * The machine's typed device configuration: the --net syntax into a
 * net_config, and the "machine" section of a snapshot, which stores the
 * configuration field by field (version 3) so a restore can change a field
 * (network_overrides: the TAP name) without editing strings. Version 3 added
 * each disk's rate limiter after its serial; version-2 sections (no limiter:
 * the disks run unlimited) are still read. Version-1 sections held the
 * --disk / --net strings; they are still read, through the same parsers the
 * command line uses.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"
#include "devices/virtio/vhost_user_net.h"
#include "machine.h"
#include "snapshot/snap.h"

#define MACHINE_SNAP_VERSION     3
#define MACHINE_SNAP_VERSION_NORL 2   /* typed, disks without a rate limiter */
#define MACHINE_SNAP_VERSION_STR 1   /* disks and NICs as their command-line strings */

/* --- the --net syntax ------------------------------------------------- */

int machine_net_parse(const char *spec, struct net_config *out, char *err, size_t errlen)
{
	char rest[512], q[40];
	struct vnet_config vc;
	const char *p = spec;
	size_t n = 0;
	int e;

	memset(out, 0, sizeof(*out));
	if (strlen(spec) >= sizeof(rest)) {
		snprintf(err, errlen, "--net: specification too long");
		return -EINVAL;
	}
	/* model= picks the device; the rest is the backend's (vnet_parse_spec). */
	while (*p) {
		size_t len = strcspn(p, ",");

		if (len > 6 && !strncmp(p, "model=", 6)) {
			if (len == 6 + 5 && !strncmp(p + 6, "e1000", 5)) {
				out->model = NET_MODEL_E1000;
			} else if (len == 6 + 6 && !strncmp(p + 6, "virtio", 6)) {
				out->model = NET_MODEL_VIRTIO;
			} else {
				snprintf(q, sizeof(q), "%.*s", (int)(len - 6 < 32 ? len - 6 : 32), p + 6);
				snprintf(err, errlen, "--net: unknown model '%s' (virtio or e1000)", q);
				return -EINVAL;
			}
		} else {
			if (n)
				rest[n++] = ',';
			memcpy(rest + n, p, len);
			n += len;
		}
		p += len;
		if (*p)
			p++;
	}
	rest[n] = '\0';
	if (!strncmp(rest, "vhost-user=", 11)) {
		if (out->model != NET_MODEL_VIRTIO) {
			snprintf(err, errlen, "--net vhost-user: only model=virtio (the back-end serves virtio rings)");
			return -EINVAL;
		}
		e = vunet_parse_spec(rest, out->vhost_socket, out->mac, err, errlen);
		if (e < 0)
			return e;
		out->backend = NET_BACKEND_VHOST_USER;
		out->mac_set = true;
		return 0;
	}
	e = vnet_parse_spec(rest, &vc, err, errlen);
	if (e < 0)
		return e;
	out->backend = vc.backend;
	memcpy(out->ifname, vc.ifname, sizeof(out->ifname));
	memcpy(out->hostfwd, vc.hostfwd, sizeof(out->hostfwd));
	out->nr_hostfwd = vc.nr_hostfwd;
	memcpy(out->mac, vc.mac, sizeof(out->mac));
	out->mac_set = true;
	out->mtu = vc.mtu;
	return 0;
}

void machine_net_default_mac(const struct net_config *n, uint8_t mac[6])
{
	char seed[128];   /* "vhost-user=" and a socket path */

	/* The seed is the spec's backend part, as vnet_parse_spec hashes it. */
	if (n->backend == NET_BACKEND_TAP)
		snprintf(seed, sizeof(seed), "tap=%s", n->ifname);
	else if (n->backend == NET_BACKEND_VHOST_USER)
		snprintf(seed, sizeof(seed), "vhost-user=%s", n->vhost_socket);
	else
		snprintf(seed, sizeof(seed), "user");
	vnet_default_mac(seed, 0, mac);
}

const char *machine_net_id(const struct machine_config *c, unsigned i, char *buf, size_t len)
{
	if (c->nets[i].id[0])
		return c->nets[i].id;
	snprintf(buf, len, "eth%u", i);
	return buf;
}

/* --- snapshot: save ---------------------------------------------------- */

static void machine_disk_save(const struct blk_config *d, struct snap_writer *w)
{
	snap_put_str(w, d->path);
	snap_put_bool(w, d->read_only);
	snap_put_bool(w, d->direct);
	snap_put_u32(w, (uint32_t)d->engine);
	snap_put_u32(w, d->num_queues);
	snap_put_u16(w, d->queue_size);
	snap_put_str(w, d->serial);
	snap_put_u64(w, d->rate_limit.bandwidth.size);
	snap_put_u64(w, d->rate_limit.bandwidth.one_time_burst);
	snap_put_u64(w, d->rate_limit.bandwidth.refill_time_ms);
	snap_put_u64(w, d->rate_limit.ops.size);
	snap_put_u64(w, d->rate_limit.ops.one_time_burst);
	snap_put_u64(w, d->rate_limit.ops.refill_time_ms);
}

static void machine_net_save(const struct net_config *n, struct snap_writer *w)
{
	snap_put_str(w, n->id);
	snap_put_u32(w, (uint32_t)n->model);
	snap_put_u32(w, (uint32_t)n->backend);
	snap_put_str(w, n->ifname);
	snap_put_bool(w, n->mac_set);
	snap_put(w, n->mac, sizeof(n->mac));
	snap_put_u16(w, n->mtu);
	snap_put_u32(w, n->nr_hostfwd);
	for (unsigned i = 0; i < n->nr_hostfwd; i++) {
		const struct net_hostfwd *f = &n->hostfwd[i];

		snap_put_bool(w, f->udp);
		/* Addresses stay in network byte order: 4 raw bytes each. */
		snap_put(w, &f->host_addr, 4);
		snap_put(w, &f->guest_addr, 4);
		snap_put_u16(w, f->host_port);
		snap_put_u16(w, f->guest_port);
	}
}

void machine_config_save(const struct machine_config *c, struct snap_writer *w)
{
	snap_begin(w, "machine", MACHINE_SNAP_VERSION);
	snap_put_u32(w, c->cpus);
	snap_put_u64(w, c->mem_size);
	snap_put_bool(w, c->hugepages);
	snap_put_bool(w, c->rng);
	snap_put_bool(w, c->virtio_console);
	snap_put_bool(w, c->transport_mmio);
	snap_put_str(w, c->kernel);
	snap_put_str(w, c->cmdline);
	snap_put_u32(w, c->ndisks);
	for (unsigned i = 0; i < c->ndisks; i++)
		machine_disk_save(&c->disks[i], w);
	snap_put_u32(w, c->nnets);
	for (unsigned i = 0; i < c->nnets; i++)
		machine_net_save(&c->nets[i], w);
	snap_end(w);
}

/* --- snapshot: load ---------------------------------------------------- */

void machine_config_release(struct machine_config *c)
{
	free((char *)c->kernel);
	free((char *)c->cmdline);
	c->kernel = c->cmdline = NULL;
}

static char *snap_dup_str(struct snap_sec *s)
{
	char buf[4096];
	bool null;

	if (snap_get_str(s, buf, sizeof(buf), &null) < 0 || null)
		return NULL;
	return strdup(buf);
}

/* A string into a fixed field; NULL, too long or a bad read marks the section bad. */
static void snap_get_field(struct snap_sec *s, char *dst, size_t len)
{
	bool null;

	if (snap_get_str(s, dst, len, &null) < 0 || null)
		snap_sec_fail(s);
}

static bool machine_printable(const char *s, const char *extra)
{
	for (; *s; s++)
		if (*s <= 0x20 || *s >= 0x7f || strchr(extra, *s))
			return false;
	return true;
}

static void machine_disk_load(struct blk_config *d, struct snap_sec *s, uint32_t version)
{
	uint32_t engine, queues;
	char why[160];

	memset(d, 0, sizeof(*d));
	snap_get_field(s, d->path, sizeof(d->path));
	d->read_only = snap_get_bool(s);
	d->direct = snap_get_bool(s);
	engine = snap_get_u32(s);
	queues = snap_get_u32(s);
	d->queue_size = snap_get_u16(s);
	snap_get_field(s, d->serial, sizeof(d->serial));
	if (version >= 3) {
		d->rate_limit.bandwidth.size = snap_get_u64(s);
		d->rate_limit.bandwidth.one_time_burst = snap_get_u64(s);
		d->rate_limit.bandwidth.refill_time_ms = snap_get_u64(s);
		d->rate_limit.ops.size = snap_get_u64(s);
		d->rate_limit.ops.one_time_burst = snap_get_u64(s);
		d->rate_limit.ops.refill_time_ms = snap_get_u64(s);
		if (ratelimit_config_check(&d->rate_limit, "rate limit", why, sizeof(why)) < 0)
			snap_sec_fail(s);
	}
	if (!d->path[0] || (engine != BLOCK_ENGINE_URING && engine != BLOCK_ENGINE_SYNC) || queues < 1 ||
	    queues > BLK_MAX_QUEUES || (d->queue_size & (d->queue_size - 1)) || !machine_printable(d->serial, ""))
		snap_sec_fail(s);
	d->engine = (enum block_engine)engine;
	d->num_queues = queues;
}

static void machine_net_load(struct net_config *n, struct snap_sec *s)
{
	uint32_t model, backend;

	memset(n, 0, sizeof(*n));
	snap_get_field(s, n->id, sizeof(n->id));
	model = snap_get_u32(s);
	backend = snap_get_u32(s);
	snap_get_field(s, n->ifname, sizeof(n->ifname));
	n->mac_set = snap_get_bool(s);
	snap_get(s, n->mac, sizeof(n->mac));
	n->mtu = snap_get_u16(s);
	n->nr_hostfwd = snap_get_u32(s);
	if (n->nr_hostfwd > NET_MAX_HOSTFWD || (backend == NET_BACKEND_TAP && n->nr_hostfwd)) {
		snap_sec_fail(s);
		return;
	}
	for (unsigned i = 0; i < n->nr_hostfwd; i++) {
		struct net_hostfwd *f = &n->hostfwd[i];

		f->udp = snap_get_bool(s);
		snap_get(s, &f->host_addr, 4);
		snap_get(s, &f->guest_addr, 4);
		f->host_port = snap_get_u16(s);
		f->guest_port = snap_get_u16(s);
	}
	if (model > NET_MODEL_E1000 || (backend != NET_BACKEND_TAP && backend != NET_BACKEND_USER) ||
	    (backend == NET_BACKEND_TAP) != (n->ifname[0] != '\0') || !machine_printable(n->ifname, "/:") ||
	    !machine_printable(n->id, "") || (n->mac_set && (n->mac[0] & 1)) || (n->mtu && n->mtu < 68))
		snap_sec_fail(s);
	n->model = (enum net_model)model;
	n->backend = (enum net_backend_kind)backend;
}

/* Version 1: disks and NICs as the strings the command line took. */
static int machine_config_load_strings(struct machine_config *c, struct snap_sec *s, char *err, size_t errlen)
{
	char spec[4096], id[MACHINE_NET_ID_MAX + 1], why[256];
	bool null;

	c->ndisks = snap_get_u32(s);
	if (c->ndisks > MACHINE_MAX_DISKS)
		snap_sec_fail(s);
	for (unsigned i = 0; i < c->ndisks && !s->err; i++) {
		if (snap_get_str(s, spec, sizeof(spec), &null) < 0 || null)
			snap_sec_fail(s);
		else if (blk_parse_spec(spec, &c->disks[i], why, sizeof(why)) < 0)
			goto err_spec;
	}
	c->nnets = s->err ? 0 : snap_get_u32(s);
	if (c->nnets > MACHINE_MAX_NETS)
		snap_sec_fail(s);
	for (unsigned i = 0; i < c->nnets && !s->err; i++) {
		if (snap_get_str(s, spec, sizeof(spec), &null) < 0 || null) {
			snap_sec_fail(s);
			break;
		}
		if (machine_net_parse(spec, &c->nets[i], why, sizeof(why)) < 0)
			goto err_spec;
		if (snap_get_str(s, id, sizeof(id), &null) == 0 && !null) {
			if (!machine_printable(id, ""))
				snap_sec_fail(s);
			memcpy(c->nets[i].id, id, sizeof(id));
		}
	}
	return 0;

err_spec:
	snprintf(err, errlen, "snapshot machine section (version %u): %s", MACHINE_SNAP_VERSION_STR, why);
	return -EINVAL;
}

int machine_config_load(struct machine_config *c, const struct snap_reader *r, char *err, size_t errlen)
{
	struct snap_sec s;
	int e = 0;

	if (snap_find(r, "machine", &s) < 0) {
		snprintf(err, errlen, "snapshot has no machine section");
		return -EINVAL;
	}
	if (s.version != MACHINE_SNAP_VERSION && s.version != MACHINE_SNAP_VERSION_NORL &&
	    s.version != MACHINE_SNAP_VERSION_STR) {
		snprintf(err, errlen, "snapshot machine section version %u; this kestrel reads %u to %u", s.version,
			 MACHINE_SNAP_VERSION_STR, MACHINE_SNAP_VERSION);
		return -EINVAL;
	}
	c->cpus = snap_get_u32(&s);
	c->mem_size = snap_get_u64(&s);
	c->hugepages = snap_get_bool(&s);
	c->rng = snap_get_bool(&s);
	c->virtio_console = snap_get_bool(&s);
	c->transport_mmio = snap_get_bool(&s);
	c->kernel = snap_dup_str(&s);
	c->cmdline = snap_dup_str(&s);
	if (s.version == MACHINE_SNAP_VERSION_STR) {
		e = machine_config_load_strings(c, &s, err, errlen);
	} else {
		c->ndisks = snap_get_u32(&s);
		if (c->ndisks > MACHINE_MAX_DISKS)
			snap_sec_fail(&s);
		for (unsigned i = 0; i < c->ndisks && !s.err; i++)
			machine_disk_load(&c->disks[i], &s, s.version);
		c->nnets = s.err ? 0 : snap_get_u32(&s);
		if (c->nnets > MACHINE_MAX_NETS)
			snap_sec_fail(&s);
		for (unsigned i = 0; i < c->nnets && !s.err; i++)
			machine_net_load(&c->nets[i], &s);
	}
	if (e < 0)
		goto err;
	if (snap_sec_end(&s) < 0 || c->cpus == 0 || c->cpus > VM_MAX_VCPUS || c->mem_size < MACHINE_MIN_MEM ||
	    c->mem_size % 4096) {
		snprintf(err, errlen, "snapshot machine section is malformed");
		e = -EINVAL;
		goto err;
	}
	return 0;

err:
	machine_config_release(c);
	c->ndisks = c->nnets = 0;
	return e;
}

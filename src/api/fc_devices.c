/*
 * Firecracker's drives and network-interfaces: checked bodies into the
 * fc_config, back to JSON, and into the machine's typed device configuration.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>

#include "api/fc.h"
#include "api/fc_priv.h"

void fc_drive_free(struct fc_drive *d)
{
	free(d->id);
	free(d->path);
	free(d->partuuid);
	memset(d, 0, sizeof(*d));
}

void fc_net_free(struct fc_net *n)
{
	free(n->id);
	free(n->host_dev);
	free(n->vhost_socket);
	free(n->mac);
	memset(n, 0, sizeof(*n));
}

/* ---- rate limiters ---- */

static int fc_get_bucket(const cJSON *rl, const char *name, const char *where, struct ratelimit_bucket_config *b,
			 char *err, size_t errlen)
{
	static const struct fc_field f[] = {
		{ "size", FC_UINT, true },
		{ "one_time_burst", FC_UINT, false },
		{ "refill_time", FC_UINT, true },
	};
	const cJSON *j = fc_get(rl, name), *m = j ? fc_get(j, "one_time_burst") : NULL;
	char w[96];
	int e;

	memset(b, 0, sizeof(*b));
	if (!j)
		return 0;
	snprintf(w, sizeof(w), "%s.%s", where, name);
	e = fc_check(j, f, FC_NFIELDS(f), w, err, errlen);
	if (e)
		return e;
	/* FC_UINT: integers up to 2^32 - 1, exact in a double; ranges: ratelimit_config_check. */
	b->size = (uint64_t)fc_get(j, "size")->valuedouble;
	b->one_time_burst = m ? (uint64_t)m->valuedouble : 0;
	b->refill_time_ms = (uint64_t)fc_get(j, "refill_time")->valuedouble;
	return 0;
}

int fc_get_rate_limiter(const cJSON *j, const char *name, const char *where, struct ratelimit_config *out,
			char *err, size_t errlen)
{
	static const struct fc_field f[] = {
		{ "bandwidth", FC_OBJ, false },
		{ "ops", FC_OBJ, false },
	};
	const cJSON *rl = fc_get(j, name);
	char w[80];
	int e;

	memset(out, 0, sizeof(*out));
	if (!rl)
		return 0;
	snprintf(w, sizeof(w), "%s in %s", name, where);
	e = fc_check(rl, f, FC_NFIELDS(f), w, err, errlen);
	if (!e)
		e = fc_get_bucket(rl, "bandwidth", w, &out->bandwidth, err, errlen);
	if (!e)
		e = fc_get_bucket(rl, "ops", w, &out->ops, err, errlen);
	if (!e)
		e = ratelimit_config_check(out, w, err, errlen);
	return e;
}

static bool fc_add_bucket(cJSON *o, const char *name, const struct ratelimit_bucket_config *b)
{
	cJSON *t;

	if (!b->size && !b->refill_time_ms)
		return true;
	t = cJSON_AddObjectToObject(o, name);
	return t && cJSON_AddNumberToObject(t, "size", (double)b->size) &&
	       cJSON_AddNumberToObject(t, "one_time_burst", (double)b->one_time_burst) &&
	       cJSON_AddNumberToObject(t, "refill_time", (double)b->refill_time_ms);
}

bool fc_add_rate_limiter(cJSON *o, const char *name, const struct ratelimit_config *rl)
{
	cJSON *r;

	if (!ratelimit_config_enabled(rl))
		return true;
	r = cJSON_AddObjectToObject(o, name);
	return r && fc_add_bucket(r, "bandwidth", &rl->bandwidth) && fc_add_bucket(r, "ops", &rl->ops);
}

/* ---- drives ---- */

int fc_drive_apply(struct fc_config *c, const char *path_id, const cJSON *j, const char *where,
			  char *err, size_t errlen)
{
	static const struct fc_field f[] = {
		{ "drive_id", FC_STR, true },
		{ "is_root_device", FC_BOOL, true },
		{ "path_on_host", FC_STR, false },
		{ "is_read_only", FC_BOOL, false },
		{ "partuuid", FC_STR, false },
		{ "cache_type", FC_STR, false },
		{ "io_engine", FC_STR, false },
		{ "rate_limiter", FC_OBJ, false },
		{ "socket", FC_STR, false },
	};
	static const char *const caches[] = { "Unsafe", "Writeback" };
	static const char *const engines[] = { "Sync", "Async" };
	const char *id, *path, *partuuid;
	struct fc_drive d = { 0 };
	unsigned slot;
	char p[48];
	int e;

	e = fc_check(j, f, FC_NFIELDS(f), where, err, errlen);
	if (!e)
		e = fc_get_str(j, "drive_id", FC_ID_MAX, false, where, &id, err, errlen);
	if (!e)
		e = fc_get_str(j, "path_on_host", FC_PATH_MAX, false, where, &path, err, errlen);
	if (!e)
		e = fc_get_str(j, "partuuid", FC_ID_MAX, false, where, &partuuid, err, errlen);
	if (!e)
		e = fc_get_enum(j, "cache_type", caches, 2, where, &d.cache, err, errlen);
	if (!e)
		e = fc_get_enum(j, "io_engine", engines, 2, where, &d.engine, err, errlen);
	if (e)
		return e;
	if (!fc_id_valid(id)) {
		snprintf(err, errlen, "drive_id '%s' in %s: use 1 to %d letters, digits, '_' or '-'",
			 fc_printable(p, sizeof(p), id), where, FC_ID_MAX);
		return -EINVAL;
	}
	if (path_id && strcmp(path_id, id)) {
		snprintf(err, errlen, "drive_id '%s' in the body does not match the id '%s' in the path",
			 fc_printable(p, sizeof(p), id), path_id);
		return -EINVAL;
	}
	e = fc_get_rate_limiter(j, "rate_limiter", where, &d.rate_limit, err, errlen);
	if (e)
		return e;
	if (fc_get(j, "socket")) {
		snprintf(err, errlen, "socket in %s: vhost-user drives are not supported by kestrel", where);
		return -EINVAL;
	}
	if (!path) {
		snprintf(err, errlen, "missing field 'path_on_host' in %s", where);
		return -EINVAL;
	}
	if (partuuid && !fc_name_chars(partuuid, FC_ID_MAX, "-")) {
		snprintf(err, errlen, "partuuid in %s: use letters, digits and '-'", where);
		return -EINVAL;
	}
	d.root = fc_get_bool(j, "is_root_device", false);
	d.read_only = fc_get_bool(j, "is_read_only", false);
	e = fc_check_file(path, true, !d.read_only, "path_on_host", err, errlen);
	if (e)
		return e;

	for (slot = 0; slot < c->ndrives; slot++)
		if (!strcmp(c->drives[slot].id, id))
			break;
	for (unsigned i = 0; d.root && i < c->ndrives; i++) {
		if (i != slot && c->drives[i].root) {
			snprintf(err, errlen, "a root drive already exists ('%s'); only one drive can be the root",
				 c->drives[i].id);
			return -EINVAL;
		}
	}
	if (slot == MACHINE_MAX_DISKS) {
		snprintf(err, errlen, "too many drives: kestrel supports %d", MACHINE_MAX_DISKS);
		return -ENOSPC;
	}
	if (fc_set_str(&d.id, id) || fc_set_str(&d.path, path) || fc_set_str(&d.partuuid, partuuid)) {
		fc_drive_free(&d);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (slot < c->ndrives)
		fc_drive_free(&c->drives[slot]);
	else
		c->ndrives++;
	c->drives[slot] = d;
	c->boot_configured = true;
	return 0;
}

int fc_drive_patch(const struct fc_config *c, const char *id, const char *json, size_t len,
		   struct ratelimit_config *rl, unsigned *slot, unsigned *disk, char *err, size_t errlen)
{
	static const struct fc_field f[] = {
		{ "drive_id", FC_STR, true },
		{ "path_on_host", FC_STR, false },
		{ "rate_limiter", FC_OBJ, false },
	};
	const char *where = "PATCH /drives", *bid;
	struct ratelimit_config given;
	const cJSON *rj;
	cJSON *j;
	char p[48];
	int e;

	j = fc_parse(json, len, where, err, errlen);
	if (!j)
		return -EINVAL;
	e = fc_check(j, f, FC_NFIELDS(f), where, err, errlen);
	if (!e)
		e = fc_get_str(j, "drive_id", FC_ID_MAX, false, where, &bid, err, errlen);
	if (!e)
		e = fc_get_rate_limiter(j, "rate_limiter", where, &given, err, errlen);
	if (e)
		goto out;
	e = -EINVAL;
	if (id && strcmp(id, bid)) {
		snprintf(err, errlen, "drive_id '%s' in the body does not match the id '%s' in the path",
			 fc_printable(p, sizeof(p), bid), id);
		goto out;
	}
	if (fc_get(j, "path_on_host")) {
		snprintf(err, errlen, "path_on_host in %s: kestrel cannot swap a drive's image", where);
		goto out;
	}
	for (*slot = 0; *slot < c->ndrives && strcmp(c->drives[*slot].id, bid); (*slot)++)
		;
	if (*slot == c->ndrives) {
		snprintf(err, errlen, "no drive '%s' to patch", fc_printable(p, sizeof(p), bid));
		goto out;
	}
	/* The root drive is disk 0; the others follow it in their order. */
	*disk = 0;
	for (unsigned i = 0; !c->drives[*slot].root && i < c->ndrives; i++)
		if (c->drives[i].root || i < *slot)
			(*disk)++;
	*rl = c->drives[*slot].rate_limit;
	rj = fc_get(j, "rate_limiter");
	if (rj && fc_get(rj, "bandwidth"))
		rl->bandwidth = given.bandwidth;
	if (rj && fc_get(rj, "ops"))
		rl->ops = given.ops;
	e = 0;
out:
	cJSON_Delete(j);
	return e;
}

/* ---- network-interfaces ---- */

int fc_net_apply(struct fc_config *c, const char *path_id, const cJSON *j, const char *where,
			char *err, size_t errlen)
{
	static const struct fc_field f[] = {
		{ "iface_id", FC_STR, true },
		{ "host_dev_name", FC_STR, false },       /* this or vhost_user_socket */
		{ "vhost_user_socket", FC_STR, false },   /* kestrel extension */
		{ "guest_mac", FC_STR, false },
		{ "mtu", FC_UINT, false },
		{ "rx_rate_limiter", FC_OBJ, false },
		{ "tx_rate_limiter", FC_OBJ, false },
	};
	const char *id, *dev, *mac, *sock;
	const cJSON *m;
	struct fc_net n = { 0 };
	unsigned slot;
	char p[48];
	int e;

	e = fc_check(j, f, FC_NFIELDS(f), where, err, errlen);
	if (!e)
		e = fc_get_str(j, "iface_id", FC_ID_MAX, false, where, &id, err, errlen);
	if (!e)
		e = fc_get_str(j, "host_dev_name", 64, false, where, &dev, err, errlen);
	if (!e)
		e = fc_get_str(j, "vhost_user_socket", 107, false, where, &sock, err, errlen);
	if (!e)
		e = fc_get_str(j, "guest_mac", 64, false, where, &mac, err, errlen);
	if (e)
		return e;
	if (!fc_id_valid(id)) {
		snprintf(err, errlen, "iface_id '%s' in %s: use 1 to %d letters, digits, '_' or '-'",
			 fc_printable(p, sizeof(p), id), where, FC_ID_MAX);
		return -EINVAL;
	}
	if (path_id && strcmp(path_id, id)) {
		snprintf(err, errlen, "iface_id '%s' in the body does not match the id '%s' in the path",
			 fc_printable(p, sizeof(p), id), path_id);
		return -EINVAL;
	}
	if (fc_get(j, "rx_rate_limiter") || fc_get(j, "tx_rate_limiter")) {
		snprintf(err, errlen, "%s_rate_limiter in %s: rate limiters are not supported by kestrel",
			 fc_get(j, "rx_rate_limiter") ? "rx" : "tx", where);
		return -EINVAL;
	}
	if (!dev == !sock) {
		if (dev)
			snprintf(err, errlen, "host_dev_name and vhost_user_socket in %s: give one of them", where);
		else
			snprintf(err, errlen, "missing field 'host_dev_name' in %s (or vhost_user_socket)", where);
		return -EINVAL;
	}
	if (sock && fc_get(j, "mtu")) {
		snprintf(err, errlen, "mtu in %s: not supported with vhost_user_socket", where);
		return -EINVAL;
	}
	if (dev && !fc_ifname_valid(dev)) {
		snprintf(err, errlen, "host_dev_name '%s' in %s is not a TAP device name "
			 "(1 to 15 letters, digits, '_', '.' or '-')", fc_printable(p, sizeof(p), dev), where);
		return -EINVAL;
	}
	if (mac && !fc_mac_valid(mac)) {
		snprintf(err, errlen, "guest_mac '%s' in %s is not a unicast MAC address like 06:00:ac:10:00:02",
			 fc_printable(p, sizeof(p), mac), where);
		return -EINVAL;
	}
	if ((m = fc_get(j, "mtu"))) {
		if (m->valuedouble < 68 || m->valuedouble > 65535) {
			snprintf(err, errlen, "mtu in %s must be from 68 to 65535", where);
			return -EINVAL;
		}
		n.mtu = (unsigned)m->valuedouble;
	}
	for (slot = 0; slot < c->nnets; slot++)
		if (!strcmp(c->nets[slot].id, id))
			break;
	for (unsigned i = 0; i < c->nnets; i++) {
		if (i == slot)
			continue;
		if (sock && c->nets[i].vhost_socket && !strcmp(c->nets[i].vhost_socket, sock)) {
			snprintf(err, errlen, "vhost_user_socket is already used by interface '%s'", c->nets[i].id);
			return -EINVAL;
		}
		if (dev && c->nets[i].host_dev && !strcmp(c->nets[i].host_dev, dev)) {
			snprintf(err, errlen, "host_dev_name '%s' is already used by interface '%s'", dev, c->nets[i].id);
			return -EINVAL;
		}
		if (mac && c->nets[i].mac && !strcasecmp(c->nets[i].mac, mac)) {
			snprintf(err, errlen, "guest_mac %s is already used by interface '%s'", mac, c->nets[i].id);
			return -EINVAL;
		}
	}
	if (slot == MACHINE_MAX_NETS) {
		snprintf(err, errlen, "too many network interfaces: kestrel supports %d", MACHINE_MAX_NETS);
		return -ENOSPC;
	}
	if (fc_set_str(&n.id, id) || fc_set_str(&n.host_dev, dev) || fc_set_str(&n.mac, mac) ||
	    fc_set_str(&n.vhost_socket, sock)) {
		fc_net_free(&n);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (slot < c->nnets)
		fc_net_free(&c->nets[slot]);
	else
		c->nnets++;
	c->nets[slot] = n;
	c->boot_configured = true;
	return 0;
}

/* ---- back to JSON ---- */

bool fc_add_drives(cJSON *top, const struct fc_config *c)
{
	cJSON *a = cJSON_AddArrayToObject(top, "drives");

	if (!a)
		return false;
	for (unsigned i = 0; i < c->ndrives; i++) {
		const struct fc_drive *d = &c->drives[i];
		cJSON *o = cJSON_CreateObject();

		if (!o || !cJSON_AddItemToArray(a, o))
			return cJSON_Delete(o), false;
		if (!fc_add_str(o, "drive_id", d->id) || !fc_add_str(o, "path_on_host", d->path) ||
		    !cJSON_AddBoolToObject(o, "is_root_device", d->root) ||
		    !cJSON_AddBoolToObject(o, "is_read_only", d->read_only) ||
		    !fc_add_str(o, "partuuid", d->partuuid) ||
		    !fc_add_str(o, "cache_type", d->cache < 0 ? NULL : d->cache ? "Writeback" : "Unsafe") ||
		    !fc_add_str(o, "io_engine", d->engine < 0 ? NULL : d->engine ? "Async" : "Sync") ||
		    !fc_add_rate_limiter(o, "rate_limiter", &d->rate_limit))
			return false;
	}
	return true;
}

bool fc_add_nets(cJSON *top, const struct fc_config *c)
{
	cJSON *a = cJSON_AddArrayToObject(top, "network-interfaces");

	if (!a)
		return false;
	for (unsigned i = 0; i < c->nnets; i++) {
		const struct fc_net *n = &c->nets[i];
		cJSON *o = cJSON_CreateObject();

		if (!o || !cJSON_AddItemToArray(a, o))
			return cJSON_Delete(o), false;
		if (!fc_add_str(o, "iface_id", n->id) || !fc_add_str(o, "host_dev_name", n->host_dev) ||
		    !fc_add_str(o, "vhost_user_socket", n->vhost_socket) ||
		    !fc_add_str(o, "guest_mac", n->mac) ||
		    (n->mtu && !cJSON_AddNumberToObject(o, "mtu", n->mtu)))
			return false;
	}
	return true;
}

/* ---- into the machine configuration ---- */

/* A drive as the virtio-blk device takes it (kestrel's defaults: io_uring, one queue). */
void fc_disk_config(const struct fc_drive *d, struct blk_config *b)
{
	memset(b, 0, sizeof(*b));
	snprintf(b->path, sizeof(b->path), "%s", d->path);
	b->read_only = d->read_only;
	b->engine = d->engine == 0 ? BLOCK_ENGINE_SYNC : BLOCK_ENGINE_URING;
	b->num_queues = 1;
	b->rate_limit = d->rate_limit;
}

/* An interface on a TAP device or a vhost-user back-end; without guest_mac the machine derives one. */
void fc_net_config(const struct fc_net *n, struct net_config *nc)
{
	memset(nc, 0, sizeof(*nc));
	snprintf(nc->id, sizeof(nc->id), "%s", n->id);
	nc->model = NET_MODEL_VIRTIO;
	nc->backend = n->vhost_socket ? NET_BACKEND_VHOST_USER : NET_BACKEND_TAP;
	if (n->vhost_socket)
		snprintf(nc->vhost_socket, sizeof(nc->vhost_socket), "%s", n->vhost_socket);
	else
		snprintf(nc->ifname, sizeof(nc->ifname), "%s", n->host_dev);
	if (n->mac) {
		for (int i = 0; i < 6; i++)
			nc->mac[i] = (uint8_t)strtoul((char[3]){ n->mac[3 * i], n->mac[3 * i + 1], 0 }, NULL, 16);
		nc->mac_set = true;
	}
	nc->mtu = (uint16_t)n->mtu;
}

/*
 * Firecracker JSON → kestrel configuration. The field names, required fields
 * and enumerations follow Firecracker's API description; what kestrel cannot
 * do (rate limiters, CPU templates, SMT, vhost-user drives, UFFD memory) is
 * refused by name rather than silently ignored.
 *
 * Pattern for each body: check the object's shape against a field table
 * (fc_check, fc_json.c), read the values into a local copy with their own
 * range checks, and only then swap the copy in — so an error leaves the
 * config as it was. One file per resource group (fc_boot.c, fc_devices.c,
 * fc_extras.c, fc_snapshot.c); this one holds the config's life cycle, the
 * one PUT entry point, the config file and the build of a machine_config.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "api/fc.h"
#include "api/fc_priv.h"

/* ---- config life cycle ---- */

void fc_config_init(struct fc_config *c)
{
	memset(c, 0, sizeof(*c));
	c->vcpus = 1;
	c->mem_mib = FC_DEFAULT_MEM_MIB;
	c->log_level = FC_LOG_UNSET;
}

void fc_config_exit(struct fc_config *c)
{
	if (!c)
		return;
	free(c->kernel);
	free(c->initrd);
	free(c->boot_args);
	for (unsigned i = 0; i < c->ndrives; i++)
		fc_drive_free(&c->drives[i]);
	for (unsigned i = 0; i < c->nnets; i++)
		fc_net_free(&c->nets[i]);
	free(c->metrics_path);
	free(c->console);
	fc_config_init(c);
}

/* ---- the one PUT entry point: a table keyed by resource ---- */

static const struct {
	const char *where;
	fc_apply_fn apply;
} fc_resources[] = {
	[FC_BOOT_SOURCE] = { "/boot-source", fc_boot_source_apply },
	[FC_MACHINE_CONFIG] = { "/machine-config", fc_machine_config_apply },
	[FC_MACHINE_CONFIG_PATCH] = { "/machine-config", fc_machine_config_patch_apply },
	[FC_DRIVE] = { "/drives", fc_drive_apply },
	[FC_NET] = { "/network-interfaces", fc_net_apply },
	[FC_METRICS] = { "/metrics", fc_metrics_apply },
	[FC_LOGGER] = { "/logger", fc_logger_apply },
	[FC_ENTROPY] = { "/entropy", fc_entropy_apply },
	[FC_SERIAL] = { "/serial", fc_serial_apply },
};

int fc_put(struct fc_config *c, enum fc_resource r, const char *id, const char *json, size_t len,
	   char *err, size_t errlen)
{
	cJSON *j;
	int e;

	if ((unsigned)r >= FC_NFIELDS(fc_resources) || !fc_resources[r].apply) {
		snprintf(err, errlen, "unknown resource %d", (int)r);
		return -EINVAL;
	}
	j = fc_parse(json, len, fc_resources[r].where, err, errlen);
	if (!j)
		return -EINVAL;
	/* Each apply function checks everything before it changes c. */
	e = fc_resources[r].apply(c, id, j, fc_resources[r].where, err, errlen);
	cJSON_Delete(j);
	return e;
}

/* ---- the config file ---- */

static int fc_config_apply(struct fc_config *c, const cJSON *j, char *err, size_t errlen)
{
	static const struct fc_field f[] = {
		{ "boot-source", FC_OBJ, true },
		{ "machine-config", FC_OBJ, false },
		{ "drives", FC_ARR, false },
		{ "network-interfaces", FC_ARR, false },
		{ "metrics", FC_OBJ, false },
		{ "logger", FC_OBJ, false },
		{ "serial", FC_OBJ, false },
		{ "entropy", FC_OBJ, false },
		{ "kestrel", FC_OBJ, false },
	};
	/* Firecracker sections kestrel does not have: named, so the error says so. */
	static const char *const unsupported[] = {
		"balloon", "vsock", "mmds-config", "cpu-config", "pmem", "memory-hotplug",
	};
	const cJSON *m;
	char where[48];
	int e, i;

	if (cJSON_IsObject(j)) {
		for (size_t k = 0; k < FC_NFIELDS(unsupported); k++) {
			if (cJSON_GetObjectItemCaseSensitive(j, unsupported[k])) {
				snprintf(err, errlen, "config file: '%s' is not supported by kestrel", unsupported[k]);
				return -EINVAL;
			}
		}
	}
	e = fc_check(j, f, FC_NFIELDS(f), "the config file", err, errlen);
	if (e)
		return e;
	e = fc_boot_source_apply(c, NULL, fc_get(j, "boot-source"), "boot-source", err, errlen);
	if (!e && (m = fc_get(j, "machine-config")))
		e = fc_machine_config_apply(c, NULL, m, "machine-config", err, errlen);
	i = 0;
	cJSON_ArrayForEach(m, fc_get(j, "drives")) {
		if (e)
			break;
		snprintf(where, sizeof(where), "drives[%d]", i++);
		e = fc_drive_apply(c, NULL, m, where, err, errlen);
		if (!e && c->ndrives != (unsigned)i) {
			snprintf(err, errlen, "%s: drive_id '%s' is used twice", where, c->drives[c->ndrives - 1].id);
			e = -EINVAL;
		}
	}
	i = 0;
	cJSON_ArrayForEach(m, fc_get(j, "network-interfaces")) {
		if (e)
			break;
		snprintf(where, sizeof(where), "network-interfaces[%d]", i++);
		e = fc_net_apply(c, NULL, m, where, err, errlen);
		if (!e && c->nnets != (unsigned)i) {
			snprintf(err, errlen, "%s: iface_id '%s' is used twice", where, c->nets[c->nnets - 1].id);
			e = -EINVAL;
		}
	}
	if (!e && (m = fc_get(j, "metrics")))
		e = fc_metrics_apply(c, NULL, m, "metrics", err, errlen);
	if (!e && (m = fc_get(j, "logger")))
		e = fc_logger_apply(c, NULL, m, "logger", err, errlen);
	if (!e && (m = fc_get(j, "serial")))
		e = fc_serial_apply(c, NULL, m, "serial", err, errlen);
	if (!e && (m = fc_get(j, "entropy")))
		e = fc_entropy_apply(c, NULL, m, "entropy", err, errlen);
	if (!e && (m = fc_get(j, "kestrel")))
		e = fc_kestrel_apply(c, NULL, m, "kestrel", err, errlen);
	return e;
}

int fc_config_load(struct fc_config *c, const char *json, size_t len, char *err, size_t errlen)
{
	cJSON *j;
	int e;

	fc_config_init(c);
	j = fc_parse(json, len, "config file", err, errlen);
	if (!j)
		return -EINVAL;
	e = fc_config_apply(c, j, err, errlen);
	cJSON_Delete(j);
	if (e)
		fc_config_exit(c);
	return e;
}

/* ---- back to JSON ---- */

char *fc_config_to_json(const struct fc_config *c)
{
	static const char *const level_names[] = { "Error", "Warning", "Info", "Debug" };
	cJSON *top = cJSON_CreateObject(), *o;
	bool ok = top != NULL;

	if (ok && c->kernel) {
		ok = (o = cJSON_AddObjectToObject(top, "boot-source")) && fc_add_str(o, "kernel_image_path", c->kernel) &&
		     fc_add_str(o, "boot_args", c->boot_args) && fc_add_str(o, "initrd_path", c->initrd);
	}
	if (ok)
		ok = (o = fc_machine_config_obj(c)) && cJSON_AddItemToObject(top, "machine-config", o);
	ok = ok && fc_add_drives(top, c) && fc_add_nets(top, c);
	if (ok && c->metrics_path)
		ok = (o = cJSON_AddObjectToObject(top, "metrics")) && fc_add_str(o, "metrics_path", c->metrics_path);
	if (ok && c->log_level != FC_LOG_UNSET)
		ok = (o = cJSON_AddObjectToObject(top, "logger")) &&
		     fc_add_str(o, "level", level_names[c->log_level]);
	if (ok && c->entropy)
		ok = cJSON_AddObjectToObject(top, "entropy") != NULL;
	if (ok && c->console)
		ok = (o = cJSON_AddObjectToObject(top, "kestrel")) && fc_add_str(o, "console", c->console);
	if (!ok) {
		cJSON_Delete(top);
		return NULL;
	}
	return fc_print(top);
}

/* ---- fc_config → machine_config ---- */

static char *fc_strdup_opt(const char *s, bool *oom)
{
	char *d = s ? strdup(s) : NULL;

	if (s && !d)
		*oom = true;
	return d;
}

/*
 * As Firecracker does, the root drive goes first (so it is /dev/vda) and the
 * kernel command line gets "root=/dev/vda" (or root=PARTUUID=...) and ro/rw.
 */
static char *fc_cmdline(const struct fc_config *c)
{
	const struct fc_drive *root = NULL;
	const char *args = c->boot_args ? c->boot_args : "";
	char *s;
	int n;

	for (unsigned i = 0; i < c->ndrives; i++)
		if (c->drives[i].root)
			root = &c->drives[i];
	if (!root)
		return strdup(args);
	if (root->partuuid)
		n = asprintf(&s, "%s%sroot=PARTUUID=%s %s", args, *args ? " " : "", root->partuuid,
			     root->read_only ? "ro" : "rw");
	else
		n = asprintf(&s, "%s%sroot=/dev/vda %s", args, *args ? " " : "", root->read_only ? "ro" : "rw");
	return n < 0 ? NULL : s;
}

int fc_machine_build(const struct fc_config *c, struct fc_machine *m, char *err, size_t errlen)
{
	struct machine_config *cfg = &m->cfg;
	bool oom = false;
	unsigned k = 0;

	memset(m, 0, sizeof(*m));
	if (!c->kernel) {
		snprintf(err, errlen, "no boot source: set the kernel with PUT /boot-source first");
		return -EINVAL;
	}
	cfg->cpus = c->vcpus;
	cfg->mem_size = (uint64_t)c->mem_mib << 20;
	cfg->hugepages = c->huge_pages == 2;
	cfg->track_dirty_pages = c->track_dirty_pages;
	cfg->rng = c->entropy;
	cfg->kvm_path = "/dev/kvm";
	cfg->metrics_interval = 60;
	cfg->kernel = m->strs[0] = fc_strdup_opt(c->kernel, &oom);
	cfg->initrd = m->strs[1] = fc_strdup_opt(c->initrd, &oom);
	cfg->console = m->strs[2] = fc_strdup_opt(c->console ? c->console : "stdio", &oom);
	cfg->metrics_path = m->strs[3] = fc_strdup_opt(c->metrics_path, &oom);
	cfg->cmdline = m->cmdline = fc_cmdline(c);
	oom |= !m->cmdline;
	/* The root drive first, then the others in the order they were put. */
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned i = 0; i < c->ndrives; i++) {
			if (c->drives[i].root != (pass == 0))
				continue;
			fc_disk_config(&c->drives[i], &cfg->disks[k++]);
		}
	}
	cfg->ndisks = k;
	for (unsigned i = 0; i < c->nnets; i++)
		fc_net_config(&c->nets[i], &cfg->nets[i]);
	cfg->nnets = c->nnets;
	if (oom) {
		fc_machine_exit(m);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

void fc_machine_exit(struct fc_machine *m)
{
	if (!m)
		return;
	free(m->cmdline);
	for (size_t i = 0; i < FC_NFIELDS(m->strs); i++)
		free(m->strs[i]);
	memset(m, 0, sizeof(*m));
}

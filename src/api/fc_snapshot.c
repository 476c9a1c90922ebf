/* Bodies that are not configuration: actions, the VM state, snapshot create and load. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "api/fc.h"
#include "api/fc_priv.h"

/* ---- actions, VM state, snapshots ---- */

/* A body that is one required string field naming one of `names`: its index in *v. */
static int fc_parse_one_enum(const char *json, size_t len, const char *where, const struct fc_field *f,
			     const char *const *names, size_t nnames, int *v, char *err, size_t errlen)
{
	cJSON *j = fc_parse(json, len, where, err, errlen);
	int e;

	if (!j)
		return -EINVAL;
	e = fc_check(j, f, 1, where, err, errlen);
	if (!e)
		e = fc_get_enum(j, f->name, names, nnames, where, v, err, errlen);
	cJSON_Delete(j);
	return e;
}

int fc_parse_action(const char *json, size_t len, enum fc_action *out, char *err, size_t errlen)
{
	static const struct fc_field f[] = { { "action_type", FC_STR, true } };
	static const char *const names[] = { "InstanceStart", "SendCtrlAltDel", "FlushMetrics" };
	int v, e = fc_parse_one_enum(json, len, "/actions", f, names, FC_NFIELDS(names), &v, err, errlen);

	if (e)
		return e;
	*out = v == 0 ? FC_ACTION_START : v == 1 ? FC_ACTION_CTRL_ALT_DEL : FC_ACTION_FLUSH_METRICS;
	return 0;
}

int fc_parse_vm_state(const char *json, size_t len, bool *pause, char *err, size_t errlen)
{
	static const struct fc_field f[] = { { "state", FC_STR, true } };
	static const char *const names[] = { "Paused", "Resumed" };
	int v, e = fc_parse_one_enum(json, len, "/vm", f, names, FC_NFIELDS(names), &v, err, errlen);

	if (!e)
		*pause = v == 0;
	return e;
}

int fc_parse_snapshot_create(const char *json, size_t len, struct fc_snapshot_create *out,
			     char *err, size_t errlen)
{
	static const struct fc_field f[] = {
		{ "snapshot_path", FC_STR, true },
		{ "mem_file_path", FC_STR, true },
		{ "snapshot_type", FC_STR, false },
		{ "version", FC_STR, false },
	};
	static const char *const types[] = { "Full", "Diff" };
	const char *where = "/snapshot/create", *state, *mem, *ver;
	cJSON *j = fc_parse(json, len, where, err, errlen);
	int e, type;

	memset(out, 0, sizeof(*out));
	if (!j)
		return -EINVAL;
	e = fc_check(j, f, FC_NFIELDS(f), where, err, errlen);
	if (!e)
		e = fc_get_str(j, "snapshot_path", FC_PATH_MAX, false, where, &state, err, errlen);
	if (!e)
		e = fc_get_str(j, "mem_file_path", FC_PATH_MAX, false, where, &mem, err, errlen);
	if (!e)
		e = fc_get_str(j, "version", 32, true, where, &ver, err, errlen);
	if (!e)
		e = fc_get_enum(j, "snapshot_type", types, 2, where, &type, err, errlen);
	if (!e && !strcmp(state, mem)) {
		snprintf(err, errlen, "snapshot_path and mem_file_path in %s must be different files", where);
		e = -EINVAL;
	}
	if (!e && (fc_set_str(&out->state_path, state) || fc_set_str(&out->mem_path, mem))) {
		snprintf(err, errlen, "out of memory");
		e = -ENOMEM;
	}
	cJSON_Delete(j);
	if (e) {
		fc_snapshot_create_exit(out);
		return e;
	}
	out->p.type = type == 1 ? VMM_SNAPSHOT_DIFF : VMM_SNAPSHOT_FULL;
	out->p.state_path = out->state_path;
	out->p.mem_path = out->mem_path;
	return 0;
}

void fc_snapshot_create_exit(struct fc_snapshot_create *s)
{
	free(s->state_path);
	free(s->mem_path);
	memset(s, 0, sizeof(*s));
}

static int fc_mem_backend(const cJSON *j, const char *where, const char **path, char *err, size_t errlen)
{
	static const struct fc_field f[] = {
		{ "backend_type", FC_STR, true },
		{ "backend_path", FC_STR, true },
	};
	static const char *const types[] = { "File", "Uffd" };
	int e, type;

	e = fc_check(j, f, FC_NFIELDS(f), where, err, errlen);
	if (!e)
		e = fc_get_enum(j, "backend_type", types, 2, where, &type, err, errlen);
	if (!e)
		e = fc_get_str(j, "backend_path", FC_PATH_MAX, false, where, path, err, errlen);
	if (!e && type == 1) {
		snprintf(err, errlen, "backend_type Uffd in %s is not supported by kestrel (use File)", where);
		e = -EINVAL;
	}
	return e;
}

static int fc_net_overrides(const cJSON *a, struct fc_snapshot_load *out, char *err, size_t errlen)
{
	static const struct fc_field f[] = {
		{ "iface_id", FC_STR, true },
		{ "host_dev_name", FC_STR, true },
	};
	struct vmm_load_params *p = &out->p;
	const cJSON *o;
	char where[48], q[48];
	int e;

	cJSON_ArrayForEach(o, a) {
		const char *id, *dev;
		unsigned n = p->n_net_overrides;

		snprintf(where, sizeof(where), "network_overrides[%u]", n);
		if (n == VMM_MAX_NET_OVERRIDES) {
			snprintf(err, errlen, "network_overrides: at most %d entries", VMM_MAX_NET_OVERRIDES);
			return -EINVAL;
		}
		e = fc_check(o, f, FC_NFIELDS(f), where, err, errlen);
		if (!e)
			e = fc_get_str(o, "iface_id", FC_ID_MAX, false, where, &id, err, errlen);
		if (!e)
			e = fc_get_str(o, "host_dev_name", 64, false, where, &dev, err, errlen);
		if (e)
			return e;
		if (!fc_id_valid(id) || !fc_ifname_valid(dev)) {
			snprintf(err, errlen, "%s: '%s' is not a valid %s", where,
				 fc_printable(q, sizeof(q), fc_id_valid(id) ? dev : id),
				 fc_id_valid(id) ? "TAP device name" : "iface_id");
			return -EINVAL;
		}
		for (unsigned i = 0; i < n; i++) {
			if (!strcmp(p->net_overrides[i].iface_id, id)) {
				snprintf(err, errlen, "%s: iface_id '%s' is overridden twice", where, id);
				return -EINVAL;
			}
		}
		if (fc_set_str(&out->strs[2 + 2 * n], id) || fc_set_str(&out->strs[3 + 2 * n], dev)) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		p->net_overrides[n].iface_id = out->strs[2 + 2 * n];
		p->net_overrides[n].host_dev_name = out->strs[3 + 2 * n];
		p->n_net_overrides++;
	}
	return 0;
}

int fc_parse_snapshot_load(const char *json, size_t len, struct fc_snapshot_load *out,
			   char *err, size_t errlen)
{
	static const struct fc_field f[] = {
		{ "snapshot_path", FC_STR, true },
		{ "mem_file_path", FC_STR, false },
		{ "mem_backend", FC_OBJ, false },
		{ "enable_diff_snapshots", FC_BOOL, false },
		{ "track_dirty_pages", FC_BOOL, false },
		{ "resume_vm", FC_BOOL, false },
		{ "network_overrides", FC_ARR, false },
		{ "vsock_override", FC_OBJ, false },
		{ "clock_realtime", FC_BOOL, false },
		{ "verify_memory", FC_BOOL, false },        /* kestrel: check the memory file's digest */
	};
	const char *where = "/snapshot/load", *state, *mem = NULL;
	cJSON *j = fc_parse(json, len, where, err, errlen);
	const cJSON *m;
	int e;

	memset(out, 0, sizeof(*out));
	if (!j)
		return -EINVAL;
	e = fc_check(j, f, FC_NFIELDS(f), where, err, errlen);
	if (!e)
		e = fc_get_str(j, "snapshot_path", FC_PATH_MAX, false, where, &state, err, errlen);
	if (!e && fc_get(j, "mem_file_path") && fc_get(j, "mem_backend")) {
		snprintf(err, errlen, "%s: give either mem_file_path or mem_backend, not both", where);
		e = -EINVAL;
	}
	if (!e && (m = fc_get(j, "mem_backend")))
		e = fc_mem_backend(m, "mem_backend", &mem, err, errlen);
	else if (!e)
		e = fc_get_str(j, "mem_file_path", FC_PATH_MAX, false, where, &mem, err, errlen);
	if (!e && !mem) {
		snprintf(err, errlen, "missing field 'mem_backend' (or 'mem_file_path') in %s", where);
		e = -EINVAL;
	}
	if (!e && fc_get(j, "vsock_override")) {
		snprintf(err, errlen, "vsock_override in %s: kestrel has no vsock device", where);
		e = -EINVAL;
	}
	if (!e && fc_get_bool(j, "clock_realtime", false)) {
		snprintf(err, errlen, "clock_realtime in %s is not supported by kestrel", where);
		e = -EINVAL;
	}
	if (!e && (fc_set_str(&out->strs[0], state) || fc_set_str(&out->strs[1], mem))) {
		snprintf(err, errlen, "out of memory");
		e = -ENOMEM;
	}
	if (!e)
		e = fc_net_overrides(fc_get(j, "network_overrides"), out, err, errlen);
	if (!e) {
		out->p.state_path = out->strs[0];
		out->p.mem_path = out->strs[1];
		out->p.resume = fc_get_bool(j, "resume_vm", false);
		out->p.track_dirty_pages = fc_get_bool(j, "enable_diff_snapshots", false) ||
					   fc_get_bool(j, "track_dirty_pages", false);
		out->p.verify_memory = fc_get_bool(j, "verify_memory", false);
	}
	cJSON_Delete(j);
	if (e)
		fc_snapshot_load_exit(out);
	return e;
}

void fc_snapshot_load_exit(struct fc_snapshot_load *s)
{
	for (size_t i = 0; i < FC_NFIELDS(s->strs); i++)
		free(s->strs[i]);
	memset(s, 0, sizeof(*s));
}

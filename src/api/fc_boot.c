/* Firecracker's boot-source and machine-config resources. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "api/fc.h"
#include "api/fc_priv.h"

/* ---- boot-source ---- */

int fc_boot_source_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where, char *err,
			 size_t errlen)
{
	static const struct fc_field f[] = {
		{ "kernel_image_path", FC_STR, true },
		{ "boot_args", FC_STR, false },
		{ "initrd_path", FC_STR, false },
	};
	const char *kernel, *args, *initrd;
	char *nk = NULL, *na = NULL, *ni = NULL;
	int e;

	e = fc_check(j, f, FC_NFIELDS(f), where, err, errlen);
	if (!e)
		e = fc_get_str(j, "kernel_image_path", FC_PATH_MAX, false, where, &kernel, err, errlen);
	if (!e)
		e = fc_get_str(j, "boot_args", FC_BOOT_ARGS_MAX, true, where, &args, err, errlen);
	if (!e)
		e = fc_get_str(j, "initrd_path", FC_PATH_MAX, false, where, &initrd, err, errlen);
	if (!e)
		e = fc_check_file(kernel, false, false, "kernel_image_path", err, errlen);
	if (!e && initrd)
		e = fc_check_file(initrd, false, false, "initrd_path", err, errlen);
	if (e)
		return e;
	if (fc_set_str(&nk, kernel) || fc_set_str(&na, args) || fc_set_str(&ni, initrd))
		goto err_nomem;
	free(c->kernel);
	free(c->boot_args);
	free(c->initrd);
	c->kernel = nk;
	c->boot_args = na;
	c->initrd = ni;
	c->boot_configured = true;
	return 0;
err_nomem:
	free(nk);
	free(na);
	free(ni);
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

/* ---- machine-config ---- */

static int fc_machine_config_set(struct fc_config *c, const cJSON *j, bool patch, const char *where,
				   char *err, size_t errlen)
{
	static const struct fc_field put[] = {
		{ "vcpu_count", FC_UINT, true },
		{ "mem_size_mib", FC_UINT, true },
		{ "smt", FC_BOOL, false },
		{ "track_dirty_pages", FC_BOOL, false },
		{ "huge_pages", FC_STR, false },
		{ "cpu_template", FC_STR, false },
	};
	struct fc_field f[FC_NFIELDS(put)];
	static const char *const huge[] = { "None", "Transparent", "2M" };
	static const char *const tmpl[] = { "None" };
	const cJSON *m;
	unsigned vcpus = patch ? c->vcpus : 1, mem = patch ? c->mem_mib : FC_DEFAULT_MEM_MIB;
	bool dirty = patch ? c->track_dirty_pages : false;
	int hp = patch ? c->huge_pages : 0, v, e;

	memcpy(f, put, sizeof(f));
	for (size_t i = 0; patch && i < FC_NFIELDS(f); i++)
		f[i].required = false;
	e = fc_check(j, f, FC_NFIELDS(f), where, err, errlen);
	if (e)
		return e;
	if ((m = fc_get(j, "vcpu_count"))) {
		if (m->valuedouble < 1 || m->valuedouble > FC_MAX_VCPUS) {
			snprintf(err, errlen, "vcpu_count in %s must be from 1 to %d, not %.0f", where, FC_MAX_VCPUS,
				 m->valuedouble);
			return -EINVAL;
		}
		vcpus = (unsigned)m->valuedouble;
	}
	if ((m = fc_get(j, "mem_size_mib"))) {
		if (m->valuedouble < FC_MIN_MEM_MIB || m->valuedouble > FC_MAX_MEM_MIB) {
			snprintf(err, errlen, "mem_size_mib in %s must be from %d to %u, not %.0f", where,
				 FC_MIN_MEM_MIB, FC_MAX_MEM_MIB, m->valuedouble);
			return -EINVAL;
		}
		mem = (unsigned)m->valuedouble;
	}
	if (fc_get_bool(j, "smt", false)) {
		snprintf(err, errlen, "smt in %s: simultaneous multithreading is not supported by kestrel "
			 "(its vCPUs have no SMT topology)", where);
		return -EINVAL;
	}
	dirty = fc_get_bool(j, "track_dirty_pages", dirty);
	e = fc_get_enum(j, "huge_pages", huge, FC_NFIELDS(huge), where, &v, err, errlen);
	if (e)
		return e;
	if (v >= 0)
		hp = v;
	if (fc_get(j, "cpu_template")) {
		e = fc_get_enum(j, "cpu_template", tmpl, 1, where, &v, err, errlen);
		if (e) {
			snprintf(err, errlen, "cpu_template in %s: CPU templates are not supported by kestrel "
				 "(only \"None\")", where);
			return e;
		}
	}
	if (hp == 2 && mem % 2) {
		snprintf(err, errlen, "mem_size_mib in %s must be a multiple of 2 with 2M huge pages", where);
		return -EINVAL;
	}
	c->vcpus = vcpus;
	c->mem_mib = mem;
	c->track_dirty_pages = dirty;
	c->huge_pages = hp;
	c->boot_configured = true;
	return 0;
}

int fc_machine_config_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where, char *err,
			    size_t errlen)
{
	return fc_machine_config_set(c, j, false, where, err, errlen);
}

/* PATCH: only the fields given change. */
int fc_machine_config_patch_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where, char *err,
				  size_t errlen)
{
	return fc_machine_config_set(c, j, true, where, err, errlen);
}

static const char *const fc_huge_names[] = { "None", "Transparent", "2M" };

cJSON *fc_machine_config_obj(const struct fc_config *c)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	if (!cJSON_AddNumberToObject(o, "vcpu_count", c->vcpus) ||
	    !cJSON_AddNumberToObject(o, "mem_size_mib", c->mem_mib) ||
	    !cJSON_AddBoolToObject(o, "smt", false) ||
	    !cJSON_AddBoolToObject(o, "track_dirty_pages", c->track_dirty_pages) ||
	    !cJSON_AddStringToObject(o, "huge_pages", fc_huge_names[c->huge_pages])) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

char *fc_machine_config_to_json(const struct fc_config *c)
{
	return fc_print(fc_machine_config_obj(c));
}

/*
 * Firecracker JSON → kestrel configuration. The field names, required fields
 * and enumerations follow Firecracker's API description; what kestrel cannot
 * do (rate limiters, CPU templates, SMT, vhost-user drives, UFFD memory) is
 * refused by name rather than silently ignored.
 *
 * Pattern for each body: check the object's shape against a field table
 * (fc_check: unknown, duplicate, mistyped and missing fields), read the
 * values into a local copy with their own range checks, and only then swap
 * the copy in — so an error leaves the config as it was.
 */
#include "api/fc.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "util/log.h"

/* ---- shape checking ---- */

enum fc_kind { FC_STR, FC_BOOL, FC_UINT, FC_OBJ, FC_ARR };

struct fc_field {
	const char *name;
	enum fc_kind kind;
	bool required;
};

#define FC_NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

static const char *const fc_kind_names[] = {
	[FC_STR] = "a string", [FC_BOOL] = "a boolean", [FC_UINT] = "a non-negative integer",
	[FC_OBJ] = "an object", [FC_ARR] = "an array",
};

/* A user-supplied name, safe to put in a one-line message. */
static const char *fc_printable(char *buf, size_t len, const char *s)
{
	size_t i = 0;

	for (; s && *s && i + 4 < len; s++)
		buf[i++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	if (s && *s && i + 4 >= len) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

static bool fc_is_uint(const cJSON *j)
{
	double d;

	if (!cJSON_IsNumber(j))
		return false;
	d = j->valuedouble;
	return isfinite(d) && d >= 0 && d <= 4294967295.0 && floor(d) == d;
}

static bool fc_kind_ok(const cJSON *j, enum fc_kind k)
{
	switch (k) {
	case FC_STR: return cJSON_IsString(j) && j->valuestring;
	case FC_BOOL: return cJSON_IsBool(j);
	case FC_UINT: return fc_is_uint(j);
	case FC_OBJ: return cJSON_IsObject(j);
	case FC_ARR: return cJSON_IsArray(j);
	}
	return false;
}

/*
 * obj must be an object whose members are all in f, once each, of the right
 * kind (null counts as absent for optional fields), with the required ones.
 */
static int fc_check(const cJSON *obj, const struct fc_field *f, size_t n, const char *where,
		    char *err, size_t errlen)
{
	uint32_t seen = 0;
	char name[48];

	if (!cJSON_IsObject(obj)) {
		snprintf(err, errlen, "%s must be a JSON object", where);
		return -EINVAL;
	}
	for (const cJSON *m = obj->child; m; m = m->next) {
		size_t i;

		for (i = 0; i < n; i++)
			if (m->string && !strcmp(m->string, f[i].name))
				break;
		if (i == n) {
			snprintf(err, errlen, "unknown field '%s' in %s", fc_printable(name, sizeof(name), m->string),
				 where);
			return -EINVAL;
		}
		if (seen & (1u << i)) {
			snprintf(err, errlen, "duplicate field '%s' in %s", f[i].name, where);
			return -EINVAL;
		}
		seen |= 1u << i;
		if (cJSON_IsNull(m) && !f[i].required)
			continue;
		if (!fc_kind_ok(m, f[i].kind)) {
			snprintf(err, errlen, "field '%s' in %s must be %s", f[i].name, where,
				 fc_kind_names[f[i].kind]);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (f[i].required && !(seen & (1u << i))) {
			snprintf(err, errlen, "missing field '%s' in %s", f[i].name, where);
			return -EINVAL;
		}
	}
	return 0;
}

/* A member that fc_check accepted, or NULL when absent or null. */
static const cJSON *fc_get(const cJSON *obj, const char *name)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsNull(m) ? NULL : m;
}

static bool fc_get_bool(const cJSON *obj, const char *name, bool dflt)
{
	const cJSON *m = fc_get(obj, name);

	return m ? cJSON_IsTrue(m) : dflt;
}

/* A string member with no control characters, 1..max bytes (0..max with empty_ok). */
static int fc_get_str(const cJSON *obj, const char *name, size_t max, bool empty_ok, const char *where,
		      const char **out, char *err, size_t errlen)
{
	const cJSON *m = fc_get(obj, name);
	size_t len;

	*out = NULL;
	if (!m)
		return 0;
	len = strlen(m->valuestring);
	if (!len && !empty_ok) {
		snprintf(err, errlen, "field '%s' in %s must not be empty", name, where);
		return -EINVAL;
	}
	if (len > max) {
		snprintf(err, errlen, "field '%s' in %s is longer than %zu bytes", name, where, max);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)m->valuestring[i] < 0x20 || m->valuestring[i] == 0x7f) {
			snprintf(err, errlen, "field '%s' in %s contains a control character", name, where);
			return -EINVAL;
		}
	}
	*out = m->valuestring;
	return 0;
}

/* One of `names` (exact match); its index or -1 when absent. */
static int fc_get_enum(const cJSON *obj, const char *name, const char *const *names, size_t n,
		       const char *where, int *out, char *err, size_t errlen)
{
	const cJSON *m = fc_get(obj, name);
	char v[48];

	*out = -1;
	if (!m)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(m->valuestring, names[i])) {
			*out = (int)i;
			return 0;
		}
	}
	snprintf(err, errlen, "field '%s' in %s: '%s' is not one of", name, where,
		 fc_printable(v, sizeof(v), m->valuestring));
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(err);

		snprintf(err + l, errlen - l, "%s %s", i ? (i + 1 == n ? " or" : ",") : "", names[i]);
	}
	return -EINVAL;
}

/* Parse a body: size-limited, no NUL bytes, one JSON value and nothing after it. */
static cJSON *fc_parse(const char *json, size_t len, const char *where, char *err, size_t errlen)
{
	const char *end = NULL;
	cJSON *j;

	if (len > FC_BODY_MAX) {
		snprintf(err, errlen, "%s: body is larger than %d bytes", where, FC_BODY_MAX);
		return NULL;
	}
	if (!json || len == 0) {
		snprintf(err, errlen, "%s: empty body (a JSON object is required)", where);
		return NULL;
	}
	if (memchr(json, '\0', len)) {
		snprintf(err, errlen, "%s: body contains a NUL byte", where);
		return NULL;
	}
	j = cJSON_ParseWithLengthOpts(json, len, &end, false);
	if (!j) {
		size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;

		snprintf(err, errlen, "%s: malformed JSON near byte %zu", where, at);
		return NULL;
	}
	while (end && end < json + len && isspace((unsigned char)*end))
		end++;
	if (end && end < json + len) {
		snprintf(err, errlen, "%s: unexpected data after the JSON value at byte %zu", where,
			 (size_t)(end - json));
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

/* ---- value checks ---- */

static bool fc_name_chars(const char *s, size_t max, const char *extra)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
			return false;
	return true;
}

bool fc_id_valid(const char *id)
{
	return id && fc_name_chars(id, FC_ID_MAX, "_-");
}

/* A host network device name: what IFNAMSIZ allows, without separators. */
static bool fc_ifname_valid(const char *s)
{
	return fc_name_chars(s, 15, "_.-");
}

/* "xx:xx:xx:xx:xx:xx", unicast. */
static bool fc_mac_valid(const char *s)
{
	if (strlen(s) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2 ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	/* The first octet's low bit marks multicast. */
	return (strtoul((char[3]){ s[0], s[1], 0 }, NULL, 16) & 1) == 0;
}

/* A host file the VM will open: it must exist, be a regular file (or a
 * block device when dev_ok) and be readable (and writable when rw). */
static int fc_check_file(const char *path, bool dev_ok, bool rw, const char *what, char *err, size_t errlen)
{
	char p[96];
	struct stat st;

	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "%s '%s': %s", what, fc_printable(p, sizeof(p), path), strerror(errno));
		return -EINVAL;
	}
	if (!S_ISREG(st.st_mode) && !(dev_ok && S_ISBLK(st.st_mode))) {
		snprintf(err, errlen, "%s '%s' is not a regular file%s", what, fc_printable(p, sizeof(p), path),
			 dev_ok ? " or block device" : "");
		return -EINVAL;
	}
	if (access(path, rw ? R_OK | W_OK : R_OK) < 0) {
		snprintf(err, errlen, "%s '%s' is not %s: %s", what, fc_printable(p, sizeof(p), path),
			 rw ? "readable and writable" : "readable", strerror(errno));
		return -EINVAL;
	}
	return 0;
}

static int fc_console_valid(const char *s)
{
	if (!strcmp(s, "stdio") || !strcmp(s, "none"))
		return 0;
	if (!strncmp(s, "file:", 5) && s[5])
		return 0;
	return -EINVAL;
}

/* Replace *slot with a copy of s (NULL clears it). */
static int fc_set_str(char **slot, const char *s)
{
	char *copy = NULL;

	if (s && !(copy = strdup(s)))
		return -ENOMEM;
	free(*slot);
	*slot = copy;
	return 0;
}

/* ---- config life cycle ---- */

void fc_config_init(struct fc_config *c)
{
	memset(c, 0, sizeof(*c));
	c->vcpus = 1;
	c->mem_mib = FC_DEFAULT_MEM_MIB;
	c->log_level = FC_LOG_UNSET;
}

static void fc_drive_free(struct fc_drive *d)
{
	free(d->id);
	free(d->path);
	free(d->partuuid);
	memset(d, 0, sizeof(*d));
}

static void fc_net_free(struct fc_net *n)
{
	free(n->id);
	free(n->host_dev);
	free(n->mac);
	memset(n, 0, sizeof(*n));
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

/* ---- boot-source ---- */

static int fc_boot_source_apply(struct fc_config *c, const cJSON *j, const char *where, char *err, size_t errlen)
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

static int fc_machine_config_apply(struct fc_config *c, const cJSON *j, bool patch, const char *where,
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

/* ---- drives ---- */

static int fc_drive_apply(struct fc_config *c, const char *path_id, const cJSON *j, const char *where,
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
	if (fc_get(j, "rate_limiter")) {
		snprintf(err, errlen, "rate_limiter in %s: rate limiters are not supported by kestrel", where);
		return -EINVAL;
	}
	if (fc_get(j, "socket")) {
		snprintf(err, errlen, "socket in %s: vhost-user drives are not supported by kestrel", where);
		return -EINVAL;
	}
	if (!path) {
		snprintf(err, errlen, "missing field 'path_on_host' in %s", where);
		return -EINVAL;
	}
	if (strchr(path, ',')) {
		snprintf(err, errlen, "path_on_host in %s: kestrel cannot use a path that contains ','", where);
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

/* ---- network-interfaces ---- */

static int fc_net_apply(struct fc_config *c, const char *path_id, const cJSON *j, const char *where,
			char *err, size_t errlen)
{
	static const struct fc_field f[] = {
		{ "iface_id", FC_STR, true },
		{ "host_dev_name", FC_STR, true },
		{ "guest_mac", FC_STR, false },
		{ "mtu", FC_UINT, false },
		{ "rx_rate_limiter", FC_OBJ, false },
		{ "tx_rate_limiter", FC_OBJ, false },
	};
	const char *id, *dev, *mac;
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
	if (!fc_ifname_valid(dev)) {
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
		if (!strcmp(c->nets[i].host_dev, dev)) {
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
	if (fc_set_str(&n.id, id) || fc_set_str(&n.host_dev, dev) || fc_set_str(&n.mac, mac)) {
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

/* ---- metrics, logger, serial, entropy ---- */

static int fc_metrics_apply(struct fc_config *c, const cJSON *j, const char *where, char *err, size_t errlen)
{
	static const struct fc_field f[] = { { "metrics_path", FC_STR, true } };
	const char *path;
	int e;

	e = fc_check(j, f, FC_NFIELDS(f), where, err, errlen);
	if (!e)
		e = fc_get_str(j, "metrics_path", FC_PATH_MAX, false, where, &path, err, errlen);
	if (e)
		return e;
	if (fc_set_str(&c->metrics_path, path)) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int fc_logger_apply(struct fc_config *c, const cJSON *j, const char *where, char *err, size_t errlen)
{
	static const struct fc_field f[] = {
		{ "level", FC_STR, false },
		{ "log_path", FC_STR, false },
		{ "show_level", FC_BOOL, false },
		{ "show_log_origin", FC_BOOL, false },
		{ "module", FC_STR, false },
	};
	static const struct { const char *name; int level; } levels[] = {
		{ "Off", LOG_ERROR }, { "Error", LOG_ERROR }, { "Warning", LOG_WARN }, { "Warn", LOG_WARN },
		{ "Info", LOG_INFO }, { "Debug", LOG_DEBUG }, { "Trace", LOG_DEBUG },
	};
	const char *lvl;
	char p[48];
	int e;

	e = fc_check(j, f, FC_NFIELDS(f), where, err, errlen);
	if (!e)
		e = fc_get_str(j, "level", 16, false, where, &lvl, err, errlen);
	if (e)
		return e;
	if (fc_get(j, "log_path")) {
		snprintf(err, errlen, "log_path in %s is not supported: kestrel logs to its standard error", where);
		return -EINVAL;
	}
	if (fc_get(j, "module")) {
		snprintf(err, errlen, "module in %s is not supported: kestrel's log has no module filter", where);
		return -EINVAL;
	}
	if (!lvl)
		return 0;
	for (size_t i = 0; i < FC_NFIELDS(levels); i++) {
		if (!strcasecmp(lvl, levels[i].name)) {
			c->log_level = levels[i].level;
			return 0;
		}
	}
	snprintf(err, errlen, "level in %s: '%s' is not one of Error, Warning, Info, Debug, Trace or Off", where,
		 fc_printable(p, sizeof(p), lvl));
	return -EINVAL;
}

static int fc_serial_apply(struct fc_config *c, const cJSON *j, const char *where, char *err, size_t errlen)
{
	static const struct fc_field f[] = {
		{ "serial_out_path", FC_STR, false },
		{ "rate_limiter", FC_OBJ, false },
	};
	const char *path;
	char *spec;
	int e;

	e = fc_check(j, f, FC_NFIELDS(f), where, err, errlen);
	if (!e)
		e = fc_get_str(j, "serial_out_path", FC_PATH_MAX, false, where, &path, err, errlen);
	if (e)
		return e;
	if (fc_get(j, "rate_limiter")) {
		snprintf(err, errlen, "rate_limiter in %s: rate limiters are not supported by kestrel", where);
		return -EINVAL;
	}
	if (!path)
		return fc_set_str(&c->console, NULL);
	if (asprintf(&spec, "file:%s", path) < 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	free(c->console);
	c->console = spec;
	return 0;
}

/* Firecracker's entropy device is kestrel's virtio-rng (fed from getrandom()). */
static int fc_entropy_apply(struct fc_config *c, const cJSON *j, const char *where, char *err, size_t errlen)
{
	static const struct fc_field f[] = { { "rate_limiter", FC_OBJ, false } };
	int e;

	e = fc_check(j, f, FC_NFIELDS(f), where, err, errlen);
	if (e)
		return e;
	if (fc_get(j, "rate_limiter")) {
		snprintf(err, errlen, "rate_limiter in %s: rate limiters are not supported by kestrel", where);
		return -EINVAL;
	}
	c->entropy = true;
	c->boot_configured = true;
	return 0;
}

/* The "kestrel" section of a config file: kestrel's own settings. */
static int fc_kestrel_apply(struct fc_config *c, const cJSON *j, const char *where, char *err, size_t errlen)
{
	static const struct fc_field f[] = { { "console", FC_STR, false } };
	const char *console;
	int e;

	e = fc_check(j, f, FC_NFIELDS(f), where, err, errlen);
	if (!e)
		e = fc_get_str(j, "console", FC_PATH_MAX + 5, false, where, &console, err, errlen);
	if (e)
		return e;
	if (console && fc_console_valid(console)) {
		snprintf(err, errlen, "console in %s must be \"stdio\", \"none\" or \"file:PATH\"", where);
		return -EINVAL;
	}
	if (fc_set_str(&c->console, console)) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* ---- the public body entry points ---- */

typedef int (*fc_apply_fn)(struct fc_config *c, const cJSON *j, const char *where, char *err, size_t errlen);

/* Parse and apply; each apply function checks everything before it changes c. */
static int fc_put(struct fc_config *c, const char *json, size_t len, const char *where, fc_apply_fn fn,
		  char *err, size_t errlen)
{
	cJSON *j = fc_parse(json, len, where, err, errlen);
	int e;

	if (!j)
		return -EINVAL;
	e = fn(c, j, where, err, errlen);
	cJSON_Delete(j);
	return e;
}

int fc_put_boot_source(struct fc_config *c, const char *json, size_t len, char *err, size_t errlen)
{
	return fc_put(c, json, len, "/boot-source", fc_boot_source_apply, err, errlen);
}

int fc_put_machine_config(struct fc_config *c, bool patch, const char *json, size_t len,
			  char *err, size_t errlen)
{
	cJSON *j = fc_parse(json, len, "/machine-config", err, errlen);
	int e;

	if (!j)
		return -EINVAL;
	e = fc_machine_config_apply(c, j, patch, "/machine-config", err, errlen);
	cJSON_Delete(j);
	return e;
}

int fc_put_drive(struct fc_config *c, const char *id, const char *json, size_t len, char *err, size_t errlen)
{
	cJSON *j = fc_parse(json, len, "/drives", err, errlen);
	int e;

	if (!j)
		return -EINVAL;
	e = fc_drive_apply(c, id, j, "/drives", err, errlen);
	cJSON_Delete(j);
	return e;
}

int fc_put_net(struct fc_config *c, const char *id, const char *json, size_t len, char *err, size_t errlen)
{
	cJSON *j = fc_parse(json, len, "/network-interfaces", err, errlen);
	int e;

	if (!j)
		return -EINVAL;
	e = fc_net_apply(c, id, j, "/network-interfaces", err, errlen);
	cJSON_Delete(j);
	return e;
}

int fc_put_metrics(struct fc_config *c, const char *json, size_t len, char *err, size_t errlen)
{
	return fc_put(c, json, len, "/metrics", fc_metrics_apply, err, errlen);
}

int fc_put_logger(struct fc_config *c, const char *json, size_t len, char *err, size_t errlen)
{
	return fc_put(c, json, len, "/logger", fc_logger_apply, err, errlen);
}

int fc_put_entropy(struct fc_config *c, const char *json, size_t len, char *err, size_t errlen)
{
	return fc_put(c, json, len, "/entropy", fc_entropy_apply, err, errlen);
}

int fc_put_serial(struct fc_config *c, const char *json, size_t len, char *err, size_t errlen)
{
	return fc_put(c, json, len, "/serial", fc_serial_apply, err, errlen);
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
	e = fc_boot_source_apply(c, fc_get(j, "boot-source"), "boot-source", err, errlen);
	if (!e && (m = fc_get(j, "machine-config")))
		e = fc_machine_config_apply(c, m, false, "machine-config", err, errlen);
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
		e = fc_metrics_apply(c, m, "metrics", err, errlen);
	if (!e && (m = fc_get(j, "logger")))
		e = fc_logger_apply(c, m, "logger", err, errlen);
	if (!e && (m = fc_get(j, "serial")))
		e = fc_serial_apply(c, m, "serial", err, errlen);
	if (!e && (m = fc_get(j, "entropy")))
		e = fc_entropy_apply(c, m, "entropy", err, errlen);
	if (!e && (m = fc_get(j, "kestrel")))
		e = fc_kestrel_apply(c, m, "kestrel", err, errlen);
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

static const char *const fc_huge_names[] = { "None", "Transparent", "2M" };

/* cJSON's adders return NULL on failure; one check at the end catches them all. */
static bool fc_add_str(cJSON *o, const char *k, const char *v)
{
	return !v || cJSON_AddStringToObject(o, k, v);
}

static cJSON *fc_machine_config_obj(const struct fc_config *c)
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

static char *fc_print(cJSON *o)
{
	char *s = o ? cJSON_PrintUnformatted(o) : NULL;

	cJSON_Delete(o);
	return s;
}

char *fc_machine_config_to_json(const struct fc_config *c)
{
	return fc_print(fc_machine_config_obj(c));
}

static bool fc_add_drives(cJSON *top, const struct fc_config *c)
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
		    !fc_add_str(o, "io_engine", d->engine < 0 ? NULL : d->engine ? "Async" : "Sync"))
			return false;
	}
	return true;
}

static bool fc_add_nets(cJSON *top, const struct fc_config *c)
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
		    !fc_add_str(o, "guest_mac", n->mac) ||
		    (n->mtu && !cJSON_AddNumberToObject(o, "mtu", n->mtu)))
			return false;
	}
	return true;
}

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

static char *fc_disk_spec(const struct fc_drive *d)
{
	char *s;

	if (asprintf(&s, "%s%s%s", d->path, d->read_only ? ",ro" : "",
		     d->engine < 0 ? "" : d->engine ? ",engine=uring" : ",engine=sync") < 0)
		return NULL;
	return s;
}

static char *fc_net_spec(const struct fc_net *n)
{
	char *s, mtu[16] = "";

	if (n->mtu)
		snprintf(mtu, sizeof(mtu), ",mtu=%u", n->mtu);
	if (asprintf(&s, "tap=%s%s%s%s", n->host_dev, n->mac ? ",mac=" : "", n->mac ? n->mac : "", mtu) < 0)
		return NULL;
	return s;
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
			m->disks[k] = fc_disk_spec(&c->drives[i]);
			oom |= !m->disks[k];
			cfg->disks[k] = m->disks[k];
			k++;
		}
	}
	cfg->ndisks = k;
	for (unsigned i = 0; i < c->nnets; i++) {
		m->nets[i] = fc_net_spec(&c->nets[i]);
		m->net_ids[i] = fc_strdup_opt(c->nets[i].id, &oom);
		oom |= !m->nets[i];
		cfg->nets[i] = m->nets[i];
		cfg->net_ids[i] = m->net_ids[i];
	}
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
	for (size_t i = 0; i < MACHINE_MAX_DISKS; i++)
		free(m->disks[i]);
	for (size_t i = 0; i < MACHINE_MAX_NETS; i++) {
		free(m->nets[i]);
		free(m->net_ids[i]);
	}
	for (size_t i = 0; i < FC_NFIELDS(m->strs); i++)
		free(m->strs[i]);
	memset(m, 0, sizeof(*m));
}

/* ---- actions, VM state, snapshots ---- */

int fc_parse_action(const char *json, size_t len, enum fc_action *out, char *err, size_t errlen)
{
	static const struct fc_field f[] = { { "action_type", FC_STR, true } };
	static const char *const names[] = { "InstanceStart", "SendCtrlAltDel", "FlushMetrics" };
	cJSON *j = fc_parse(json, len, "/actions", err, errlen);
	int e, v;

	if (!j)
		return -EINVAL;
	e = fc_check(j, f, FC_NFIELDS(f), "/actions", err, errlen);
	if (!e)
		e = fc_get_enum(j, "action_type", names, FC_NFIELDS(names), "/actions", &v, err, errlen);
	cJSON_Delete(j);
	if (e)
		return e;
	*out = v == 0 ? FC_ACTION_START : v == 1 ? FC_ACTION_CTRL_ALT_DEL : FC_ACTION_FLUSH_METRICS;
	return 0;
}

int fc_parse_vm_state(const char *json, size_t len, bool *pause, char *err, size_t errlen)
{
	static const struct fc_field f[] = { { "state", FC_STR, true } };
	static const char *const names[] = { "Paused", "Resumed" };
	cJSON *j = fc_parse(json, len, "/vm", err, errlen);
	int e, v;

	if (!j)
		return -EINVAL;
	e = fc_check(j, f, FC_NFIELDS(f), "/vm", err, errlen);
	if (!e)
		e = fc_get_enum(j, "state", names, FC_NFIELDS(names), "/vm", &v, err, errlen);
	cJSON_Delete(j);
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

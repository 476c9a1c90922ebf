/*
 * What the fc_*.c files share: the JSON shape checks (fc_json.c) and each
 * resource's apply function, which the one PUT entry point (fc_put, fc.c)
 * and the config file reach through a table keyed by resource.
 */
#ifndef KESTREL_API_FC_PRIV_H
#define KESTREL_API_FC_PRIV_H

#include "util/compiler.h"

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

#include "api/fc.h"

/* ---- shape checking (fc_json.c) ---- */

enum fc_kind { FC_STR, FC_BOOL, FC_UINT, FC_OBJ, FC_ARR };

struct fc_field {
	const char *name;
	enum fc_kind kind;
	bool required;
};

#define FC_NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

/* A user-supplied name, safe to put in a one-line message. */
const char *fc_printable(char *buf, size_t len, const char *s);
/*
 * obj must be an object whose members are all in f, once each, of the right
 * kind (null counts as absent for optional fields), with the required ones.
 */
KESTREL_MUST_CHECK int fc_check(const cJSON *obj, const struct fc_field *f, size_t n, const char *where,
		char *err, size_t errlen);
/* A member that fc_check accepted, or NULL when absent or null. */
const cJSON *fc_get(const cJSON *obj, const char *name);
bool fc_get_bool(const cJSON *obj, const char *name, bool dflt);
/* A string member with no control characters, 1..max bytes (0..max with empty_ok). */
KESTREL_MUST_CHECK int fc_get_str(const cJSON *obj, const char *name, size_t max, bool empty_ok, const char *where,
	       const char **out, char *err, size_t errlen);
/* One of `names` (exact match); its index or -1 when absent. */
KESTREL_MUST_CHECK int fc_get_enum(const cJSON *obj, const char *name, const char *const *names, size_t n,
		const char *where, int *out, char *err, size_t errlen);
/* Parse a body: size-limited, no NUL bytes, UTF-8 with no \u0000, one JSON value and nothing after it. */
cJSON *fc_parse(const char *json, size_t len, const char *where, char *err, size_t errlen);

/* ---- value checks (fc_json.c) ---- */

bool fc_name_chars(const char *s, size_t max, const char *extra);
/* A host network device name: what IFNAMSIZ allows, without separators. */
bool fc_ifname_valid(const char *s);
/* "xx:xx:xx:xx:xx:xx", unicast. */
bool fc_mac_valid(const char *s);
/* A host file the VM will open: it must exist, be a regular file (or a
 * block device when dev_ok) and be readable (and writable when rw). */
KESTREL_MUST_CHECK int fc_check_file(const char *path, bool dev_ok, bool rw, const char *what, char *err,
		size_t errlen);
KESTREL_MUST_CHECK int fc_console_valid(const char *s);
/* Replace *slot with a copy of s (NULL clears it). */
KESTREL_MUST_CHECK int fc_set_str(char **slot, const char *s);
/* cJSON's adders return NULL on failure; one check at the end catches them all. */
bool fc_add_str(cJSON *o, const char *k, const char *v);
/* Print and free o (NULL in, NULL out). */
char *fc_print(cJSON *o);

/* ---- the resources: check a body, then change c (or nothing) ---- */

/* id: the id in the request's path (drives, network-interfaces), else NULL. */
typedef int (*fc_apply_fn)(struct fc_config *c, const char *id, const cJSON *j, const char *where,
			   char *err, size_t errlen);

/* fc_boot.c */
KESTREL_MUST_CHECK int fc_boot_source_apply(struct fc_config *c, const char *id, const cJSON *j,
		const char *where, char *err, size_t errlen);
KESTREL_MUST_CHECK int fc_machine_config_apply(struct fc_config *c, const char *id, const cJSON *j,
		const char *where, char *err, size_t errlen);
KESTREL_MUST_CHECK int fc_machine_config_patch_apply(struct fc_config *c, const char *id, const cJSON *j,
		const char *where, char *err, size_t errlen);
cJSON *fc_machine_config_obj(const struct fc_config *c);

/* fc_devices.c */
KESTREL_MUST_CHECK int fc_drive_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where, char *err,
		   size_t errlen);
KESTREL_MUST_CHECK int fc_net_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where, char *err,
		 size_t errlen);
void fc_drive_free(struct fc_drive *d);
void fc_net_free(struct fc_net *n);
bool fc_add_drives(cJSON *top, const struct fc_config *c);
bool fc_add_nets(cJSON *top, const struct fc_config *c);
/* Into the machine's typed device configuration. */
void fc_disk_config(const struct fc_drive *d, struct blk_config *b);
/*
 * Firecracker's RateLimiter object {"bandwidth": TokenBucket, "ops":
 * TokenBucket}, TokenBucket {"size", "one_time_burst", "refill_time" (ms)}:
 * member `name` of j into *out (all zero when absent or null).
 */
KESTREL_MUST_CHECK int fc_get_rate_limiter(const cJSON *j, const char *name, const char *where,
		struct ratelimit_config *out, char *err, size_t errlen);
bool fc_add_rate_limiter(cJSON *o, const char *name, const struct ratelimit_config *rl);
void fc_net_config(const struct fc_net *n, struct net_config *nc);

/* fc_extras.c: metrics, logger, serial, entropy and the config file's "kestrel" section. */
KESTREL_MUST_CHECK int fc_metrics_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where,
		char *err, size_t errlen);
KESTREL_MUST_CHECK int fc_logger_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where,
		char *err, size_t errlen);
KESTREL_MUST_CHECK int fc_serial_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where,
		char *err, size_t errlen);
KESTREL_MUST_CHECK int fc_entropy_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where,
		char *err, size_t errlen);
KESTREL_MUST_CHECK int fc_kestrel_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where,
		char *err, size_t errlen);

#endif

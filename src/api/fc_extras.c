/* Firecracker's metrics, logger, serial and entropy resources, and kestrel's own config-file section. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>

#include "api/fc.h"
#include "api/fc_priv.h"

#include "util/log.h"

/* ---- metrics, logger, serial, entropy ---- */

int fc_metrics_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where, char *err, size_t errlen)
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

int fc_logger_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where, char *err, size_t errlen)
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

int fc_serial_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where, char *err, size_t errlen)
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
int fc_entropy_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where, char *err, size_t errlen)
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
int fc_kestrel_apply(struct fc_config *c, const char *id, const cJSON *j, const char *where, char *err, size_t errlen)
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

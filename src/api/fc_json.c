/*
 * The shape of Firecracker's JSON bodies: parsing a body (size, NUL bytes,
 * UTF-8, \u0000, trailing data), checking an object against a field table
 * (fc_check: unknown, duplicate, mistyped and missing fields), reading
 * checked members, and the value checks the resources share.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "api/fc.h"
#include "api/fc_priv.h"

/* ---- shape checking ---- */

static const char *const fc_kind_names[] = {
	[FC_STR] = "a string", [FC_BOOL] = "a boolean", [FC_UINT] = "a non-negative integer",
	[FC_OBJ] = "an object", [FC_ARR] = "an array",
};

/* A user-supplied name, safe to put in a one-line message. */
const char *fc_printable(char *buf, size_t len, const char *s)
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
int fc_check(const cJSON *obj, const struct fc_field *f, size_t n, const char *where,
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
const cJSON *fc_get(const cJSON *obj, const char *name)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsNull(m) ? NULL : m;
}

bool fc_get_bool(const cJSON *obj, const char *name, bool dflt)
{
	const cJSON *m = fc_get(obj, name);

	return m ? cJSON_IsTrue(m) : dflt;
}

/* A string member with no control characters, 1..max bytes (0..max with empty_ok). */
int fc_get_str(const cJSON *obj, const char *name, size_t max, bool empty_ok, const char *where,
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
int fc_get_enum(const cJSON *obj, const char *name, const char *const *names, size_t n,
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

/* Length of the UTF-8 sequence at p (at most n bytes), or 0 when it is not valid UTF-8
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t fc_utf8_seq(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t len;
	unsigned cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/*
 * What cJSON lets through but a string field cannot hold: bytes that are not
 * UTF-8 (they would be echoed back by GET /vm/config as invalid JSON), and a
 * \u0000 escape (cJSON decodes it into a NUL that silently cuts the string).
 */
static int fc_check_text(const char *json, size_t len, const char *where, char *err, size_t errlen)
{
	const unsigned char *p = (const unsigned char *)json;
	bool in_str = false;

	for (size_t i = 0; i < len;) {
		size_t n = fc_utf8_seq(p + i, len - i);

		if (!n) {
			snprintf(err, errlen, "%s: invalid UTF-8 at byte %zu", where, i);
			return -EINVAL;
		}
		if (p[i] == '"') {
			in_str = !in_str;
		} else if (in_str && p[i] == '\\' && i + 1 < len) {
			if (p[i + 1] == 'u' && i + 6 <= len && !memcmp(p + i + 2, "0000", 4)) {
				snprintf(err, errlen, "%s: a string contains \\u0000 at byte %zu (NUL characters are "
					 "not allowed)", where, i);
				return -EINVAL;
			}
			n = 2;   /* the escaped character, '"' and '\\' included */
		}
		i += n;
	}
	return 0;
}

/* Parse a body: size-limited, no NUL bytes, UTF-8 with no \u0000, one JSON value and nothing after it. */
cJSON *fc_parse(const char *json, size_t len, const char *where, char *err, size_t errlen)
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
	if (fc_check_text(json, len, where, err, errlen))
		return NULL;
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

bool fc_name_chars(const char *s, size_t max, const char *extra)
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
bool fc_ifname_valid(const char *s)
{
	return fc_name_chars(s, 15, "_.-");
}

/* "xx:xx:xx:xx:xx:xx", unicast. */
bool fc_mac_valid(const char *s)
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
int fc_check_file(const char *path, bool dev_ok, bool rw, const char *what, char *err, size_t errlen)
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

int fc_console_valid(const char *s)
{
	if (!strcmp(s, "stdio") || !strcmp(s, "none"))
		return 0;
	if (!strncmp(s, "file:", 5) && s[5])
		return 0;
	return -EINVAL;
}

/* Replace *slot with a copy of s (NULL clears it). */
int fc_set_str(char **slot, const char *s)
{
	char *copy = NULL;

	if (s && !(copy = strdup(s)))
		return -ENOMEM;
	free(*slot);
	*slot = copy;
	return 0;
}

/* ---- back to JSON ---- */

/* cJSON's adders return NULL on failure; one check at the end catches them all. */
bool fc_add_str(cJSON *o, const char *k, const char *v)
{
	return !v || cJSON_AddStringToObject(o, k, v);
}

char *fc_print(cJSON *o)
{
	char *s = o ? cJSON_PrintUnformatted(o) : NULL;

	cJSON_Delete(o);
	return s;
}

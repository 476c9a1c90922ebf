/*
 * cJSON, loaded on first use. Only the API, --config-file and the CLI
 * helpers need JSON, so libcjson is opened with dlopen() then, like
 * libmicrohttpd and libcurl, rather than linked: a plain `kestrel run` maps
 * one library fewer and starts faster and smaller (docs/benchmarks.md).
 *
 * This file defines the cJSON functions kestrel calls, with cJSON.h's own
 * prototypes, each forwarding to the library's. The callers (fc.c, api.c,
 * cli.c) are unchanged. If the library cannot be loaded the functions fail
 * the way cJSON does when out of memory (NULL / false), after one error
 * line; api_new() and the command line ask cjson_shim_load() first for a
 * clean refusal. A cJSON function not listed in CJSON_FUNCS fails to link:
 * add it there.
 */
#include "api/cjson_shim.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include <cJSON.h>

#include "util/log.h"

#define CJSON_SONAME "libcjson.so.1"

/* X(return type, name, parameters, arguments, value on failure) */
#define CJSON_FUNCS(X) \
	X(cJSON *, cJSON_Parse, (const char *value), (value), NULL) \
	X(cJSON *, cJSON_ParseWithLengthOpts, (const char *value, size_t buffer_length, \
		const char **return_parse_end, cJSON_bool require_null_terminated), \
		(value, buffer_length, return_parse_end, require_null_terminated), NULL) \
	X(char *, cJSON_PrintUnformatted, (const cJSON *item), (item), NULL) \
	X(cJSON *, cJSON_CreateObject, (void), (), NULL) \
	X(cJSON *, cJSON_GetObjectItemCaseSensitive, (const cJSON *const object, const char *const string), \
		(object, string), NULL) \
	X(cJSON_bool, cJSON_IsArray, (const cJSON *const item), (item), 0) \
	X(cJSON_bool, cJSON_IsBool, (const cJSON *const item), (item), 0) \
	X(cJSON_bool, cJSON_IsNull, (const cJSON *const item), (item), 0) \
	X(cJSON_bool, cJSON_IsNumber, (const cJSON *const item), (item), 0) \
	X(cJSON_bool, cJSON_IsObject, (const cJSON *const item), (item), 0) \
	X(cJSON_bool, cJSON_IsString, (const cJSON *const item), (item), 0) \
	X(cJSON_bool, cJSON_IsTrue, (const cJSON *const item), (item), 0) \
	X(cJSON_bool, cJSON_AddItemToArray, (cJSON *array, cJSON *item), (array, item), 0) \
	X(cJSON_bool, cJSON_AddItemToObject, (cJSON *object, const char *string, cJSON *item), \
		(object, string, item), 0) \
	X(cJSON *, cJSON_AddArrayToObject, (cJSON *const object, const char *const name), (object, name), NULL) \
	X(cJSON *, cJSON_AddObjectToObject, (cJSON *const object, const char *const name), (object, name), NULL) \
	X(cJSON *, cJSON_AddBoolToObject, (cJSON *const object, const char *const name, const cJSON_bool boolean), \
		(object, name, boolean), NULL) \
	X(cJSON *, cJSON_AddNumberToObject, (cJSON *const object, const char *const name, const double number), \
		(object, name, number), NULL) \
	X(cJSON *, cJSON_AddStringToObject, (cJSON *const object, const char *const name, \
		const char *const string), (object, name, string), NULL)

#define CJSON_SLOT(ret, name, params, args, fail) __typeof__(name) *name;

/* Written once under cjson_once, read-only after. */
static struct {
	bool ok;
	char why[200];
	CJSON_FUNCS(CJSON_SLOT)
	__typeof__(cJSON_Delete) *cJSON_Delete;
} cj;
static pthread_once_t cjson_once = PTHREAD_ONCE_INIT;

static void cjson_load(void)
{
	void *h = dlopen(CJSON_SONAME, RTLD_NOW | RTLD_LOCAL);

#define CJSON_RESOLVE(ret, name, params, args, fail) \
	if (!(cj.name = (__typeof__(name) *)dlsym(h, #name))) { \
		snprintf(cj.why, sizeof(cj.why), CJSON_SONAME " lacks " #name); \
		return; \
	}

	if (!h) {
		snprintf(cj.why, sizeof(cj.why), "cannot load " CJSON_SONAME " (Debian: apt-get install libcjson1): %s",
			 dlerror());
		return;
	}
	CJSON_FUNCS(CJSON_RESOLVE)
	CJSON_RESOLVE(void, cJSON_Delete, (cJSON *item), (item), )
#undef CJSON_RESOLVE
	/* The handle stays open for the life of the process. */
	cj.ok = true;
}

int cjson_shim_load(char *err, size_t errlen)
{
	pthread_once(&cjson_once, cjson_load);
	if (cj.ok)
		return 0;
	snprintf(err, errlen, "%s", cj.why);
	return -1;
}

static void cjson_tell(void)
{
	log_err("json", "%s", cj.why);
}

/* Loaded, or say why not once per process. */
static bool cjson_ready(void)
{
	static pthread_once_t told = PTHREAD_ONCE_INIT;
	char why[sizeof(cj.why)];

	if (!cjson_shim_load(why, sizeof(why)))
		return true;
	pthread_once(&told, cjson_tell);
	return false;
}

#define CJSON_FORWARD(ret, name, params, args, fail) \
	ret name params \
	{ \
		return cjson_ready() ? cj.name args : fail; \
	}

CJSON_FUNCS(CJSON_FORWARD)

void cJSON_Delete(cJSON *item)
{
	/* Nothing was ever made without the library: nothing to free. */
	if (item && cjson_ready())
		cj.cJSON_Delete(item);
}

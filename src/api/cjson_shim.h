/*
 * cJSON is opened with dlopen() on first use (cjson_shim.c defines the cJSON
 * functions kestrel calls); include <cJSON.h> for them as usual.
 */
#ifndef KESTREL_API_CJSON_SHIM_H
#define KESTREL_API_CJSON_SHIM_H

#include "util/compiler.h"

#include <stddef.h>

/* Load libcjson now: 0, or -1 with the reason in err (then every cJSON
 * function fails as if out of memory). */
KESTREL_MUST_CHECK int cjson_shim_load(char *err, size_t errlen);

#endif

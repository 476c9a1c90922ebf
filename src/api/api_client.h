/*
 * The client side of the control API, for `kestrel pause|resume|snapshot|status`:
 * one HTTP request over a Unix socket with libcurl (loaded with dlopen on use).
 */
#ifndef KESTREL_API_CLIENT_H
#define KESTREL_API_CLIENT_H

#include "util/compiler.h"

#include <stddef.h>

/*
 * `method path` with an optional JSON body to the API at sock. On a reply:
 * 0, *status is the HTTP status and *resp the body (malloc'd, NUL-terminated).
 * Without one (no server, libcurl missing): -errno with a one-line err.
 */
KESTREL_MUST_CHECK int api_client_request(const char *sock, const char *method, const char *path, const char *body,
		       long *status, char **resp, char *err, size_t errlen);

#endif

/*
 * One request to the control API through libcurl. libcurl is opened with
 * dlopen when a control command runs, so the VMM itself never loads it.
 */
#include "api/api_client.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Plain prototypes: the type-checking macros would hide the functions. */
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>

#define API_CLIENT_MAX_REPLY (1024 * 1024)
#define API_CLIENT_TIMEOUT   600          /* seconds: a snapshot of a big VM takes a while */

static struct {
	bool ok;
	char why[200];
	__typeof__(curl_easy_init) *easy_init;
	__typeof__(curl_easy_setopt) *easy_setopt;
	__typeof__(curl_easy_perform) *easy_perform;
	__typeof__(curl_easy_getinfo) *easy_getinfo;
	__typeof__(curl_easy_cleanup) *easy_cleanup;
	__typeof__(curl_easy_strerror) *easy_strerror;
	__typeof__(curl_slist_append) *slist_append;
	__typeof__(curl_slist_free_all) *slist_free_all;
} curl;
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void api_client_load(void)
{
	void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
	struct { const char *name; void **slot; } syms[] = {
		{ "curl_easy_init", (void **)&curl.easy_init },
		{ "curl_easy_setopt", (void **)&curl.easy_setopt },
		{ "curl_easy_perform", (void **)&curl.easy_perform },
		{ "curl_easy_getinfo", (void **)&curl.easy_getinfo },
		{ "curl_easy_cleanup", (void **)&curl.easy_cleanup },
		{ "curl_easy_strerror", (void **)&curl.easy_strerror },
		{ "curl_slist_append", (void **)&curl.slist_append },
		{ "curl_slist_free_all", (void **)&curl.slist_free_all },
	};

	if (!h) {
		snprintf(curl.why, sizeof(curl.why), "cannot load libcurl.so.4 (Debian: apt-get install libcurl4): %s",
			 dlerror());
		return;
	}
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		*syms[i].slot = dlsym(h, syms[i].name);
		if (!*syms[i].slot) {
			snprintf(curl.why, sizeof(curl.why), "libcurl.so.4 lacks %s", syms[i].name);
			return;
		}
	}
	curl.ok = true;
}

struct api_client_buf {
	char *data;
	size_t len;
	bool too_big;
};

static size_t api_client_write(char *ptr, size_t size, size_t nmemb, void *opaque)
{
	struct api_client_buf *b = opaque;
	size_t n = size * nmemb;
	char *nd;

	if (n > API_CLIENT_MAX_REPLY - b->len) {
		b->too_big = true;
		return 0;
	}
	nd = realloc(b->data, b->len + n + 1);
	if (!nd)
		return 0;
	memcpy(nd + b->len, ptr, n);
	b->data = nd;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

int api_client_request(const char *sock, const char *method, const char *path, const char *body,
		       long *status, char **resp, char *err, size_t errlen)
{
	struct api_client_buf b = { 0 };
	struct curl_slist *hdrs = NULL, *h;
	char url[512];
	CURLcode rc;
	CURL *c;
	int e = 0;

	*resp = NULL;
	*status = 0;
	pthread_once(&curl_once, api_client_load);
	if (!curl.ok) {
		snprintf(err, errlen, "%s", curl.why);
		return -ENOSYS;
	}
	snprintf(url, sizeof(url), "http://localhost%s", path);
	c = curl.easy_init();
	if (!c) {
		snprintf(err, errlen, "libcurl: cannot create a request");
		return -ENOMEM;
	}
	/* "Expect:" turns off curl's 100-continue round trip for bodies. */
	static const char *const headers[] = { "Accept: application/json", "Content-Type: application/json",
					       "Expect:" };
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		h = curl.slist_append(hdrs, headers[i]);
		if (!h) {
			snprintf(err, errlen, "out of memory");
			e = -ENOMEM;
			goto out;
		}
		hdrs = h;
	}
	curl.easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl.easy_setopt(c, CURLOPT_URL, url);
	curl.easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl.easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl.easy_setopt(c, CURLOPT_TIMEOUT, (long)API_CLIENT_TIMEOUT);
	curl.easy_setopt(c, CURLOPT_WRITEFUNCTION, api_client_write);
	curl.easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (body) {
		curl.easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl.easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	rc = curl.easy_perform(c);
	if (rc != CURLE_OK) {
		if (b.too_big)
			snprintf(err, errlen, "%s: the reply is larger than %d bytes", sock, API_CLIENT_MAX_REPLY);
		else if (rc == CURLE_COULDNT_CONNECT)
			snprintf(err, errlen, "cannot connect to the API socket '%s' (is kestrel --api-sock running?)",
				 sock);
		else
			snprintf(err, errlen, "%s: %s", sock, curl.easy_strerror(rc));
		e = -EIO;
		goto out;
	}
	curl.easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	*resp = b.data ? b.data : strdup("");
	b.data = NULL;
	if (!*resp) {
		snprintf(err, errlen, "out of memory");
		e = -ENOMEM;
	}
out:
	free(b.data);
	curl.slist_free_all(hdrs);
	curl.easy_cleanup(c);
	return e;
}

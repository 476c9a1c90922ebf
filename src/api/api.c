/*
 * The control API server. libmicrohttpd parses HTTP with one thread per
 * connection, so a client that dawdles, or a request that waits for the VMM
 * thread, holds up only its own connection. This file routes each request,
 * collects its body up to FC_BODY_MAX, and hands every PUT/PATCH to the VMM
 * thread with vmm_call(). Everything that changes the configuration or the VM
 * (api_handle and below) runs there, so changes are serialized and the VM's
 * state cannot change between a rule's check and the action it guards.
 *
 * GETs are answered on the connection's own thread, from the API's copy of
 * the configuration (a->lock; written only on the VMM thread) and the state
 * the vmm publishes (vmm_peek_info), so they answer while the VMM thread is
 * busy for seconds writing a snapshot.
 *
 * Stuck clients: each connection has a deadline, API_REQUEST_DEADLINE seconds
 * from the moment it is ready for a request (accepted, or its previous
 * response sent), by which the whole request must have arrived; then again
 * from the handler's end for the response to be taken. Time spent in a
 * handler does not count. A watchdog thread shuts down the socket of a
 * connection past its deadline, so a client trickling a byte at a time, or
 * saying nothing, is cut off however it behaves, and libmicrohttpd's own idle
 * timeout (reset by every byte) is not used.
 *
 * Status codes: 204 for a PUT/PATCH that worked, 200 with JSON for a GET,
 * 400 for bad input or an action in the wrong state, 404 for an unknown path,
 * 405 for a method a known path does not take, 413 for a body over the limit;
 * every error carries {"fault_message": "..."}.
 */
#include "api/api.h"
#include "api/cjson_shim.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <microhttpd.h>

#include "util/log.h"
#include "vmm/vmm.h"

#define API_CONN_MEMORY  (32 * 1024)   /* per connection: headers and read buffer */
#define API_MAX_CONNS    256           /* each a thread; stuck ones are cut at their deadline */
#define API_REQUEST_DEADLINE 10        /* seconds for a whole request (or response) to pass */
#define API_THREAD_STACK (256 * 1024)  /* per connection thread: the handlers need little */
#define API_LISTEN_BACKLOG 128

/* One client connection, from accept to close (libmicrohttpd's socket context). */
struct api_sock {
	struct api_sock *next, **pprev;
	int fd;
	uint64_t deadline_ms;   /* CLOCK_MONOTONIC; 0 while a handler runs */
	bool cut;               /* shut down by the watchdog */
};

struct api {
	struct vmm *vmm;
	char *sock_path;
	char *id;
	unsigned snapshot_delay_ms;        /* KESTREL_TEST_SNAPSHOT_DELAY_MS (tests) */
	struct MHD_Daemon *daemon;

	/* The connections and their deadlines; the watchdog sleeps on socks_cond. */
	pthread_mutex_t socks_lock;
	pthread_cond_t socks_cond;
	struct api_sock *socks;
	bool watchdog_stop;
	pthread_t watchdog;
	bool watchdog_running;

	/* Written on the VMM thread only, under lock; read under lock by GETs on
	 * the connection threads (the VMM thread reads them without it). */
	pthread_mutex_t lock;
	struct fc_config cfg;

	/* VMM thread only. */
	struct fc_machine machine;        /* the strings the running VM points to */
	struct fc_snapshot_load load;     /* the same for a VM loaded from a snapshot */
};

/* ---- libmicrohttpd, loaded on first use ---- */

/*
 * Only a process asked to serve the API needs libmicrohttpd (and the TLS
 * libraries it pulls in), so it is opened then rather than linked: a plain
 * `kestrel run` starts without it. Written once under pthread_once.
 */
static struct {
	bool ok;
	char why[200];
	__typeof__(MHD_start_daemon) *start_daemon;
	__typeof__(MHD_stop_daemon) *stop_daemon;
	__typeof__(MHD_create_response_from_buffer) *create_response_from_buffer;
	__typeof__(MHD_add_response_header) *add_response_header;
	__typeof__(MHD_queue_response) *queue_response;
	__typeof__(MHD_destroy_response) *destroy_response;
	__typeof__(MHD_lookup_connection_value) *lookup_connection_value;
	__typeof__(MHD_get_connection_info) *get_connection_info;
} mhd;
static pthread_once_t mhd_once = PTHREAD_ONCE_INIT;

static void api_mhd_load(void)
{
	void *h = dlopen("libmicrohttpd.so.12", RTLD_NOW | RTLD_LOCAL);
	struct { const char *name; void **slot; } syms[] = {
		{ "MHD_start_daemon", (void **)&mhd.start_daemon },
		{ "MHD_stop_daemon", (void **)&mhd.stop_daemon },
		{ "MHD_create_response_from_buffer", (void **)&mhd.create_response_from_buffer },
		{ "MHD_add_response_header", (void **)&mhd.add_response_header },
		{ "MHD_queue_response", (void **)&mhd.queue_response },
		{ "MHD_destroy_response", (void **)&mhd.destroy_response },
		{ "MHD_lookup_connection_value", (void **)&mhd.lookup_connection_value },
		{ "MHD_get_connection_info", (void **)&mhd.get_connection_info },
	};

	if (!h) {
		snprintf(mhd.why, sizeof(mhd.why),
			 "cannot load libmicrohttpd.so.12 (Debian: apt-get install libmicrohttpd12): %s", dlerror());
		return;
	}
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		*syms[i].slot = dlsym(h, syms[i].name);
		if (!*syms[i].slot) {
			snprintf(mhd.why, sizeof(mhd.why), "libmicrohttpd.so.12 lacks %s", syms[i].name);
			return;
		}
	}
	/* The handle stays open for the life of the process. */
	mhd.ok = true;
}

/* ---- routes ---- */

enum api_route {
	R_INFO, R_VERSION, R_MACHINE_CONFIG, R_VM_CONFIG, R_BOOT_SOURCE, R_DRIVE, R_NET, R_ACTIONS,
	R_VM, R_SNAP_CREATE, R_SNAP_LOAD, R_METRICS, R_LOGGER, R_SERIAL, R_ENTROPY,
};

enum { M_GET = 1, M_PUT = 2, M_PATCH = 4 };

static const struct api_route_def {
	const char *path;      /* with has_id: the prefix before the id */
	bool has_id;
	unsigned methods;
	const char *allow;     /* the Allow header of a 405 */
} api_routes[] = {
	[R_INFO] = { "/", false, M_GET, "GET" },
	[R_VERSION] = { "/version", false, M_GET, "GET" },
	[R_MACHINE_CONFIG] = { "/machine-config", false, M_GET | M_PUT | M_PATCH, "GET, PUT, PATCH" },
	[R_VM_CONFIG] = { "/vm/config", false, M_GET, "GET" },
	[R_BOOT_SOURCE] = { "/boot-source", false, M_PUT, "PUT" },
	[R_DRIVE] = { "/drives/", true, M_PUT | M_PATCH, "PUT, PATCH" },
	[R_NET] = { "/network-interfaces/", true, M_PUT, "PUT" },
	[R_ACTIONS] = { "/actions", false, M_PUT, "PUT" },
	[R_VM] = { "/vm", false, M_PATCH, "PATCH" },
	[R_SNAP_CREATE] = { "/snapshot/create", false, M_PUT, "PUT" },
	[R_SNAP_LOAD] = { "/snapshot/load", false, M_PUT, "PUT" },
	[R_METRICS] = { "/metrics", false, M_PUT, "PUT" },
	[R_LOGGER] = { "/logger", false, M_PUT, "PUT" },
	[R_SERIAL] = { "/serial", false, M_PUT, "PUT" },
	[R_ENTROPY] = { "/entropy", false, M_PUT, "PUT" },
};

#define API_NROUTES (sizeof(api_routes) / sizeof(api_routes[0]))

/* The route for url, and the id after its prefix; -1 when none matches. */
static int api_route_find(const char *url, const char **id)
{
	*id = NULL;
	for (size_t i = 0; i < API_NROUTES; i++) {
		const struct api_route_def *r = &api_routes[i];
		size_t n = strlen(r->path);

		if (!r->has_id) {
			if (!strcmp(url, r->path))
				return (int)i;
		} else if (!strncmp(url, r->path, n) && !strchr(url + n, '/')) {
			*id = url + n;
			return (int)i;
		}
	}
	return -1;
}

/* ---- one request, on the VMM thread ---- */

struct api_req {
	struct api *a;
	enum api_route route;
	unsigned method;
	const char *id;
	const char *body;
	size_t len;
	/* out */
	unsigned status;
	char *json;            /* a 200's body, malloc'd */
	char err[512];
};

static enum vmm_state api_state(struct api *a)
{
	struct vmm_info info;

	vmm_get_info(a->vmm, &info);
	return info.state;
}

static int api_fail(struct api_req *r, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int api_fail(struct api_req *r, unsigned status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	r->status = status;
	return -EINVAL;
}

/* A failure whose reason is already in r->err. */
static int api_failed(struct api_req *r, unsigned status)
{
	r->status = status;
	return -EINVAL;
}

/* Boot resources can only be changed before the VM starts (or is loaded): the vmm's rule. */
static int api_preboot(struct api_req *r, const char *what)
{
	return vmm_allowed(r->a->vmm, VMM_OP_CONFIGURE, what, r->err, sizeof(r->err)) ? api_failed(r, 400) : 0;
}

/* A GET, on the connection's thread: never waits for the VMM thread. */
static int api_get(struct api_req *r)
{
	struct api *a = r->a;
	struct vmm_info info;
	cJSON *o;

	r->status = 200;
	switch (r->route) {
	case R_INFO:
		vmm_peek_info(a->vmm, &info);
		o = cJSON_CreateObject();
		if (o && cJSON_AddStringToObject(o, "id", a->id) &&
		    cJSON_AddStringToObject(o, "state", vmm_state_name(info.state)) &&
		    cJSON_AddStringToObject(o, "vmm_version", KESTREL_VERSION) &&
		    cJSON_AddStringToObject(o, "app_name", "kestrel"))
			r->json = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
		break;
	case R_VERSION:
		o = cJSON_CreateObject();
		if (o && cJSON_AddStringToObject(o, "firecracker_version", KESTREL_VERSION))
			r->json = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
		break;
	case R_MACHINE_CONFIG: {
		struct fc_config shown;

		vmm_peek_info(a->vmm, &info);
		pthread_mutex_lock(&a->lock);
		/* A VM loaded from a snapshot has the snapshot's size, not the API's. */
		shown = a->cfg;
		if (info.restored) {
			shown.vcpus = info.cpus;
			shown.mem_mib = (unsigned)(info.mem_size >> 20);
		}
		r->json = fc_machine_config_to_json(&shown);
		pthread_mutex_unlock(&a->lock);
		break;
	}
	case R_VM_CONFIG:
		pthread_mutex_lock(&a->lock);
		/* The API never saw a restored VM's devices: they come from the snapshot. */
		vmm_peek_info(a->vmm, &info);
		if (info.restored)
			api_fail(r, 400, "GET /vm/config is not available for a VM loaded from a "
				 "snapshot (its configuration is in the snapshot file); GET "
				 "/machine-config shows its size");
		else
			r->json = fc_config_to_json(&a->cfg);
		pthread_mutex_unlock(&a->lock);
		if (r->status != 200)
			return -EINVAL;
		break;
	default:
		return api_fail(r, 500, "no GET handler");
	}
	if (!r->json)
		return api_fail(r, 500, "out of memory");
	return 0;
}

static int api_action(struct api_req *r)
{
	struct api *a = r->a;
	enum fc_action act;
	int e;

	/* The vmm checks whether each action is allowed in the VM's state. */
	if (fc_parse_action(r->body, r->len, &act, r->err, sizeof(r->err)))
		return api_failed(r, 400);
	switch (act) {
	case FC_ACTION_START:
		e = api_vm_start(a->vmm, &a->cfg, &a->machine, r->err, sizeof(r->err));
		break;
	case FC_ACTION_CTRL_ALT_DEL:
		e = vmm_ctrl_alt_del(a->vmm, r->err, sizeof(r->err));
		break;
	case FC_ACTION_FLUSH_METRICS:
		e = vmm_flush_metrics(a->vmm, r->err, sizeof(r->err));
		break;
	default:
		e = -EINVAL;
	}
	return e ? api_failed(r, 400) : 0;
}

static int api_vm_state(struct api_req *r)
{
	struct api *a = r->a;
	bool pause;
	int e;

	if (fc_parse_vm_state(r->body, r->len, &pause, r->err, sizeof(r->err)))
		return api_failed(r, 400);
	e = pause ? vmm_pause(a->vmm, r->err, sizeof(r->err)) : vmm_resume(a->vmm, r->err, sizeof(r->err));
	return e ? api_failed(r, 400) : 0;
}

static int api_snapshot_create(struct api_req *r)
{
	struct fc_snapshot_create sc;
	int e;

	if (fc_parse_snapshot_create(r->body, r->len, &sc, r->err, sizeof(r->err)))
		return api_failed(r, 400);
	if (r->a->snapshot_delay_ms) {
		/* Test hook: a snapshot that keeps the VMM thread busy this long. */
		struct timespec d = { r->a->snapshot_delay_ms / 1000, (long)(r->a->snapshot_delay_ms % 1000) * 1000000 };

		while (nanosleep(&d, &d) < 0 && errno == EINTR)
			;
	}
	e = vmm_snapshot_create(r->a->vmm, &sc.p, r->err, sizeof(r->err));
	fc_snapshot_create_exit(&sc);
	return e ? api_failed(r, 400) : 0;
}

static int api_snapshot_load(struct api_req *r)
{
	struct api *a = r->a;
	struct fc_snapshot_load sl;
	int e;

	if (fc_parse_snapshot_load(r->body, r->len, &sl, r->err, sizeof(r->err)))
		return api_failed(r, 400);
	if (vmm_allowed(a->vmm, VMM_OP_SNAPSHOT_LOAD, NULL, r->err, sizeof(r->err)))
		e = api_failed(r, 400);
	else if (a->cfg.boot_configured)
		e = api_fail(r, 400, "a snapshot cannot be loaded after boot resources were configured "
			     "(boot-source, machine-config, drives, network-interfaces, entropy)");
	else {
		/* PUT /serial before the load says where the restored VM's console goes. */
		if (a->cfg.console)
			vmm_set_console(a->vmm, a->cfg.console);
		if ((e = vmm_snapshot_load(a->vmm, &sl.p, r->err, sizeof(r->err))))
			e = api_failed(r, 400);
	}
	if (e) {
		fc_snapshot_load_exit(&sl);
		return e;
	}
	/* The VM may point at these strings (network overrides) for its life. */
	a->load = sl;
	return 0;
}

static int api_metrics(struct api_req *r)
{
	struct api *a = r->a;
	struct fc_config scratch;
	int e;

	/* The vmm keeps the path: it starts the metrics with the VM, or at once
	 * when the VM runs. As in Firecracker, metrics are configured once. */
	fc_config_init(&scratch);
	e = fc_put(&scratch, FC_METRICS, NULL, r->body, r->len, r->err, sizeof(r->err));
	if (!e)
		e = vmm_set_metrics_path(a->vmm, scratch.metrics_path, r->err, sizeof(r->err));
	if (!e) {
		pthread_mutex_lock(&a->lock);
		free(a->cfg.metrics_path);
		a->cfg.metrics_path = scratch.metrics_path;
		pthread_mutex_unlock(&a->lock);
		scratch.metrics_path = NULL;
	}
	fc_config_exit(&scratch);
	return e ? api_failed(r, e == -ENOMEM ? 500 : 400) : 0;
}

/* The PUT/PATCHes that only change the API's configuration: under a->lock. */
static int api_put_config(struct api_req *r)
{
	struct api *a = r->a;
	char *err = r->err;
	size_t el = sizeof(r->err);
	int e;

	switch (r->route) {
	case R_BOOT_SOURCE:
		e = api_preboot(r, "the boot source") ?:
		    fc_put(&a->cfg, FC_BOOT_SOURCE, NULL, r->body, r->len, err, el);
		break;
	case R_MACHINE_CONFIG:
		e = api_preboot(r, "the machine configuration") ?:
		    fc_put(&a->cfg, r->method == M_PATCH ? FC_MACHINE_CONFIG_PATCH : FC_MACHINE_CONFIG, NULL, r->body,
			   r->len, err, el);
		break;
	case R_DRIVE:
		e = api_preboot(r, "drives") ?: fc_put(&a->cfg, FC_DRIVE, r->id, r->body, r->len, err, el);
		break;
	case R_NET:
		e = api_preboot(r, "network interfaces") ?: fc_put(&a->cfg, FC_NET, r->id, r->body, r->len, err, el);
		break;
	case R_SERIAL:
		e = api_preboot(r, "the serial console") ?: fc_put(&a->cfg, FC_SERIAL, NULL, r->body, r->len, err, el);
		break;
	case R_ENTROPY:
		e = api_preboot(r, "the entropy device") ?: fc_put(&a->cfg, FC_ENTROPY, NULL, r->body, r->len, err, el);
		break;
	case R_LOGGER:
		e = fc_put(&a->cfg, FC_LOGGER, NULL, r->body, r->len, err, el);
		if (!e && a->cfg.log_level != FC_LOG_UNSET)
			log_set_level((enum log_level)a->cfg.log_level);
		break;
	default:
		return api_fail(r, 500, "no handler");
	}
	if (e && r->status < 400)
		r->status = e == -ENOMEM ? 500 : 400;
	return e;
}

/* PATCH /drives/{id}: the rate limiter, on the device first (when there is one), then in the config. */
static int api_patch_drive(struct api_req *r)
{
	struct api *a = r->a;
	struct ratelimit_config rl;
	unsigned slot, disk;
	int e;

	pthread_mutex_lock(&a->lock);
	e = fc_drive_patch(&a->cfg, r->id, r->body, r->len, &rl, &slot, &disk, r->err, sizeof(r->err));
	pthread_mutex_unlock(&a->lock);
	if (!e)
		e = vmm_set_disk_rate_limit(a->vmm, disk, &rl, r->err, sizeof(r->err));
	if (e)
		return api_failed(r, 400);
	/* Only this VMM thread changes drives, so the slot still holds the drive it named. */
	pthread_mutex_lock(&a->lock);
	a->cfg.drives[slot].rate_limit = rl;
	pthread_mutex_unlock(&a->lock);
	return 0;
}

static int api_put(struct api_req *r)
{
	int e;

	if (r->route == R_DRIVE && r->method == M_PATCH)
		return api_patch_drive(r);
	switch (r->route) {
	case R_BOOT_SOURCE:
	case R_MACHINE_CONFIG:
	case R_DRIVE:
	case R_NET:
	case R_SERIAL:
	case R_ENTROPY:
	case R_LOGGER:
		pthread_mutex_lock(&r->a->lock);
		e = api_put_config(r);
		pthread_mutex_unlock(&r->a->lock);
		return e;
	case R_METRICS:
		return api_metrics(r);
	case R_ACTIONS:
		return api_action(r);
	case R_VM:
		return api_vm_state(r);
	case R_SNAP_CREATE:
		return api_snapshot_create(r);
	case R_SNAP_LOAD:
		return api_snapshot_load(r);
	default:
		return api_fail(r, 500, "no handler");
	}
}

static int api_handle(struct vmm *v, void *opaque)
{
	struct api_req *r = opaque;

	r->status = 204;
	if (api_state(r->a) == VMM_ENDED)
		return api_fail(r, 400, "the VM has ended; kestrel is exiting");
	return api_put(r);
}

/* ---- connection deadlines ---- */

static uint64_t api_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* The connection's socket context (NULL if libmicrohttpd has none). */
static struct api_sock *api_sock_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = mhd.get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}

/* Start the connection's clock again (busy: stop it while a handler runs). */
static void api_sock_arm(struct api *a, struct api_sock *s, bool busy)
{
	if (!s)
		return;
	pthread_mutex_lock(&a->socks_lock);
	s->deadline_ms = busy ? 0 : api_now_ms() + API_REQUEST_DEADLINE * 1000;
	pthread_cond_signal(&a->socks_cond);
	pthread_mutex_unlock(&a->socks_lock);
}

/*
 * libmicrohttpd closes a connection's socket only after this is told
 * MHD_CONNECTION_NOTIFY_CLOSED, and that waits for socks_lock: so the
 * watchdog, which holds it, never shuts down a descriptor already reused.
 */
static void api_notify_conn(void *cls, struct MHD_Connection *conn, void **socket_context,
			    enum MHD_ConnectionNotificationCode code)
{
	struct api *a = cls;
	struct api_sock *s = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = mhd.get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		if (!ci)
			return;
		s = calloc(1, sizeof(*s));
		if (!s) {
			/* No deadline could be kept for it: refuse it now. */
			shutdown(ci->connect_fd, SHUT_RDWR);
			return;
		}
		s->fd = ci->connect_fd;
		s->deadline_ms = api_now_ms() + API_REQUEST_DEADLINE * 1000;
		pthread_mutex_lock(&a->socks_lock);
		s->next = a->socks;
		if (a->socks)
			a->socks->pprev = &s->next;
		s->pprev = &a->socks;
		a->socks = s;
		pthread_cond_signal(&a->socks_cond);
		pthread_mutex_unlock(&a->socks_lock);
		*socket_context = s;
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED && s) {
		pthread_mutex_lock(&a->socks_lock);
		*s->pprev = s->next;
		if (s->next)
			s->next->pprev = s->pprev;
		pthread_mutex_unlock(&a->socks_lock);
		free(s);
		*socket_context = NULL;
	}
}

/* Shut down connections past their deadline; sleep until the next one is due. */
static void *api_watchdog(void *opaque)
{
	struct api *a = opaque;

	pthread_mutex_lock(&a->socks_lock);
	while (!a->watchdog_stop) {
		uint64_t now = api_now_ms(), next = UINT64_MAX;

		for (struct api_sock *s = a->socks; s; s = s->next) {
			if (!s->deadline_ms || s->cut)
				continue;
			if (s->deadline_ms <= now) {
				/* The connection's thread sees end-of-file and closes it. */
				shutdown(s->fd, SHUT_RDWR);
				s->cut = true;
				log_info("api", "a client took over %d s to send a request or take a reply: "
					 "connection closed", API_REQUEST_DEADLINE);
			} else if (s->deadline_ms < next) {
				next = s->deadline_ms;
			}
		}
		if (next == UINT64_MAX) {
			pthread_cond_wait(&a->socks_cond, &a->socks_lock);
		} else {
			struct timespec until = { (time_t)(next / 1000), (long)(next % 1000) * 1000000 };

			pthread_cond_timedwait(&a->socks_cond, &a->socks_lock, &until);
		}
	}
	pthread_mutex_unlock(&a->socks_lock);
	return NULL;
}

/* ---- HTTP side (the connections' threads) ---- */

struct api_conn {
	char *body;
	size_t len, cap;
	bool too_big;
};

static enum MHD_Result api_reply(struct MHD_Connection *conn, unsigned status, const char *json,
				 const char *allow)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = mhd.create_response_from_buffer(json ? strlen(json) : 0, (void *)(json ? json : ""),
					       MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	if ((json && mhd.add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES) ||
	    (allow && mhd.add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)) {
		mhd.destroy_response(resp);
		return MHD_NO;
	}
	ret = mhd.queue_response(conn, status, resp);
	mhd.destroy_response(resp);
	return ret;
}

static enum MHD_Result api_reply_error(struct MHD_Connection *conn, unsigned status, const char *msg,
				       const char *allow)
{
	cJSON *o = cJSON_CreateObject();
	char *s = NULL;
	enum MHD_Result ret;

	if (o && cJSON_AddStringToObject(o, "fault_message", msg))
		s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	ret = api_reply(conn, status, s ? s : "{\"fault_message\":\"out of memory\"}", allow);
	free(s);
	return ret;
}

/* The URL as a short printable string for messages. */
static const char *api_printable(char *buf, size_t len, const char *s)
{
	size_t i = 0;

	for (; *s && i + 4 < len; s++)
		buf[i++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	if (*s)
		memcpy(buf + i, "...", 3), i += 3;
	buf[i] = '\0';
	return buf;
}

static enum MHD_Result api_serve(struct api *a, struct MHD_Connection *conn, const char *url,
				 const char *method, const struct api_conn *c)
{
	struct api_req r = { .a = a, .body = c->body, .len = c->len };
	const struct api_route_def *def;
	enum MHD_Result ret;
	char u[80], msg[160], m[24];
	int route, e;

	method = api_printable(m, sizeof(m), method);
	route = api_route_find(url, &r.id);
	if (route < 0) {
		snprintf(msg, sizeof(msg), "unknown path '%s'", api_printable(u, sizeof(u), url));
		log_info("api", "%s %s: 404", method, u);
		return api_reply_error(conn, MHD_HTTP_NOT_FOUND, msg, NULL);
	}
	def = &api_routes[route];
	r.route = (enum api_route)route;
	r.method = !strcmp(method, "GET") ? M_GET : !strcmp(method, "PUT") ? M_PUT :
		   !strcmp(method, "PATCH") ? M_PATCH : 0;
	if (!(def->methods & r.method)) {
		snprintf(msg, sizeof(msg), "method %s is not allowed on %s (allowed: %s)",
			 method, api_printable(u, sizeof(u), url), def->allow);
		log_info("api", "%s: 405", msg);
		return api_reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, msg, def->allow);
	}
	if (def->has_id && !fc_id_valid(r.id)) {
		snprintf(msg, sizeof(msg), "invalid id '%s' in the path: use 1 to %d letters, digits, '_' or '-'",
			 api_printable(u, sizeof(u), r.id), FC_ID_MAX);
		return api_reply_error(conn, MHD_HTTP_BAD_REQUEST, msg, NULL);
	}
	if (r.method == M_GET)
		e = api_get(&r);
	else
		e = vmm_call(a->vmm, api_handle, &r);
	if (e == -ESHUTDOWN)
		return api_reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "kestrel is shutting down", NULL);
	log_info("api", "%s %s: %u%s%s", method, api_printable(u, sizeof(u), url), r.status,
		 r.status >= 400 ? ": " : "", r.status >= 400 ? r.err : "");
	if (r.status >= 400)
		ret = api_reply_error(conn, r.status, r.err[0] ? r.err : "request failed", NULL);
	else
		ret = api_reply(conn, r.status, r.json, NULL);
	free(r.json);
	return ret;
}

/* Append an upload chunk; past FC_BODY_MAX the body is dropped and refused at the end. */
static void api_body_add(struct api_conn *c, const char *data, size_t n)
{
	if (c->too_big)
		return;
	if (n > FC_BODY_MAX - c->len) {
		c->too_big = true;
		free(c->body);
		c->body = NULL;
		c->len = c->cap = 0;
		return;
	}
	if (c->len + n > c->cap) {
		size_t cap = c->cap ? c->cap : 1024;
		char *nb;

		while (cap < c->len + n)
			cap *= 2;
		if (cap > FC_BODY_MAX)
			cap = FC_BODY_MAX;
		nb = realloc(c->body, cap);
		if (!nb) {
			c->too_big = true;   /* refused the same way: the client sees 413 */
			return;
		}
		c->body = nb;
		c->cap = cap;
	}
	memcpy(c->body + c->len, data, n);
	c->len += n;
}

static enum MHD_Result api_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	static const char too_big[] = "request body is larger than 65536 bytes";
	struct api_conn *c = *con_cls;
	struct api_sock *s;
	enum MHD_Result ret;

	_Static_assert(FC_BODY_MAX == 65536, "too_big's text names the limit");
	if (!c) {
		const char *cl = mhd.lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

		c = calloc(1, sizeof(*c));
		if (!c)
			return MHD_NO;
		*con_cls = c;
		/* An announced oversized body is refused before it is read. */
		if (cl && strtoull(cl, NULL, 10) > FC_BODY_MAX)
			return api_reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, too_big, NULL);
		return MHD_YES;
	}
	if (*upload_size) {
		api_body_add(c, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (c->too_big)
		return api_reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, too_big, NULL);
	/* The request is in: its handler's time (a snapshot may take long) is not the client's. */
	s = api_sock_of(conn);
	api_sock_arm(cls, s, true);
	ret = api_serve(cls, conn, url, method, c);
	api_sock_arm(cls, s, false);    /* now the client has as long to take the reply */
	return ret;
}

static void api_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			  enum MHD_RequestTerminationCode toe)
{
	struct api_conn *c = *con_cls;

	/* The response went out (or the request failed): the next request's clock starts. */
	api_sock_arm(cls, api_sock_of(conn), false);
	if (c) {
		free(c->body);
		free(c);
		*con_cls = NULL;
	}
}

/* ---- the socket ---- */

static int api_listen(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, e;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "--api-sock: '%s' is longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		e = -errno;
		snprintf(err, errlen, "--api-sock: socket: %s", strerror(-e));
		return e;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "--api-sock: '%s' exists and is not a socket", path);
			e = -EEXIST;
			goto err_close;
		}
		/* A socket file: stale unless someone still answers on it. */
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			snprintf(err, errlen, "--api-sock: another process is serving on '%s'", path);
			e = -EADDRINUSE;
			goto err_close;
		}
		close(fd);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || (unlink(path) < 0 && errno != ENOENT)) {
			e = -errno;
			snprintf(err, errlen, "--api-sock: cannot replace the stale socket '%s': %s", path, strerror(-e));
			goto err_close;
		}
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, API_LISTEN_BACKLOG) < 0 ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
		e = -errno;
		snprintf(err, errlen, "--api-sock: '%s': %s", path, strerror(-e));
		goto err_close;
	}
	return fd;
err_close:
	if (fd >= 0)
		close(fd);
	return e;
}

/* The locks and the watchdog; api_free_locks undoes it. */
static int api_init_locks(struct api *a)
{
	pthread_condattr_t ca;
	int e;

	if ((e = pthread_condattr_init(&ca)))
		return -e;
	e = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) ?: pthread_cond_init(&a->socks_cond, &ca);
	pthread_condattr_destroy(&ca);
	if (e)
		return -e;
	pthread_mutex_init(&a->socks_lock, NULL);
	pthread_mutex_init(&a->lock, NULL);
	return 0;
}

static void api_stop_watchdog(struct api *a)
{
	if (!a->watchdog_running)
		return;
	pthread_mutex_lock(&a->socks_lock);
	a->watchdog_stop = true;
	pthread_cond_signal(&a->socks_cond);
	pthread_mutex_unlock(&a->socks_lock);
	pthread_join(a->watchdog, NULL);
	a->watchdog_running = false;
}

static void api_free_locks(struct api *a)
{
	pthread_cond_destroy(&a->socks_cond);
	pthread_mutex_destroy(&a->socks_lock);
	pthread_mutex_destroy(&a->lock);
}

struct api *api_new(struct vmm *v, const char *sock_path, const char *instance_id, char *err, size_t errlen)
{
	const char *delay = getenv("KESTREL_TEST_SNAPSHOT_DELAY_MS");
	sigset_t all, old;
	struct api *a;
	bool locks = false;
	int fd, e;

	pthread_once(&mhd_once, api_mhd_load);
	if (!mhd.ok) {
		snprintf(err, errlen, "%s", mhd.why);
		return NULL;
	}
	if (cjson_shim_load(err, errlen))
		return NULL;
	if (!instance_id)
		instance_id = API_DEFAULT_ID;
	if (!fc_id_valid(instance_id)) {
		snprintf(err, errlen, "--id: '%.64s' is not 1 to %d letters, digits, '_' or '-'", instance_id, FC_ID_MAX);
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (!a || !(a->sock_path = strdup(sock_path)) || !(a->id = strdup(instance_id))) {
		snprintf(err, errlen, "out of memory");
		goto err_free;
	}
	a->vmm = v;
	if (delay) {
		char *end;
		unsigned long ms = strtoul(delay, &end, 10);

		if (*delay < '0' || *delay > '9' || *end || ms > 600000)
			log_warn("api", "KESTREL_TEST_SNAPSHOT_DELAY_MS='%.32s' is not 0 to 600000 (ms): ignored", delay);
		else
			a->snapshot_delay_ms = (unsigned)ms;
	}
	fc_config_init(&a->cfg);
	if ((e = api_init_locks(a))) {
		snprintf(err, errlen, "--api-sock: %s", strerror(-e));
		goto err_free;
	}
	locks = true;
	fd = api_listen(sock_path, err, errlen);
	if (fd < 0)
		goto err_free;
	/* libmicrohttpd's threads and the watchdog take no signals: they belong
	 * to the VMM thread (threads inherit the mask of their creator). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&a->watchdog, NULL, api_watchdog, a);
	a->watchdog_running = !e;
	/*
	 * A thread per connection (poll(), not select(): descriptors may pass
	 * 1024): one blocked in vmm_call() or on a slow client holds up nobody
	 * else. libmicrohttpd's idle timeout stays off: it restarts with every
	 * byte and would also count a long handler; the watchdog keeps time.
	 */
	if (!e)
		a->daemon = mhd.start_daemon(MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION,
					     0, NULL, NULL, api_access, a,
					     MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
					     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_CONN_MEMORY,
					     MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_MAX_CONNS,
					     MHD_OPTION_CONNECTION_TIMEOUT, 0U,
					     MHD_OPTION_THREAD_STACK_SIZE, (size_t)API_THREAD_STACK,
					     MHD_OPTION_NOTIFY_CONNECTION, api_notify_conn, a,
					     MHD_OPTION_NOTIFY_COMPLETED, api_completed, a,
					     MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!a->daemon) {
		if (e)
			snprintf(err, errlen, "--api-sock: cannot start the watchdog thread: %s", strerror(e));
		else
			snprintf(err, errlen, "--api-sock: libmicrohttpd could not serve on '%s'", sock_path);
		close(fd);
		unlink(sock_path);
		goto err_free;
	}
	/* From here libmicrohttpd owns fd and closes it when stopped. */
	log_info("api", "serving the API on %s", sock_path);
	return a;
err_free:
	if (a) {
		if (locks) {
			api_stop_watchdog(a);
			api_free_locks(a);
		}
		free(a->sock_path);
		free(a->id);
		free(a);
	}
	return NULL;
}

int api_vm_start(struct vmm *v, const struct fc_config *c, struct fc_machine *m, char *err, size_t errlen)
{
	/* Asked before building, so a started VM is refused for that, not for its config. */
	int e = vmm_allowed(v, VMM_OP_START, NULL, err, errlen) ?: fc_machine_build(c, m, err, errlen);

	if (e)
		return e;
	if (c->log_level != FC_LOG_UNSET)
		log_set_level((enum log_level)c->log_level);
	e = vmm_start(v, &m->cfg, err, errlen);
	if (e)
		fc_machine_exit(m);
	return e;
}

int api_boot(struct api *a, struct fc_config *c, char *err, size_t errlen)
{
	int e;

	pthread_mutex_lock(&a->lock);
	fc_config_exit(&a->cfg);
	a->cfg = *c;
	pthread_mutex_unlock(&a->lock);
	fc_config_init(c);
	/* Tell the vmm too, so a later PUT /metrics is refused as configured twice. */
	if (a->cfg.metrics_path) {
		e = vmm_set_metrics_path(a->vmm, a->cfg.metrics_path, err, errlen);
		if (e)
			return e;
	}
	return api_vm_start(a->vmm, &a->cfg, &a->machine, err, errlen);
}

void api_stop(struct api *a)
{
	if (!a || !a->daemon)
		return;
	/* Closes every connection (each told NOTIFY_CLOSED) before the watchdog goes. */
	mhd.stop_daemon(a->daemon);
	a->daemon = NULL;
	api_stop_watchdog(a);
	unlink(a->sock_path);
}

void api_free(struct api *a)
{
	if (!a)
		return;
	api_stop(a);
	api_free_locks(a);
	fc_config_exit(&a->cfg);
	fc_machine_exit(&a->machine);
	fc_snapshot_load_exit(&a->load);
	free(a->sock_path);
	free(a->id);
	free(a);
}

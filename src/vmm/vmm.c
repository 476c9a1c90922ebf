/*
 * The VMM process: one main loop that owns the machine. Control requests
 * arrive from other threads (the API server) through vmm_call(), which posts
 * the closure to the main loop as loop work and waits for the result, so the
 * machine is only ever touched from the main thread.
 */
#include "vmm.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/net.h"
#include "loop/loop.h"
#include "machine_priv.h"
#include "snapshot/snap.h"
#include "util/log.h"

/* One vmm_call() in flight, on its caller's stack until done. */
struct vmm_req {
	struct vmm *v;
	int (*fn)(struct vmm *v, void *opaque);
	void *opaque;
	int result;
	bool done;
	struct loop_work work;
	struct vmm_req *next;   /* in v->pending while not done */
};

struct vmm {
	struct loop *loop;
	int sigfd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/*
	 * Calls posted and not done yet: the loop runs them; this list is only
	 * so that those still queued when the loop ends get -ESHUTDOWN.
	 */
	struct vmm_req *pending;
	bool exiting;
	struct vmm_info published;   /* under lock: vmm_peek_info's copy, refreshed on the VMM thread */

	struct machine *m;
	enum vmm_state state;
	int status;
	char *console;
	char *metrics_path;
	struct machine_config restored_cfg;   /* owns its strings after a snapshot load */
	bool have_restored_cfg;
	bool loaded;
};

/* Caller holds v->lock. */
static void vmm_req_finish(struct vmm_req *r, int result)
{
	struct vmm_req **pp = &r->v->pending;

	while (*pp != r)
		pp = &(*pp)->next;
	*pp = r->next;
	r->result = result;
	r->done = true;   /* the caller may return (and r go) as soon as the lock is dropped */
	pthread_cond_broadcast(&r->v->cond);
}

/* Loop work, on the VMM thread. */
static void vmm_run_call(void *opaque)
{
	struct vmm_req *r = opaque;
	struct vmm *v = r->v;
	int result = r->fn(v, r->opaque);

	pthread_mutex_lock(&v->lock);
	vmm_get_info(v, &v->published);   /* before done: the caller sees its own change */
	vmm_req_finish(r, result);
	pthread_mutex_unlock(&v->lock);
}

static void vmm_signal_cb(void *opaque, uint32_t events)
{
	struct vmm *v = opaque;
	struct signalfd_siginfo si;

	if (read(v->sigfd, &si, sizeof(si)) != sizeof(si))
		return;
	log_info("main", "signal %u: stopping", si.ssi_signo);
	if (v->state == VMM_RUNNING || v->state == VMM_PAUSED) {
		machine_request_stop(v->m, 128 + (int)si.ssi_signo);
	} else {
		v->status = 128 + (int)si.ssi_signo;
		loop_stop(v->loop);
	}
}

static void vmm_stop_cb(void *opaque, uint32_t events)
{
	struct vmm *v = opaque;

	loop_stop(v->loop);
}

struct vmm *vmm_new(void)
{
	struct vmm *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->sigfd = -1;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->cond, NULL);
	v->loop = loop_new();
	v->console = strdup("stdio");
	v->sigfd = machine_signalfd();
	if (!v->loop || !v->console || v->sigfd < 0 ||
	    loop_add(v->loop, v->sigfd, EPOLLIN, vmm_signal_cb, v) < 0) {
		vmm_free(v);
		return NULL;
	}
	return v;
}

static void vmm_drop_machine(struct vmm *v)
{
	if (!v->m)
		return;
	loop_del(v->loop, machine_stop_fd(v->m));
	machine_free(v->m);
	v->m = NULL;
}

void vmm_free(struct vmm *v)
{
	if (!v)
		return;
	vmm_drop_machine(v);
	if (v->have_restored_cfg)
		machine_config_release(&v->restored_cfg);
	if (v->loop) {
		if (v->sigfd >= 0)
			loop_del(v->loop, v->sigfd);
		loop_free(v->loop);
	}
	if (v->sigfd >= 0)
		close(v->sigfd);
	free(v->console);
	free(v->metrics_path);
	free(v);
}

struct loop *vmm_loop(struct vmm *v)
{
	return v->loop;
}

void vmm_set_console(struct vmm *v, const char *spec)
{
	char *c = strdup(spec);

	if (c) {
		free(v->console);
		v->console = c;
	}
}

int vmm_call(struct vmm *v, int (*fn)(struct vmm *v, void *opaque), void *opaque)
{
	struct vmm_req r = { .v = v, .fn = fn, .opaque = opaque };

	loop_work_init(&r.work, vmm_run_call, &r);
	pthread_mutex_lock(&v->lock);
	if (v->exiting) {
		pthread_mutex_unlock(&v->lock);
		return -ESHUTDOWN;
	}
	r.next = v->pending;
	v->pending = &r;
	/* Under v->lock: vmm_run() cannot have drained the pending list in between. */
	loop_work_post(v->loop, &r.work);
	while (!r.done)
		pthread_cond_wait(&v->cond, &v->lock);
	pthread_mutex_unlock(&v->lock);
	return r.result;
}

static int vmm_attach(struct vmm *v, struct machine *m, char *err, size_t errlen)
{
	int e = loop_add(v->loop, machine_stop_fd(m), EPOLLIN, vmm_stop_cb, v);

	if (e < 0) {
		snprintf(err, errlen, "event loop: %s", strerror(-e));
		return e;
	}
	v->m = m;
	return 0;
}

const char *vmm_state_name(enum vmm_state s)
{
	switch (s) {
	case VMM_NOT_STARTED: return "Not started";
	case VMM_RUNNING: return "Running";
	case VMM_PAUSED:
	case VMM_LOADED: return "Paused";
	case VMM_ENDED: return "Ended";
	}
	return "Unknown";
}

int vmm_allowed(struct vmm *v, enum vmm_op op, const char *what, char *err, size_t errlen)
{
	enum vmm_state s = v->state;

	switch (op) {
	case VMM_OP_CONFIGURE:
		if (s == VMM_NOT_STARTED)
			return 0;
		snprintf(err, errlen, "%s cannot be changed after the VM started", what ? what : "the configuration");
		break;
	case VMM_OP_START:
		if (s == VMM_NOT_STARTED)
			return 0;
		snprintf(err, errlen, "InstanceStart: the VM was already started%s",
			 v->loaded ? " (loaded from a snapshot)" : "");
		break;
	case VMM_OP_PAUSE:
	case VMM_OP_RESUME:
		if (s != VMM_NOT_STARTED && s != VMM_ENDED)
			return 0;
		snprintf(err, errlen, "the VM cannot be %s: it is %s", op == VMM_OP_PAUSE ? "paused" : "resumed",
			 s == VMM_ENDED ? "ending" : "not started (use InstanceStart)");
		break;
	case VMM_OP_SNAPSHOT_CREATE:
		if (s == VMM_PAUSED || s == VMM_LOADED)
			return 0;
		snprintf(err, errlen, "a snapshot needs a paused VM (it is %s): PATCH /vm {\"state\": \"Paused\"} first",
			 vmm_state_name(s));
		break;
	case VMM_OP_SNAPSHOT_LOAD:
		if (s == VMM_NOT_STARTED)
			return 0;
		snprintf(err, errlen, "a snapshot can only be loaded before the VM started");
		break;
	case VMM_OP_CTRL_ALT_DEL:
		if (s == VMM_RUNNING)
			return 0;
		snprintf(err, errlen, "SendCtrlAltDel: the VM is not running (it is %s)", vmm_state_name(s));
		break;
	case VMM_OP_FLUSH_METRICS:
		if (s != VMM_NOT_STARTED && s != VMM_ENDED)
			return 0;
		snprintf(err, errlen, "FlushMetrics: the VM is not started, so there are no metrics yet");
		break;
	}
	return -EINVAL;
}

/* vCPU threads exist (running or paused) and must be stopped and joined at the end. */
static bool vmm_vcpus_started(const struct vmm *v)
{
	return v->m && (v->state == VMM_RUNNING || v->state == VMM_PAUSED);
}

int vmm_start(struct vmm *v, const struct machine_config *cfg, char *err, size_t errlen)
{
	struct machine *m;
	int e;

	e = vmm_allowed(v, VMM_OP_START, NULL, err, errlen);
	if (e < 0)
		return e;
	m = machine_new(cfg, v->loop, NULL, err, errlen);
	if (!m)
		return -EINVAL;
	e = vmm_attach(v, m, err, errlen);
	if (e < 0) {
		machine_free(m);
		return e;
	}
	if (v->metrics_path && !cfg->metrics_path && machine_set_metrics(m, v->metrics_path, err, errlen) < 0) {
		vmm_drop_machine(v);
		return -EINVAL;
	}
	e = machine_start(m, err, errlen);
	if (e < 0) {
		/* vCPUs may have started: stop them before freeing. */
		machine_request_stop(m, 1);
		machine_finish(m);
		vmm_drop_machine(v);
		return e;
	}
	v->state = VMM_RUNNING;
	return 0;
}

int vmm_pause(struct vmm *v, char *err, size_t errlen)
{
	int e = vmm_allowed(v, VMM_OP_PAUSE, NULL, err, errlen);

	if (e < 0 || v->state != VMM_RUNNING)
		return e;
	machine_pause(v->m);
	v->state = VMM_PAUSED;
	return 0;
}

int vmm_resume(struct vmm *v, char *err, size_t errlen)
{
	int e = vmm_allowed(v, VMM_OP_RESUME, NULL, err, errlen);

	if (e < 0 || v->state == VMM_RUNNING)
		return e;
	/* A VM loaded from a snapshot runs its vCPUs for the first time. */
	if (v->state == VMM_LOADED)
		e = machine_start(v->m, err, errlen);
	else
		e = machine_resume(v->m, err, errlen);
	if (e < 0)
		return e;
	v->state = VMM_RUNNING;
	return 0;
}

int vmm_snapshot_create(struct vmm *v, const struct vmm_snapshot_params *p, char *err, size_t errlen)
{
	struct timespec t0, t1;
	int e;

	e = vmm_allowed(v, VMM_OP_SNAPSHOT_CREATE, NULL, err, errlen);
	if (e < 0)
		return e;
	if (!p->state_path || !*p->state_path || !p->mem_path || !*p->mem_path) {
		snprintf(err, errlen, "snapshot_path and mem_file_path are required");
		return -EINVAL;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	e = machine_snapshot(v->m, p->type == VMM_SNAPSHOT_DIFF, p->state_path, p->mem_path, err, errlen);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (!e)
		log_info("snapshot", "%s snapshot written in %.3f ms",
			 p->type == VMM_SNAPSHOT_DIFF ? "diff" : "full",
			 (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	return e;
}

/*
 * network_overrides: NIC `id` gets the TAP device `tap`; every other field
 * (the MAC included: the snapshot holds the one the guest saw) stays.
 */
static int vmm_override_net(struct machine_config *c, const char *id, const char *tap, char *err, size_t errlen)
{
	for (unsigned i = 0; i < c->nnets; i++) {
		struct net_config *n = &c->nets[i];
		char autoid[16], q[40];

		if (strcmp(machine_net_id(c, i, autoid, sizeof(autoid)), id) != 0)
			continue;
		if (n->backend != NET_BACKEND_TAP) {
			snprintf(err, errlen, "network override for %s: the interface is not a TAP device", id);
			return -EINVAL;
		}
		if (!net_ifname_ok(tap, strlen(tap))) {
			snprintf(err, errlen, "network override for %s: bad host_dev_name '%s'", id,
				 net_printable(q, sizeof(q), tap, strlen(tap)));
			return -EINVAL;
		}
		snprintf(n->ifname, sizeof(n->ifname), "%s", tap);
		return 0;
	}
	snprintf(err, errlen, "network override for unknown interface '%s'", id);
	return -EINVAL;
}

int vmm_snapshot_load(struct vmm *v, const struct vmm_load_params *p, char *err, size_t errlen)
{
	struct machine_config cfg = { 0 };
	struct snap_reader r;
	struct memfile_info mi;
	struct machine *m = NULL;
	struct timespec t0, t1;
	int e;

	e = vmm_allowed(v, VMM_OP_SNAPSHOT_LOAD, NULL, err, errlen);
	if (e < 0)
		return e;
	if (!p->state_path || !*p->state_path || !p->mem_path || !*p->mem_path) {
		snprintf(err, errlen, "snapshot_path and a memory file are required");
		return -EINVAL;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	e = snap_reader_open(&r, p->state_path, err, errlen);
	if (e < 0)
		return e;
	e = machine_config_load(&cfg, &r, err, errlen);
	if (e < 0)
		goto out_reader;
	for (unsigned i = 0; i < p->n_net_overrides && !e; i++)
		e = vmm_override_net(&cfg, p->net_overrides[i].iface_id, p->net_overrides[i].host_dev_name, err,
				     errlen);
	if (e < 0)
		goto out_cfg;
	/* The memory file must be the one this state file was written with (snapshot/memfile.h). */
	e = memfile_check(&r, p->state_path, p->mem_path,
			  MEMFILE_CHECK_RECOVER | (p->verify_memory ? MEMFILE_CHECK_DIGEST : 0), &mi, err, errlen);
	if (e < 0)
		goto out_cfg;
	cfg.console = v->console;
	cfg.kvm_path = "/dev/kvm";
	cfg.metrics_path = v->metrics_path;
	cfg.metrics_interval = 60;
	cfg.track_dirty_pages = p->track_dirty_pages;
	m = machine_new(&cfg, v->loop, p->mem_path, err, errlen);
	if (!m) {
		e = -EINVAL;
		goto out_cfg;
	}
	e = machine_load(m, &r, err, errlen);
	if (e < 0)
		goto out_machine;
	e = vmm_attach(v, m, err, errlen);
	if (e < 0)
		goto out_machine;
	v->restored_cfg = cfg;
	v->have_restored_cfg = true;
	v->loaded = true;
	/* The machine keeps a copy of cfg; its strings now belong to v->restored_cfg. */
	if (p->resume) {
		e = machine_start(m, err, errlen);
		if (e < 0) {
			machine_request_stop(m, 1);
			machine_finish(m);
			vmm_drop_machine(v);
			machine_config_release(&v->restored_cfg);
			v->have_restored_cfg = false;
			v->loaded = false;
			goto out_reader;
		}
		v->state = VMM_RUNNING;
	} else {
		v->state = VMM_LOADED;   /* vCPUs start on the first resume */
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	log_info("snapshot", "restored in %.3f ms",
		 (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	snap_reader_free(&r);
	return 0;

out_machine:
	machine_free(m);
out_cfg:
	machine_config_release(&cfg);
out_reader:
	snap_reader_free(&r);
	return e;
}

int vmm_ctrl_alt_del(struct vmm *v, char *err, size_t errlen)
{
	int e = vmm_allowed(v, VMM_OP_CTRL_ALT_DEL, NULL, err, errlen);

	if (e < 0)
		return e;
	if (machine_ctrl_alt_del(v->m) < 0) {
		snprintf(err, errlen, "the keyboard controller's buffer is full");
		return -ENOBUFS;
	}
	return 0;
}

int vmm_flush_metrics(struct vmm *v, char *err, size_t errlen)
{
	int e = vmm_allowed(v, VMM_OP_FLUSH_METRICS, NULL, err, errlen);

	if (e < 0)
		return e;
	return machine_flush_metrics(v->m, err, errlen);
}

int vmm_set_disk_rate_limit(struct vmm *v, unsigned index, const struct ratelimit_config *rl, char *err,
			    size_t errlen)
{
	return v->m ? machine_set_disk_rate_limit(v->m, index, rl, err, errlen) : 0;
}

int vmm_set_metrics_path(struct vmm *v, const char *path, char *err, size_t errlen)
{
	char *c;

	if (v->metrics_path) {
		snprintf(err, errlen, "metrics are already configured");
		return -EINVAL;
	}
	c = strdup(path);
	if (!c)
		return -ENOMEM;
	if (v->m) {
		int e = machine_set_metrics(v->m, path, err, errlen);

		if (e < 0) {
			free(c);
			return e;
		}
	}
	v->metrics_path = c;
	return 0;
}

void vmm_peek_info(struct vmm *v, struct vmm_info *out)
{
	pthread_mutex_lock(&v->lock);
	*out = v->published;
	pthread_mutex_unlock(&v->lock);
}

/* On the VMM thread: refresh what vmm_peek_info reports. */
static void vmm_publish(struct vmm *v)
{
	pthread_mutex_lock(&v->lock);
	vmm_get_info(v, &v->published);
	pthread_mutex_unlock(&v->lock);
}

void vmm_get_info(struct vmm *v, struct vmm_info *out)
{
	memset(out, 0, sizeof(*out));
	out->state = v->state;
	out->restored = v->loaded;
	if (v->m) {
		out->cpus = v->m->cfg.cpus;
		out->mem_size = v->m->cfg.mem_size;
	}
}

int vmm_run(struct vmm *v)
{
	int status;

	vmm_publish(v);   /* a VM started before the loop (--config-file) */
	loop_run(v->loop);
	pthread_mutex_lock(&v->lock);
	v->exiting = true;
	/*
	 * Calls posted that the loop did not run get -ESHUTDOWN. The loop has
	 * stopped on this thread, so none is running; no new ones come.
	 */
	while (v->pending) {
		loop_work_cancel(v->loop, &v->pending->work);
		vmm_req_finish(v->pending, -ESHUTDOWN);
	}
	pthread_mutex_unlock(&v->lock);
	status = v->status;
	if (v->m) {
		if (vmm_vcpus_started(v))
			status = machine_finish(v->m);
		v->state = VMM_ENDED;
		vmm_drop_machine(v);
		vmm_publish(v);
	}
	return status;
}

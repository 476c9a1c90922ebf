/*
 * The vmm's life-cycle rules (src/vmm/vmm.c, vmm_allowed) in a VMM with no
 * VM, and network_overrides on a snapshot's typed NIC configuration, refused
 * before any VM is built (no /dev/kvm needed).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "loop/loop.h"
#include "snapshot/snap.h"
#include "vmm/vmm.h"

static void assert_err(int e, const char *err, const char *want)
{
	assert_int_not_equal(e, 0);
	if (!strstr(err, want))
		fail_msg("error '%s' lacks '%s'", err, want);
}

/* Before InstanceStart: configuration and loading are allowed, nothing else. */
static void test_rules_not_started(void **st)
{
	struct vmm *v = vmm_new();
	struct vmm_snapshot_params sp = { .state_path = "s", .mem_path = "m" };
	struct vmm_info info;
	char err[256];

	assert_non_null(v);
	assert_int_equal(vmm_allowed(v, VMM_OP_CONFIGURE, "drives", err, sizeof(err)), 0);
	assert_int_equal(vmm_allowed(v, VMM_OP_START, NULL, err, sizeof(err)), 0);
	assert_int_equal(vmm_allowed(v, VMM_OP_SNAPSHOT_LOAD, NULL, err, sizeof(err)), 0);
	assert_err(vmm_pause(v, err, sizeof(err)), err, "cannot be paused: it is not started (use InstanceStart)");
	assert_err(vmm_resume(v, err, sizeof(err)), err, "cannot be resumed: it is not started");
	assert_err(vmm_snapshot_create(v, &sp, err, sizeof(err)), err, "a snapshot needs a paused VM (it is Not started)");
	assert_err(vmm_ctrl_alt_del(v, err, sizeof(err)), err, "SendCtrlAltDel: the VM is not running (it is Not started)");
	assert_err(vmm_flush_metrics(v, err, sizeof(err)), err, "FlushMetrics: the VM is not started");
	vmm_get_info(v, &info);
	assert_int_equal(info.state, VMM_NOT_STARTED);
	assert_false(info.restored);
	assert_string_equal(vmm_state_name(VMM_LOADED), "Paused");
	vmm_free(v);
}

static char state_path[64];

/* A state file whose machine section has a user NIC "eth0" and a TAP NIC "eth1". */
static void write_state(void)
{
	struct machine_config c;
	struct snap_writer w;
	char err[256];
	int fd;

	memset(&c, 0, sizeof(c));
	c.cpus = 1;
	c.mem_size = 64ull << 20;
	c.kernel = "k";
	c.cmdline = "";
	c.nnets = 2;
	c.nets[0].backend = NET_BACKEND_USER;
	c.nets[1].backend = NET_BACKEND_TAP;
	strcpy(c.nets[1].ifname, "tap0");
	snprintf(state_path, sizeof(state_path), "/tmp/kestrel-test-vmm-XXXXXX");
	fd = mkstemp(state_path);
	assert_true(fd >= 0);
	close(fd);
	snap_writer_init(&w);
	machine_config_save(&c, &w);
	assert_int_equal(snap_writer_save(&w, state_path, err, sizeof(err)), 0);
	snap_writer_free(&w);
}

static int load_with_override(const char *id, const char *tap, char *err, size_t errlen)
{
	struct vmm *v = vmm_new();
	struct vmm_load_params p = { .state_path = state_path, .mem_path = "/nonexistent/mem" };
	struct vmm_info info;
	int e;

	assert_non_null(v);
	p.net_overrides[0].iface_id = id;
	p.net_overrides[0].host_dev_name = tap;
	p.n_net_overrides = 1;
	err[0] = '\0';
	e = vmm_snapshot_load(v, &p, err, errlen);
	/* A failed load leaves nothing behind: still not started, loading still allowed. */
	vmm_get_info(v, &info);
	assert_int_equal(info.state, VMM_NOT_STARTED);
	assert_false(info.restored);
	vmm_free(v);
	return e;
}

static void test_network_overrides(void **st)
{
	char err[256];

	write_state();
	assert_err(load_with_override("eth0", "tap9", err, sizeof(err)), err,
		   "network override for eth0: the interface is not a TAP device");
	assert_err(load_with_override("eth7", "tap9", err, sizeof(err)), err,
		   "network override for unknown interface 'eth7'");
	assert_err(load_with_override("eth1", "a/b", err, sizeof(err)), err, "bad host_dev_name 'a/b'");
	assert_err(load_with_override("eth1", "a-name-longer-than-15", err, sizeof(err)), err, "bad host_dev_name");
	assert_err(load_with_override("eth1", "", err, sizeof(err)), err, "bad host_dev_name");
	/* A good override gets past the rule; the missing memory file stops the load later. */
	assert_int_not_equal(load_with_override("eth1", "tap,9", err, sizeof(err)), 0);
	assert_null(strstr(err, "network override"));
	unlink(state_path);
}

/* --- vmm_call: closures posted to the VMM thread --- */

struct vmm_thread {
	struct vmm *v;
	pthread_t tid;
	int status;
};

static void *vmm_thread_main(void *arg)
{
	struct vmm_thread *t = arg;

	t->status = vmm_run(t->v);
	return NULL;
}

struct call_ctx {
	pthread_t ran_on;
	unsigned count;          /* touched only on the VMM thread */
	bool ran;
};

static int call_record(struct vmm *v, void *opaque)
{
	struct call_ctx *c = opaque;

	(void)v;
	c->ran_on = pthread_self();
	c->ran = true;
	c->count++;
	return 42;
}

static int call_stop(struct vmm *v, void *opaque)
{
	(void)opaque;
	loop_stop(vmm_loop(v));
	return 7;
}

struct caller {
	struct vmm *v;
	struct call_ctx *c;
	unsigned n;
	int last;
};

static void *caller_main(void *arg)
{
	struct caller *k = arg;

	for (unsigned i = 0; i < k->n; i++)
		k->last = vmm_call(k->v, call_record, k->c);
	return NULL;
}

/* fn runs on the thread in vmm_run(), its result comes back; calls from many threads all run once each. */
static void test_call_runs_on_vmm_thread(void **st)
{
	struct vmm_thread t = { .v = vmm_new() };
	struct call_ctx c = { 0 };
	struct caller k[4];
	pthread_t ktid[4];

	(void)st;
	assert_non_null(t.v);
	assert_int_equal(pthread_create(&t.tid, NULL, vmm_thread_main, &t), 0);
	assert_int_equal(vmm_call(t.v, call_record, &c), 42);
	assert_true(c.ran);
	assert_true(pthread_equal(c.ran_on, t.tid));
	for (unsigned i = 0; i < 4; i++) {
		k[i] = (struct caller){ .v = t.v, .c = &c, .n = 200 };
		assert_int_equal(pthread_create(&ktid[i], NULL, caller_main, &k[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(ktid[i], NULL);
		assert_int_equal(k[i].last, 42);
	}
	assert_int_equal(c.count, 1 + 4 * 200);
	assert_int_equal(vmm_call(t.v, call_stop, NULL), 7);
	pthread_join(t.tid, NULL);
	/* The loop has ended: no more calls. */
	c.ran = false;
	assert_int_equal(vmm_call(t.v, call_record, &c), -ESHUTDOWN);
	assert_false(c.ran);
	vmm_free(t.v);
}

/*
 * A call posted while the loop is not running, and still queued when the
 * loop ends, is answered with -ESHUTDOWN and never runs (a caller that comes
 * after the end gets the same at once).
 */
static void test_call_pending_at_end(void **st)
{
	struct vmm *v = vmm_new();
	struct call_ctx c = { 0 };
	struct caller k = { .v = v, .c = &c, .n = 1 };
	pthread_t ktid;

	(void)st;
	assert_non_null(v);
	assert_int_equal(pthread_create(&ktid, NULL, caller_main, &k), 0);
	usleep(100 * 1000);          /* let it post (either way the outcome is the same) */
	loop_stop(vmm_loop(v));      /* vmm_run's loop ends before dispatching anything */
	assert_int_equal(vmm_run(v), 0);
	pthread_join(ktid, NULL);
	assert_int_equal(k.last, -ESHUTDOWN);
	assert_false(c.ran);
	vmm_free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rules_not_started),
		cmocka_unit_test(test_network_overrides),
		cmocka_unit_test(test_call_runs_on_vmm_thread),
		cmocka_unit_test(test_call_pending_at_end),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

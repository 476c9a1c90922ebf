/*
 * The vmm's life-cycle rules (src/vmm/vmm.c, vmm_allowed) in a VMM with no
 * VM, and network_overrides on a snapshot's typed NIC configuration, refused
 * before any VM is built (no /dev/kvm needed).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rules_not_started),
		cmocka_unit_test(test_network_overrides),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

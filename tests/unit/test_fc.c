/*
 * Firecracker JSON → kestrel config (src/api/fc.c): Firecracker's
 * getting-started bodies, the config-file layout, and every kind of bad
 * input, each of which must leave the config as it was.
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

#include <cJSON.h>

#include "api/fc.h"
#include "api/fc_priv.h"
#include "util/log.h"

struct files {
	char dir[64];
	char kernel[96];
	char rootfs[96];
	char data[96];
};

static struct files F;

static void touch(const char *path)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs("x", f);
	fclose(f);
}

static int setup(void **state)
{
	snprintf(F.dir, sizeof(F.dir), "/tmp/kestrel-test-fc-XXXXXX");
	if (!mkdtemp(F.dir))
		return -1;
	snprintf(F.kernel, sizeof(F.kernel), "%s/vmlinux", F.dir);
	snprintf(F.rootfs, sizeof(F.rootfs), "%s/rootfs.ext4", F.dir);
	snprintf(F.data, sizeof(F.data), "%s/data.img", F.dir);
	touch(F.kernel);
	touch(F.rootfs);
	touch(F.data);
	return 0;
}

static int teardown(void **state)
{
	unlink(F.kernel);
	unlink(F.rootfs);
	unlink(F.data);
	rmdir(F.dir);
	return 0;
}

/* printf into a static buffer: the request bodies below need the temp paths. */
static const char *J(const char *fmt, ...)
{
	static char buf[4][2048];
	static int n;
	char *b = buf[n++ % 4];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b, sizeof(buf[0]), fmt, ap);
	va_end(ap);
	return b;
}

/* One request body for resource res (id: the path's id, or NULL). */
#define PUT(res, c, id, body) fc_put(c, res, id, body, strlen(body), err, sizeof(err))

/* A NIC in the typed machine config: a virtio NIC on TAP `tap`; mac NULL when none was given. */
static void assert_net(const struct net_config *n, const char *id, const char *tap, const char *mac)
{
	char got[18];

	assert_string_equal(n->id, id);
	assert_int_equal(n->model, NET_MODEL_VIRTIO);
	assert_int_equal(n->backend, NET_BACKEND_TAP);
	assert_string_equal(n->ifname, tap);
	assert_int_equal(n->nr_hostfwd, 0);
	if (!mac) {
		assert_false(n->mac_set);
		return;
	}
	assert_true(n->mac_set);
	snprintf(got, sizeof(got), "%02X:%02X:%02X:%02X:%02X:%02X", n->mac[0], n->mac[1], n->mac[2], n->mac[3],
		 n->mac[4], n->mac[5]);
	assert_string_equal(got, mac);
}

static void assert_disk(const struct blk_config *b, const char *path, bool ro, enum block_engine engine)
{
	assert_string_equal(b->path, path);
	assert_int_equal(b->read_only, ro);
	assert_false(b->direct);
	assert_int_equal(b->engine, engine);
	assert_int_equal(b->num_queues, 1);
	assert_string_equal(b->serial, "");
}

/* Expect a 400-style failure whose message contains `want`. */
#define assert_fails(expr, want)                                                  \
	do {                                                                      \
		err[0] = '\0';                                                    \
		assert_int_not_equal((expr), 0);                                  \
		if (!strstr(err, (want)))                                         \
			fail_msg("error '%s' lacks '%s'", err, (want));           \
	} while (0)

/* ---- Firecracker's getting-started flow ---- */

static void test_getting_started(void **state)
{
	struct fc_config c;
	struct fc_machine m;
	char err[256] = "";

	fc_config_init(&c);
	const char *bs = J("{\"kernel_image_path\": \"%s\", \"boot_args\": \"console=ttyS0 reboot=k panic=1 pci=off\"}",
			   F.kernel);
	assert_int_equal(PUT(FC_BOOT_SOURCE, &c, NULL, bs), 0);
	const char *drive = J("{\"drive_id\": \"rootfs\", \"path_on_host\": \"%s\", \"is_root_device\": true, "
			      "\"is_read_only\": false}", F.rootfs);
	assert_int_equal(PUT(FC_DRIVE, &c, "rootfs", drive), 0);
	assert_int_equal(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 2, \"mem_size_mib\": 1024}"), 0);
	assert_int_equal(PUT(FC_NET, &c, "net1", "{\"iface_id\": \"net1\", \"guest_mac\": \"06:00:AC:10:00:02\", "
			     "\"host_dev_name\": \"tap0\"}"), 0);
	assert_int_equal(fc_parse_action("{\"action_type\": \"InstanceStart\"}", 32, &(enum fc_action){ 0 }, err,
					 sizeof(err)), 0);

	assert_int_equal(fc_machine_build(&c, &m, err, sizeof(err)), 0);
	assert_string_equal(m.cfg.kernel, F.kernel);
	assert_null(m.cfg.initrd);
	assert_string_equal(m.cfg.cmdline, "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda rw");
	assert_int_equal(m.cfg.cpus, 2);
	assert_int_equal(m.cfg.mem_size, 1024ull << 20);
	assert_int_equal(m.cfg.ndisks, 1);
	assert_disk(&m.cfg.disks[0], F.rootfs, false, BLOCK_ENGINE_URING);
	assert_int_equal(m.cfg.nnets, 1);
	assert_net(&m.cfg.nets[0], "net1", "tap0", "06:00:AC:10:00:02");
	assert_string_equal(m.cfg.console, "stdio");
	assert_string_equal(m.cfg.kvm_path, "/dev/kvm");
	assert_false(m.cfg.hugepages);
	assert_false(m.cfg.track_dirty_pages);
	fc_machine_exit(&m);
	fc_config_exit(&c);
}

static void test_defaults_and_no_boot_source(void **state)
{
	struct fc_config c;
	struct fc_machine m;
	char err[256];
	char *j;

	fc_config_init(&c);
	j = fc_machine_config_to_json(&c);
	assert_string_equal(j, "{\"vcpu_count\":1,\"mem_size_mib\":128,\"smt\":false,\"track_dirty_pages\":false,"
			       "\"huge_pages\":\"None\"}");
	free(j);
	assert_fails(fc_machine_build(&c, &m, err, sizeof(err)), "boot source");
	assert_false(c.boot_configured);
	fc_config_exit(&c);
}

/* ---- drives ---- */

static void test_drives(void **state)
{
	struct fc_config c;
	struct fc_machine m;
	char err[256];

	fc_config_init(&c);
	assert_int_equal(PUT(FC_BOOT_SOURCE, &c, NULL, J("{\"kernel_image_path\": \"%s\"}", F.kernel)), 0);
	/* A data drive first, then the root: the root is still passed first. */
	assert_int_equal(PUT(FC_DRIVE, &c,
			     "data", J("{\"drive_id\": \"data\", \"path_on_host\": \"%s\", "
						 "\"is_root_device\": false, \"is_read_only\": true, "
						 "\"io_engine\": \"Async\", \"cache_type\": \"Writeback\"}", F.data)), 0);
	assert_int_equal(PUT(FC_DRIVE, &c, "rootfs", J("{\"drive_id\": \"rootfs\", \"path_on_host\": \"%s\", "
						 "\"is_root_device\": true, \"partuuid\": \"0eaa91a0-01\", "
						 "\"io_engine\": \"Sync\"}", F.rootfs)), 0);
	/* A second root drive is refused; the same id again replaces it. */
	assert_fails(PUT(FC_DRIVE, &c, "r2", J("{\"drive_id\": \"r2\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": true}", F.data)), "root drive already exists");
	assert_int_equal(PUT(FC_DRIVE, &c,
			     "rootfs", J("{\"drive_id\": \"rootfs\", \"path_on_host\": \"%s\", "
						 "\"is_root_device\": true, \"is_read_only\": true}", F.rootfs)), 0);
	assert_int_equal(c.ndrives, 2);
	assert_int_equal(fc_machine_build(&c, &m, err, sizeof(err)), 0);
	assert_int_equal(m.cfg.ndisks, 2);
	assert_disk(&m.cfg.disks[0], F.rootfs, true, BLOCK_ENGINE_URING);
	assert_disk(&m.cfg.disks[1], F.data, true, BLOCK_ENGINE_URING);
	assert_string_equal(m.cfg.cmdline, "root=/dev/vda ro");
	fc_machine_exit(&m);

	/* partuuid goes onto the command line. */
	assert_int_equal(PUT(FC_DRIVE, &c,
			     "rootfs", J("{\"drive_id\": \"rootfs\", \"path_on_host\": \"%s\", "
						 "\"is_root_device\": true, \"partuuid\": \"0eaa91a0-01\"}", F.rootfs)), 0);
	assert_int_equal(fc_machine_build(&c, &m, err, sizeof(err)), 0);
	assert_string_equal(m.cfg.cmdline, "root=PARTUUID=0eaa91a0-01 rw");
	fc_machine_exit(&m);

	/* Up to MACHINE_MAX_DISKS drives. */
	for (int i = 2; i < MACHINE_MAX_DISKS; i++) {
		char id[8];

		snprintf(id, sizeof(id), "d%d", i);
		assert_int_equal(PUT(FC_DRIVE, &c, id, J("{\"drive_id\": \"%s\", \"path_on_host\": \"%s\", "
							 "\"is_root_device\": false}", id, F.data)), 0);
	}
	assert_fails(PUT(FC_DRIVE, &c, "one-more", J("{\"drive_id\": \"one-more\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false}", F.data)), "too many drives");
	assert_int_equal(c.ndrives, MACHINE_MAX_DISKS);
	fc_config_exit(&c);
}

static void test_drive_errors(void **state)
{
	struct fc_config c;
	char err[256];
	char *before, *after;

	fc_config_init(&c);
	assert_int_equal(PUT(FC_DRIVE, &c, "rootfs", J("{\"drive_id\": \"rootfs\", \"path_on_host\": \"%s\", "
						 "\"is_root_device\": true}", F.rootfs)), 0);
	before = fc_config_to_json(&c);

	assert_fails(PUT(FC_DRIVE, &c, "rootfs", J("{\"drive_id\": \"other\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false}", F.data)),
		     "does not match the id 'rootfs' in the path");
	assert_fails(PUT(FC_DRIVE, &c, "x", "{\"drive_id\": \"x\", \"path_on_host\": \"/nonexistent/img\", "
			 "\"is_root_device\": false}"), "No such file");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false}", F.dir)), "not a regular file");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\"}", F.data)),
		     "missing field 'is_root_device' in /drives");
	assert_fails(PUT(FC_DRIVE, &c, "x", "{\"drive_id\": \"x\", \"is_root_device\": false}"),
		     "missing field 'path_on_host'");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": \"yes\"}", F.data)),
		     "field 'is_root_device' in /drives must be a boolean");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"io_engine\": \"Fast\"}", F.data)),
		     "'Fast' is not one of Sync or Async");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"cache_type\": \"None\"}", F.data)),
		     "is not one of Unsafe or Writeback");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"rate_limiter\": {\"bandwidth\": {\"size\": 1}}}", F.data)),
		     "missing field 'refill_time' in rate_limiter in /drives.bandwidth");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"rate_limiter\": {\"ops\": {\"size\": -1, \"refill_time\": 100}}}", F.data)),
		     "must be a non-negative integer");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"rate_limiter\": {\"ops\": {\"size\": 1.5, \"refill_time\": 100}}}", F.data)),
		     "must be a non-negative integer");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"rate_limiter\": {\"ops\": {\"size\": \"10\", \"refill_time\": 100}}}", F.data)),
		     "must be a non-negative integer");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"rate_limiter\": {\"ops\": {\"size\": 10, \"refill_time\": 100, \"rate\": 1}}}", F.data)),
		     "unknown field 'rate'");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"rate_limiter\": {\"iops\": {\"size\": 10, \"refill_time\": 100}}}", F.data)),
		     "unknown field 'iops'");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"rate_limiter\": {\"ops\": {\"size\": 10, \"refill_time\": 0}}}", F.data)),
		     "size and refill_time must both be set");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"rate_limiter\": {\"ops\": {\"size\": 1e300, \"refill_time\": 100}}}", F.data)),
		     "field 'size' in rate_limiter in /drives.ops must be a non-negative integer");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"rate_limiter\": {\"bandwidth\": {\"size\": 10, \"one_time_burst\": 2e15, \"refill_time\": 100}}}", F.data)),
		     "field 'one_time_burst' in rate_limiter in /drives.bandwidth must be a non-negative integer");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"rate_limiter\": {\"ops\": {\"size\": 10, \"refill_time\": 1e9}}}", F.data)),
		     "rate_limiter in /drives.ops: refill_time must be at most 86400000 ms");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"rate_limiter\": [1]}", F.data)),
		     "must be an object");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"rate_limiter\": {\"ops\": 5}}", F.data)),
		     "must be an object");
	assert_fails(PUT(FC_DRIVE, &c, "x", "{\"drive_id\": \"x\", \"socket\": \"/tmp/vhost.sock\", "
			 "\"is_root_device\": false}"), "vhost-user");
	assert_fails(PUT(FC_DRIVE, &c, NULL, J("{\"drive_id\": \"x y\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false}", F.data)), "drive_id 'x y'");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"partuuid\": \"a b\"}", F.data)),
		     "partuuid");
	assert_fails(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
					     "\"is_root_device\": false, \"is_read_only\": false, "
					     "\"is_read_only\": true}", F.data)),
		     "duplicate field 'is_read_only'");

	after = fc_config_to_json(&c);
	assert_string_equal(before, after);
	free(before);
	free(after);
	fc_config_exit(&c);
}

/* rate_limiter on a drive: into the disk's typed config and back to JSON as given. */
static void test_drive_rate_limiter(void **state)
{
	struct fc_config c;
	struct fc_machine m;
	char err[256], *json;
	const struct ratelimit_config *rl;

	fc_config_init(&c);
	assert_int_equal(PUT(FC_BOOT_SOURCE, &c, NULL, J("{\"kernel_image_path\": \"%s\"}", F.kernel)), 0);
	assert_int_equal(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
						 "\"is_root_device\": false, \"rate_limiter\": {"
						 "\"bandwidth\": {\"size\": 1048576, \"one_time_burst\": 4096, "
						 "\"refill_time\": 250}, \"ops\": {\"size\": 100, "
						 "\"refill_time\": 1000}}}", F.data)), 0);
	assert_int_equal(PUT(FC_DRIVE, &c, "y", J("{\"drive_id\": \"y\", \"path_on_host\": \"%s\", "
						 "\"is_root_device\": false, \"rate_limiter\": null}", F.rootfs)), 0);
	json = fc_config_to_json(&c);
	assert_non_null(strstr(json, "\"rate_limiter\":{\"bandwidth\":{\"size\":1048576,\"one_time_burst\":4096,"
				     "\"refill_time\":250},\"ops\":{\"size\":100,\"one_time_burst\":0,"
				     "\"refill_time\":1000}}"));
	/* Only x has one. */
	assert_null(strstr(strstr(json, "rate_limiter") + 1, "rate_limiter"));
	free(json);
	assert_int_equal(fc_machine_build(&c, &m, err, sizeof(err)), 0);
	assert_int_equal(m.cfg.ndisks, 2);
	rl = &m.cfg.disks[0].rate_limit;
	assert_true(rl->bandwidth.size == 1048576 && rl->bandwidth.one_time_burst == 4096 &&
		    rl->bandwidth.refill_time_ms == 250);
	assert_true(rl->ops.size == 100 && rl->ops.one_time_burst == 0 && rl->ops.refill_time_ms == 1000);
	assert_false(ratelimit_config_enabled(&m.cfg.disks[1].rate_limit));
	fc_machine_exit(&m);
	fc_config_exit(&c);
}

#define PATCH_DRIVE(id, body) fc_drive_patch(&c, id, body, strlen(body), &rl, &slot, &disk, err, sizeof(err))

/* PATCH /drives/{id}: the buckets given replace, the others stay; the machine's disk order; bad input refused. */
static void test_drive_patch(void **state)
{
	struct fc_config c;
	struct ratelimit_config rl;
	unsigned slot, disk;
	char err[256];

	fc_config_init(&c);
	assert_int_equal(PUT(FC_DRIVE, &c, "a", J("{\"drive_id\": \"a\", \"path_on_host\": \"%s\", "
						 "\"is_root_device\": false, \"rate_limiter\": {\"ops\": "
						 "{\"size\": 10, \"refill_time\": 1000}}}", F.data)), 0);
	assert_int_equal(PUT(FC_DRIVE, &c, "r", J("{\"drive_id\": \"r\", \"path_on_host\": \"%s\", "
						 "\"is_root_device\": true}", F.rootfs)), 0);
	/* "a" was put first but the root drive is the machine's disk 0. */
	assert_int_equal(PATCH_DRIVE("a", "{\"drive_id\": \"a\", \"rate_limiter\": {\"bandwidth\": "
					  "{\"size\": 4096, \"refill_time\": 100}}}"), 0);
	assert_int_equal(slot, 0);
	assert_int_equal(disk, 1);
	assert_true(rl.bandwidth.size == 4096 && rl.bandwidth.refill_time_ms == 100);
	assert_true(rl.ops.size == 10 && rl.ops.refill_time_ms == 1000);   /* kept */
	/* Checks only: the config is the caller's to change. */
	assert_int_equal(c.drives[0].rate_limit.bandwidth.size, 0);
	assert_int_equal(PATCH_DRIVE("r", "{\"drive_id\": \"r\", \"rate_limiter\": {\"ops\": "
					  "{\"size\": 0, \"refill_time\": 0}}}"), 0);
	assert_int_equal(disk, 0);
	assert_false(ratelimit_config_enabled(&rl));
	assert_int_equal(PATCH_DRIVE("a", "{\"drive_id\": \"a\"}"), 0);
	assert_int_equal(rl.ops.size, 10);

	assert_fails(PATCH_DRIVE("a", "{\"drive_id\": \"b\"}"), "does not match the id 'a'");
	assert_fails(PATCH_DRIVE("zz", "{\"drive_id\": \"zz\"}"), "no drive 'zz'");
	assert_fails(PATCH_DRIVE("a", "{\"rate_limiter\": {}}"), "missing field 'drive_id'");
	assert_fails(PATCH_DRIVE("a", "{\"drive_id\": \"a\", \"path_on_host\": \"/x\"}"), "cannot swap");
	assert_fails(PATCH_DRIVE("a", "{\"drive_id\": \"a\", \"is_read_only\": true}"), "unknown field");
	assert_fails(PATCH_DRIVE("a", "{\"drive_id\": \"a\", \"rate_limiter\": {\"ops\": {\"size\": 5}}}"),
		     "missing field 'refill_time'");
	assert_fails(PATCH_DRIVE("a", "{\"drive_id\": \"a\", \"rate_limiter\": {\"ops\": "
				      "{\"size\": 5, \"refill_time\": -1}}}"), "non-negative integer");
	assert_fails(PATCH_DRIVE("a", "{\"drive_id\": \"a\", "), "JSON");
	fc_config_exit(&c);
}

/* A path is a field, not part of a "PATH,ro,..." string: a ',' in it is just a character. */
static void test_drive_path_with_comma(void **state)
{
	struct fc_config c;
	struct fc_machine m;
	char err[256], path[128];

	snprintf(path, sizeof(path), "%s/a,ro,b.img", F.dir);
	touch(path);
	fc_config_init(&c);
	assert_int_equal(PUT(FC_BOOT_SOURCE, &c, NULL, J("{\"kernel_image_path\": \"%s\"}", F.kernel)), 0);
	assert_int_equal(PUT(FC_DRIVE, &c, "x", J("{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
						 "\"is_root_device\": false}", path)), 0);
	assert_int_equal(fc_machine_build(&c, &m, err, sizeof(err)), 0);
	assert_int_equal(m.cfg.ndisks, 1);
	assert_disk(&m.cfg.disks[0], path, false, BLOCK_ENGINE_URING);
	fc_machine_exit(&m);
	fc_config_exit(&c);
	unlink(path);
}

/* ---- machine-config ---- */

static void test_machine_config(void **state)
{
	struct fc_config c;
	char err[256];
	char *before, *after;

	fc_config_init(&c);
	assert_int_equal(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 4, \"mem_size_mib\": 512, \"smt\": false, "
			     "\"track_dirty_pages\": true, \"huge_pages\": \"2M\", \"cpu_template\": \"None\"}"), 0);
	assert_int_equal(c.vcpus, 4);
	assert_int_equal(c.mem_mib, 512);
	assert_true(c.track_dirty_pages);
	assert_int_equal(c.huge_pages, 2);
	/* PATCH keeps what it does not name; PUT resets optional fields. */
	assert_int_equal(PUT(FC_MACHINE_CONFIG_PATCH, &c, NULL, "{\"vcpu_count\": 8}"), 0);
	assert_int_equal(c.vcpus, 8);
	assert_int_equal(c.mem_mib, 512);
	assert_true(c.track_dirty_pages);
	assert_int_equal(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 1, \"mem_size_mib\": 64}"), 0);
	assert_false(c.track_dirty_pages);
	assert_int_equal(c.huge_pages, 0);
	/* Null is an absent optional field; 1e2 is an integer. */
	assert_int_equal(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 1, \"mem_size_mib\": 1e2, \"smt\": null}"), 0);
	assert_int_equal(c.mem_mib, 100);

	before = fc_config_to_json(&c);
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 0, \"mem_size_mib\": 128}"),
		     "vcpu_count in /machine-config must be from 1 to 32");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 33, \"mem_size_mib\": 128}"),
		     "from 1 to 32");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": -1, \"mem_size_mib\": 128}"),
		     "must be a non-negative integer");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 1.5, \"mem_size_mib\": 128}"),
		     "must be a non-negative integer");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": \"2\", \"mem_size_mib\": 128}"),
		     "field 'vcpu_count' in /machine-config must be a non-negative integer");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 1e300, \"mem_size_mib\": 128}"),
		     "non-negative integer");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 2, \"mem_size_mib\": 4}"),
		     "mem_size_mib in /machine-config must be from 8 to 1048576");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 2, \"mem_size_mib\": 2000000}"),
		     "from 8 to 1048576");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 2}"),
		     "missing field 'mem_size_mib' in /machine-config");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"mem_size_mib\": 128}"), "missing field 'vcpu_count'");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"smt\": true}"),
		     "simultaneous multithreading is not supported");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"smt\": 1}"),
		     "field 'smt' in /machine-config must be a boolean");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 2, \"mem_size_mib\": 128, "
			 "\"cpu_template\": \"T2\"}"), "CPU templates are not supported");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 2, \"mem_size_mib\": 129, "
			 "\"huge_pages\": \"2M\"}"), "multiple of 2");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 2, \"mem_size_mib\": 128, "
			 "\"huge_pages\": \"1G\"}"), "'1G' is not one of None, Transparent or 2M");
	assert_fails(PUT(FC_MACHINE_CONFIG, &c, NULL, "{\"vcpu_count\": 2, \"mem_size_mib\": 128, "
			 "\"ht_enabled\": false}"), "unknown field 'ht_enabled' in /machine-config");
	assert_fails(PUT(FC_MACHINE_CONFIG_PATCH, &c, NULL, "{\"vcpu_count\": 99}"), "from 1 to 32");
	after = fc_config_to_json(&c);
	assert_string_equal(before, after);
	free(before);
	free(after);
	fc_config_exit(&c);
}

/* ---- boot-source and JSON-level errors ---- */

static void test_boot_source_and_json(void **state)
{
	struct fc_config c;
	char err[256], big[FC_BODY_MAX + 16];

	fc_config_init(&c);
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, "{}"), "missing field 'kernel_image_path' in /boot-source");
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, "{\"kernel_image_path\": 3}"),
		     "field 'kernel_image_path' in /boot-source must be a string");
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, "{\"kernel_image_path\": \"\"}"), "must not be empty");
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, "{\"kernel_image_path\": \"/nonexistent\"}"), "No such file");
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, J("{\"kernel_image_path\": \"%s\", \"initrd_path\": \"/nope\"}",
						  F.kernel)), "initrd_path '/nope'");
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, J("{\"kernel_image_path\": \"%s\", \"boot_args\": \"a\\nb\"}",
						  F.kernel)), "control character");
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, J("{\"kernel_image_path\": \"%s\", \"kernel\": \"x\"}", F.kernel)),
		     "unknown field 'kernel' in /boot-source");
	/* Malformed JSON, of several kinds. */
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, "{\"kernel_image_path\": \"x\","), "malformed JSON");
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, "{kernel_image_path: \"x\"}"), "malformed JSON");
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, "not json"), "malformed JSON");
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, "{} {}"), "unexpected data after the JSON value");
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, "[]"), "/boot-source must be a JSON object");
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, "\"x\""), "must be a JSON object");
	assert_fails(fc_put(&c, FC_BOOT_SOURCE, NULL, "{}\0{}", 5, err, sizeof(err)), "NUL byte");
	assert_fails(fc_put(&c, FC_BOOT_SOURCE, NULL, "", 0, err, sizeof(err)), "empty body");
	memset(big, ' ', sizeof(big));
	big[0] = '{';
	big[sizeof(big) - 1] = '}';
	assert_fails(fc_put(&c, FC_BOOT_SOURCE, NULL, big, sizeof(big), err, sizeof(err)), "larger than 65536 bytes");
	/* Deep nesting is refused by cJSON's own limit, not a crash. */
	{
		static char deep[20000];

		memset(deep, '[', sizeof(deep) - 1);
		assert_fails(fc_put(&c, FC_BOOT_SOURCE, NULL, deep, sizeof(deep) - 1, err, sizeof(err)), "malformed JSON");
	}
	/* A field name with control characters is reported printably. */
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, "{\"a\\u0001b\": 1}"), "unknown field 'a?b'");
	assert_null(c.kernel);
	assert_false(c.boot_configured);

	assert_int_equal(PUT(FC_BOOT_SOURCE, &c, NULL, J("{\"kernel_image_path\": \"%s\", \"initrd_path\": \"%s\", "
						       "\"boot_args\": \"\"}", F.kernel, F.data)), 0);
	assert_string_equal(c.initrd, F.data);
	assert_true(c.boot_configured);
	fc_config_exit(&c);
}

/* ---- network-interfaces ---- */

/* kestrel's vhost_user_socket: a NIC on a vhost-user back-end instead of a TAP device. */
static void test_nets_vhost_user(void **state)
{
	struct fc_config c;
	struct net_config nc;
	char err[256], *json;
	cJSON *top;

	(void)state;
	fc_config_init(&c);
	assert_int_equal(PUT(FC_NET, &c, "eth0", "{\"iface_id\": \"eth0\", \"vhost_user_socket\": \"/run/pmd.sock\", "
			     "\"guest_mac\": \"02:00:00:00:00:0a\"}"), 0);
	fc_net_config(&c.nets[0], &nc);
	assert_int_equal(nc.backend, NET_BACKEND_VHOST_USER);
	assert_string_equal(nc.vhost_socket, "/run/pmd.sock");
	assert_string_equal(nc.ifname, "");
	assert_true(nc.mac_set);
	assert_int_equal(nc.mac[5], 0x0a);
	/* Back to JSON: the socket, no host_dev_name. */
	top = cJSON_CreateObject();
	assert_true(fc_add_nets(top, &c));
	json = cJSON_PrintUnformatted(top);
	assert_non_null(strstr(json, "\"vhost_user_socket\":\"/run/pmd.sock\""));
	assert_null(strstr(json, "host_dev_name"));
	free(json);
	cJSON_Delete(top);

	assert_fails(PUT(FC_NET, &c, "eth1", "{\"iface_id\": \"eth1\", \"vhost_user_socket\": \"/run/pmd.sock\"}"),
		     "vhost_user_socket is already used by interface 'eth0'");
	assert_fails(PUT(FC_NET, &c, "eth1", "{\"iface_id\": \"eth1\", \"vhost_user_socket\": \"/s\", "
			 "\"host_dev_name\": \"tap1\"}"), "give one of them");
	assert_fails(PUT(FC_NET, &c, "eth1", "{\"iface_id\": \"eth1\", \"vhost_user_socket\": \"/s\", \"mtu\": 1400}"),
		     "not supported with vhost_user_socket");
	assert_fails(PUT(FC_NET, &c, "eth1", "{\"iface_id\": \"eth1\", \"vhost_user_socket\": \"\"}"),
		     "must not be empty");
	assert_fails(PUT(FC_NET, &c, "eth1", "{\"iface_id\": \"eth1\", \"vhost_user_socket\": 5}"),
		     "vhost_user_socket");
	{
		char body[300], longp[120];

		memset(longp, 'x', sizeof(longp) - 1);
		longp[0] = '/';
		longp[sizeof(longp) - 1] = '\0';
		snprintf(body, sizeof(body), "{\"iface_id\": \"eth1\", \"vhost_user_socket\": \"%s\"}", longp);
		assert_fails(PUT(FC_NET, &c, "eth1", body), "longer than 107 bytes");
	}
	assert_int_equal(c.nnets, 1);
	/* A TAP interface next to it still works, and a vhost-user one without a MAC gets none yet. */
	assert_int_equal(PUT(FC_NET, &c, "eth1", "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap1\"}"), 0);
	assert_int_equal(PUT(FC_NET, &c, "eth2", "{\"iface_id\": \"eth2\", \"vhost_user_socket\": \"/other.sock\"}"), 0);
	fc_net_config(&c.nets[2], &nc);
	assert_false(nc.mac_set);
	fc_config_exit(&c);
}

static void test_nets(void **state)
{
	struct fc_config c;
	struct fc_machine m;
	char err[256];

	fc_config_init(&c);
	assert_int_equal(PUT(FC_NET, &c,
			     "eth0", "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"mtu\": 1400}"), 0);
	assert_fails(PUT(FC_NET, &c, "eth1", "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap0\"}"),
		     "host_dev_name 'tap0' is already used by interface 'eth0'");
	assert_int_equal(PUT(FC_NET, &c, "eth1", "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap1\", "
			     "\"guest_mac\": \"02:00:00:00:00:01\"}"), 0);
	assert_fails(PUT(FC_NET, &c, "eth2", "{\"iface_id\": \"eth2\", \"host_dev_name\": \"tap2\", "
			 "\"guest_mac\": \"02:00:00:00:00:01\"}"), "guest_mac 02:00:00:00:00:01 is already used");
	assert_fails(PUT(FC_NET, &c, "eth2", "{\"iface_id\": \"eth2\", \"host_dev_name\": \"tap2\", "
			 "\"guest_mac\": \"01:00:00:00:00:01\"}"), "not a unicast MAC");
	assert_fails(PUT(FC_NET, &c, "eth2", "{\"iface_id\": \"eth2\", \"host_dev_name\": \"tap2\", "
			 "\"guest_mac\": \"zz:00:00:00:00:01\"}"), "not a unicast MAC");
	assert_fails(PUT(FC_NET, &c, "eth2", "{\"iface_id\": \"eth2\", \"host_dev_name\": \"tap,2\"}"),
		     "not a TAP device name");
	assert_fails(PUT(FC_NET, &c,
			 "eth2", "{\"iface_id\": \"eth2\", \"host_dev_name\": \"a-very-long-tapname\"}"), "not a TAP device name");
	assert_fails(PUT(FC_NET, &c, "eth2", "{\"iface_id\": \"eth2\"}"),
		     "missing field 'host_dev_name' in /network-interfaces");
	assert_fails(PUT(FC_NET, &c,
			 "eth2", "{\"iface_id\": \"eth2\", \"host_dev_name\": \"tap2\", \"mtu\": 10}"), "mtu");
	assert_fails(PUT(FC_NET, &c, "eth2", "{\"iface_id\": \"eth2\", \"host_dev_name\": \"tap2\", "
			 "\"rx_rate_limiter\": {}}"), "rx_rate_limiter");
	assert_fails(PUT(FC_NET, &c, "eth2", "{\"iface_id\": \"eth2\", \"host_dev_name\": \"tap2\", "
			 "\"allow_mmds_requests\": true}"), "unknown field 'allow_mmds_requests'");
	assert_fails(PUT(FC_NET, &c, "eth2", "{\"iface_id\": \"eth9\", \"host_dev_name\": \"tap2\"}"),
		     "does not match");
	/* Same id: replaced in place. */
	assert_int_equal(PUT(FC_NET, &c, "eth0", "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap5\"}"), 0);
	assert_int_equal(c.nnets, 2);
	assert_int_equal(PUT(FC_NET, &c, "eth2", "{\"iface_id\": \"eth2\", \"host_dev_name\": \"tap2\"}"), 0);
	assert_int_equal(PUT(FC_NET, &c, "eth3", "{\"iface_id\": \"eth3\", \"host_dev_name\": \"tap3\"}"), 0);
	assert_fails(PUT(FC_NET, &c, "eth4", "{\"iface_id\": \"eth4\", \"host_dev_name\": \"tap4\"}"),
		     "too many network interfaces");

	assert_int_equal(PUT(FC_BOOT_SOURCE, &c, NULL, J("{\"kernel_image_path\": \"%s\"}", F.kernel)), 0);
	assert_int_equal(fc_machine_build(&c, &m, err, sizeof(err)), 0);
	assert_int_equal(m.cfg.nnets, 4);
	assert_net(&m.cfg.nets[0], "eth0", "tap5", NULL);
	assert_net(&m.cfg.nets[1], "eth1", "tap1", "02:00:00:00:00:01");
	assert_net(&m.cfg.nets[3], "eth3", "tap3", NULL);
	fc_machine_exit(&m);
	fc_config_exit(&c);
}

/* ---- metrics, logger, serial, entropy ---- */

static void test_metrics_logger_serial(void **state)
{
	struct fc_config c;
	struct fc_machine m;
	char err[256];

	fc_config_init(&c);
	assert_int_equal(PUT(FC_METRICS, &c, NULL, "{\"metrics_path\": \"/tmp/metrics.fifo\"}"), 0);
	assert_fails(PUT(FC_METRICS, &c, NULL, "{}"), "missing field 'metrics_path' in /metrics");
	assert_fails(PUT(FC_METRICS, &c, NULL, "{\"metrics_path\": true}"), "must be a string");
	assert_string_equal(c.metrics_path, "/tmp/metrics.fifo");

	assert_int_equal(PUT(FC_LOGGER, &c, NULL, "{\"level\": \"debug\", \"show_level\": true, "
			     "\"show_log_origin\": false}"), 0);
	assert_int_equal(c.log_level, LOG_DEBUG);
	assert_int_equal(PUT(FC_LOGGER, &c, NULL, "{\"level\": \"Warning\"}"), 0);
	assert_int_equal(c.log_level, LOG_WARN);
	assert_fails(PUT(FC_LOGGER, &c, NULL, "{\"level\": \"Loud\"}"), "'Loud' is not one of");
	assert_fails(PUT(FC_LOGGER, &c, NULL, "{\"log_path\": \"/tmp/log\"}"), "log_path in /logger is not supported");
	assert_fails(PUT(FC_LOGGER, &c, NULL, "{\"module\": \"x\"}"), "module");
	assert_int_equal(c.log_level, LOG_WARN);

	assert_int_equal(PUT(FC_SERIAL, &c, NULL, "{\"serial_out_path\": \"/tmp/console.txt\"}"), 0);
	assert_string_equal(c.console, "file:/tmp/console.txt");
	assert_fails(PUT(FC_SERIAL, &c, NULL, "{\"serial_out_path\": 1}"), "must be a string");
	assert_false(c.entropy);
	assert_int_equal(PUT(FC_ENTROPY, &c, NULL, "{}"), 0);
	assert_fails(PUT(FC_ENTROPY, &c, NULL, "{\"rate_limiter\": {\"ops\": {}}}"), "rate limiters");
	assert_true(c.entropy);

	assert_int_equal(PUT(FC_BOOT_SOURCE, &c, NULL, J("{\"kernel_image_path\": \"%s\"}", F.kernel)), 0);
	assert_int_equal(fc_machine_build(&c, &m, err, sizeof(err)), 0);
	assert_string_equal(m.cfg.console, "file:/tmp/console.txt");
	assert_string_equal(m.cfg.metrics_path, "/tmp/metrics.fifo");
	assert_true(m.cfg.rng);
	fc_machine_exit(&m);
	fc_config_exit(&c);
}

/* ---- the config file ---- */

static void test_config_file(void **state)
{
	struct fc_config c, c2;
	struct fc_machine m;
	char err[256];
	const char *file = J("{\n"
			     "  \"boot-source\": {\"kernel_image_path\": \"%s\", \"boot_args\": \"console=ttyS0\"},\n"
			     "  \"drives\": [{\"drive_id\": \"rootfs\", \"path_on_host\": \"%s\", \"is_root_device\": true,"
			     " \"is_read_only\": false}],\n"
			     "  \"machine-config\": {\"vcpu_count\": 2, \"mem_size_mib\": 256, \"track_dirty_pages\": true},\n"
			     "  \"network-interfaces\": [{\"iface_id\": \"eth0\", \"guest_mac\": \"AA:FC:00:00:00:01\","
			     " \"host_dev_name\": \"tap0\"}],\n"
			     "  \"metrics\": {\"metrics_path\": \"/tmp/m.json\"},\n"
			     "  \"logger\": {\"level\": \"Info\"},\n"
			     "  \"kestrel\": {\"console\": \"file:/tmp/c.txt\"}\n"
			     "}\n", F.kernel, F.rootfs);
	char *json, *json2;

	assert_int_equal(fc_config_load(&c, file, strlen(file), err, sizeof(err)), 0);
	assert_int_equal(fc_machine_build(&c, &m, err, sizeof(err)), 0);
	assert_string_equal(m.cfg.cmdline, "console=ttyS0 root=/dev/vda rw");
	assert_int_equal(m.cfg.cpus, 2);
	assert_int_equal(m.cfg.mem_size, 256ull << 20);
	assert_true(m.cfg.track_dirty_pages);
	assert_net(&m.cfg.nets[0], "eth0", "tap0", "AA:FC:00:00:00:01");
	assert_string_equal(m.cfg.console, "file:/tmp/c.txt");
	assert_int_equal(c.log_level, LOG_INFO);
	fc_machine_exit(&m);

	/* GET /vm/config's output loads back to the same config. */
	json = fc_config_to_json(&c);
	assert_non_null(json);
	assert_int_equal(fc_config_load(&c2, json, strlen(json), err, sizeof(err)), 0);
	json2 = fc_config_to_json(&c2);
	assert_string_equal(json, json2);
	free(json);
	free(json2);
	fc_config_exit(&c2);
	fc_config_exit(&c);

	/* A minimal file: boot-source only. */
	file = J("{\"boot-source\": {\"kernel_image_path\": \"%s\"}}", F.kernel);
	assert_int_equal(fc_config_load(&c, file, strlen(file), err, sizeof(err)), 0);
	assert_int_equal(c.vcpus, 1);
	fc_config_exit(&c);

	/* Errors name the section. */
	assert_fails(fc_config_load(&c, "{}", 2, err, sizeof(err)), "missing field 'boot-source' in the config file");
	file = J("{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"vsock\": {}}", F.kernel);
	assert_fails(fc_config_load(&c, file, strlen(file), err, sizeof(err)), "'vsock' is not supported by kestrel");
	file = J("{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"bogus\": {}}", F.kernel);
	assert_fails(fc_config_load(&c, file, strlen(file), err, sizeof(err)), "unknown field 'bogus' in the config file");
	file = J("{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"drives\": {}}", F.kernel);
	assert_fails(fc_config_load(&c, file, strlen(file), err, sizeof(err)), "field 'drives' in the config file must be an array");
	file = J("{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"drives\": [{\"drive_id\": \"a\", "
		 "\"path_on_host\": \"%s\", \"is_root_device\": false}, {\"drive_id\": \"a\", \"path_on_host\": \"%s\", "
		 "\"is_root_device\": false}]}", F.kernel, F.data, F.data);
	assert_fails(fc_config_load(&c, file, strlen(file), err, sizeof(err)), "drives[1]: drive_id 'a' is used twice");
	file = J("{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"machine-config\": {\"vcpu_count\": 64, "
		 "\"mem_size_mib\": 128}}", F.kernel);
	assert_fails(fc_config_load(&c, file, strlen(file), err, sizeof(err)), "vcpu_count in machine-config");
	file = J("{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"network-interfaces\": [{\"iface_id\": \"e\"}]}",
		 F.kernel);
	assert_fails(fc_config_load(&c, file, strlen(file), err, sizeof(err)),
		     "missing field 'host_dev_name' in network-interfaces[0]");
	file = J("{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"kestrel\": {\"console\": \"tty\"}}", F.kernel);
	assert_fails(fc_config_load(&c, file, strlen(file), err, sizeof(err)), "console in kestrel");
	assert_fails(fc_config_load(&c, "[1]", 3, err, sizeof(err)), "the config file must be a JSON object");
}

/* ---- actions, VM state, snapshots ---- */

static void test_actions_and_vm_state(void **state)
{
	enum fc_action a;
	bool pause;
	char err[256];

#define S(x) x, strlen(x)
	assert_int_equal(fc_parse_action(S("{\"action_type\": \"InstanceStart\"}"), &a, err, sizeof(err)), 0);
	assert_int_equal(a, FC_ACTION_START);
	assert_int_equal(fc_parse_action(S("{\"action_type\": \"SendCtrlAltDel\"}"), &a, err, sizeof(err)), 0);
	assert_int_equal(a, FC_ACTION_CTRL_ALT_DEL);
	assert_int_equal(fc_parse_action(S("{\"action_type\": \"FlushMetrics\"}"), &a, err, sizeof(err)), 0);
	assert_int_equal(a, FC_ACTION_FLUSH_METRICS);
	assert_fails(fc_parse_action(S("{\"action_type\": \"Reboot\"}"), &a, err, sizeof(err)),
		     "'Reboot' is not one of InstanceStart, SendCtrlAltDel or FlushMetrics");
	assert_fails(fc_parse_action(S("{}"), &a, err, sizeof(err)), "missing field 'action_type' in /actions");
	assert_fails(fc_parse_action(S("{\"action_type\": 1}"), &a, err, sizeof(err)), "must be a string");
	assert_fails(fc_parse_action(S("{\"action_type\": \"InstanceStart\", \"x\": 1}"), &a, err, sizeof(err)),
		     "unknown field 'x' in /actions");
	assert_fails(fc_parse_action(S("{\"action_type\": null}"), &a, err, sizeof(err)), "must be a string");

	assert_int_equal(fc_parse_vm_state(S("{\"state\": \"Paused\"}"), &pause, err, sizeof(err)), 0);
	assert_true(pause);
	assert_int_equal(fc_parse_vm_state(S("{\"state\": \"Resumed\"}"), &pause, err, sizeof(err)), 0);
	assert_false(pause);
	assert_fails(fc_parse_vm_state(S("{\"state\": \"paused\"}"), &pause, err, sizeof(err)), "not one of Paused or Resumed");
	assert_fails(fc_parse_vm_state(S("{}"), &pause, err, sizeof(err)), "missing field 'state' in /vm");
}

static void test_snapshots(void **state)
{
	struct fc_snapshot_create sc;
	struct fc_snapshot_load sl;
	char err[256];

	assert_int_equal(fc_parse_snapshot_create(S("{\"snapshot_type\": \"Full\", \"snapshot_path\": \"./snap\", "
						    "\"mem_file_path\": \"./mem\", \"version\": \"1.0.0\"}"),
						  &sc, err, sizeof(err)), 0);
	assert_int_equal(sc.p.type, VMM_SNAPSHOT_FULL);
	assert_string_equal(sc.p.state_path, "./snap");
	assert_string_equal(sc.p.mem_path, "./mem");
	fc_snapshot_create_exit(&sc);
	assert_int_equal(fc_parse_snapshot_create(S("{\"snapshot_type\": \"Diff\", \"snapshot_path\": \"s\", "
						    "\"mem_file_path\": \"m\"}"), &sc, err, sizeof(err)), 0);
	assert_int_equal(sc.p.type, VMM_SNAPSHOT_DIFF);
	fc_snapshot_create_exit(&sc);
	assert_fails(fc_parse_snapshot_create(S("{\"snapshot_path\": \"s\"}"), &sc, err, sizeof(err)),
		     "missing field 'mem_file_path' in /snapshot/create");
	assert_fails(fc_parse_snapshot_create(S("{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
						"\"snapshot_type\": \"Incremental\"}"), &sc, err, sizeof(err)),
		     "not one of Full or Diff");
	assert_fails(fc_parse_snapshot_create(S("{\"snapshot_path\": \"s\", \"mem_file_path\": \"s\"}"), &sc, err,
					      sizeof(err)), "different files");

	assert_int_equal(fc_parse_snapshot_load(S("{\"snapshot_path\": \"./snap\", \"mem_file_path\": \"./mem\", "
						  "\"enable_diff_snapshots\": true, \"resume_vm\": true}"),
						&sl, err, sizeof(err)), 0);
	assert_string_equal(sl.p.state_path, "./snap");
	assert_string_equal(sl.p.mem_path, "./mem");
	assert_true(sl.p.resume);
	assert_true(sl.p.track_dirty_pages);
	assert_int_equal(sl.p.n_net_overrides, 0);
	fc_snapshot_load_exit(&sl);
	assert_int_equal(fc_parse_snapshot_load(S("{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": "
						  "\"File\", \"backend_path\": \"m\"}, \"network_overrides\": "
						  "[{\"iface_id\": \"eth0\", \"host_dev_name\": \"vmtap01\"}]}"),
						&sl, err, sizeof(err)), 0);
	assert_string_equal(sl.p.mem_path, "m");
	assert_false(sl.p.resume);
	assert_false(sl.p.track_dirty_pages);
	assert_int_equal(sl.p.n_net_overrides, 1);
	assert_string_equal(sl.p.net_overrides[0].iface_id, "eth0");
	assert_string_equal(sl.p.net_overrides[0].host_dev_name, "vmtap01");
	fc_snapshot_load_exit(&sl);

	assert_fails(fc_parse_snapshot_load(S("{\"snapshot_path\": \"s\"}"), &sl, err, sizeof(err)),
		     "missing field 'mem_backend'");
	assert_fails(fc_parse_snapshot_load(S("{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"mem_backend\": "
					      "{\"backend_type\": \"File\", \"backend_path\": \"m\"}}"), &sl, err, sizeof(err)),
		     "not both");
	assert_fails(fc_parse_snapshot_load(S("{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": "
					      "\"Uffd\", \"backend_path\": \"/tmp/uffd.sock\"}}"), &sl, err, sizeof(err)),
		     "Uffd in mem_backend is not supported");
	assert_fails(fc_parse_snapshot_load(S("{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_path\": \"m\"}}"),
					    &sl, err, sizeof(err)), "missing field 'backend_type' in mem_backend");
	assert_fails(fc_parse_snapshot_load(S("{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
					      "\"network_overrides\": [{\"iface_id\": \"eth0\"}]}"), &sl, err, sizeof(err)),
		     "missing field 'host_dev_name' in network_overrides[0]");
	assert_fails(fc_parse_snapshot_load(S("{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
					      "\"network_overrides\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"a\"}, "
					      "{\"iface_id\": \"eth0\", \"host_dev_name\": \"b\"}]}"), &sl, err, sizeof(err)),
		     "overridden twice");
	assert_fails(fc_parse_snapshot_load(S("{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
					      "\"network_overrides\": [{\"iface_id\": \"eth0\", \"host_dev_name\": "
					      "\"tap,mac=1\"}]}"), &sl, err, sizeof(err)),
		     "is not a valid TAP device name");
	assert_fails(fc_parse_snapshot_load(S("{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
					      "\"network_overrides\": [{\"iface_id\": \"eth0\", \"host_dev_name\": "
					      "\"a-name-longer-than-ifnamsiz\"}]}"), &sl, err, sizeof(err)),
		     "is not a valid TAP device name");
	assert_fails(fc_parse_snapshot_load(S("{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
					      "\"network_overrides\": [{\"iface_id\": \"e0\", \"host_dev_name\": \"a\"}, "
					      "{\"iface_id\": \"e1\", \"host_dev_name\": \"b\"}, {\"iface_id\": \"e2\", "
					      "\"host_dev_name\": \"c\"}, {\"iface_id\": \"e3\", \"host_dev_name\": \"d\"}, "
					      "{\"iface_id\": \"e4\", \"host_dev_name\": \"e\"}]}"), &sl, err, sizeof(err)),
		     "at most 4");
	assert_fails(fc_parse_snapshot_load(S("{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
					      "\"resume_vm\": \"yes\"}"), &sl, err, sizeof(err)),
		     "field 'resume_vm' in /snapshot/load must be a boolean");
	assert_fails(fc_parse_snapshot_load(S("{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
					      "\"vsock_override\": {\"uds_path\": \"x\"}}"), &sl, err, sizeof(err)), "vsock");
	assert_fails(fc_parse_snapshot_load(S("{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
					      "\"clock_realtime\": true}"), &sl, err, sizeof(err)), "clock_realtime");
#undef S
}

/* ---- strings: NUL escapes and UTF-8 ---- */

/* A boot-source body with `args` (raw JSON string contents) as boot_args. */
static const char *boot_body(const char *args)
{
	return J("{\"kernel_image_path\": \"%s\", \"boot_args\": \"%s\"}", F.kernel, args);
}

static void test_strings(void **state)
{
	static const char *const bad_utf8[] = {
		"a\xff" "b",               /* not a UTF-8 byte */
		"\xc0\xaf",                /* overlong '/' */
		"\xe0\x80\xaf",            /* overlong, 3 bytes */
		"\xed\xa0\x80",            /* a UTF-16 surrogate */
		"\xf4\x90\x80\x80",        /* above U+10FFFF */
		"x\xe2\x82",               /* cut short */
		"\x80",                    /* a lone continuation byte */
	};
	struct fc_config c, other;
	char err[256], *before, *json;
	const char *file;
	cJSON *back;

	fc_config_init(&c);
	assert_int_equal(PUT(FC_BOOT_SOURCE, &c, NULL, boot_body("console=ttyS0")), 0);
	before = fc_config_to_json(&c);

	/* \u0000 would cut the string short: refused wherever it is. */
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, boot_body("console=ttyS0\\u0000 init=/bin/sh")), "\\u0000");
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, J("{\"kernel_image_path\": \"%s\\u0000.bak\"}", F.kernel)),
		     "NUL characters are not allowed");
	assert_fails(PUT(FC_DRIVE, &c, "d", J("{\"drive_id\": \"d\", \"path_on_host\": \"%s\\u0000x\", "
					     "\"is_root_device\": false}", F.data)), "\\u0000");
	file = J("{\"boot-source\": {\"kernel_image_path\": \"%s\\u0000\"}}", F.kernel);
	assert_fails(fc_config_load(&other, file, strlen(file), err, sizeof(err)),
		     "config file: a string contains \\u0000");
	/* Invalid UTF-8 would be echoed back as invalid JSON: refused. */
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++)
		assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, boot_body(bad_utf8[i])), "invalid UTF-8");
	assert_fails(PUT(FC_NET, &c, "e", "{\"iface_id\": \"e\xff\", \"host_dev_name\": \"tap0\"}"),
		     "invalid UTF-8");
	json = fc_config_to_json(&c);
	assert_string_equal(json, before);
	free(json);

	/* What is fine: an escaped backslash before "u0000", other escapes, real UTF-8. */
	assert_int_equal(PUT(FC_BOOT_SOURCE, &c, NULL, boot_body("a=\\\\u0000 b=\\u00e9 c=\xc3\xa9 d=\xe2\x82\xac "
								 "e=\xf0\x9d\x84\x9e f=\\\"q\\\"")), 0);
	assert_string_equal(c.boot_args, "a=\\u0000 b=\xc3\xa9 c=\xc3\xa9 d=\xe2\x82\xac e=\xf0\x9d\x84\x9e f=\"q\"");
	json = fc_config_to_json(&c);
	back = cJSON_Parse(json);
	assert_non_null(back);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(back, "boot-source"), "boot_args")->valuestring,
			    c.boot_args);
	cJSON_Delete(back);
	free(json);
	/* A lone surrogate escape does not decode into invalid UTF-8. */
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, boot_body("\\ud800")), "malformed JSON");
	assert_fails(PUT(FC_BOOT_SOURCE, &c, NULL, boot_body("\\udc00x")), "malformed JSON");
	free(before);
	fc_config_exit(&c);
}

/* fc_put is one entry point over a table: a resource outside it is refused, not indexed. */
static void test_put_unknown_resource(void **state)
{
	struct fc_config c;
	char err[256];

	fc_config_init(&c);
	assert_fails(fc_put(&c, (enum fc_resource)(FC_SERIAL + 1), NULL, "{}", 2, err, sizeof(err)), "unknown resource");
	assert_fails(fc_put(&c, (enum fc_resource)-1, NULL, "{}", 2, err, sizeof(err)), "unknown resource");
	fc_config_exit(&c);
}

static void test_ids(void **state)
{
	assert_true(fc_id_valid("rootfs"));
	assert_true(fc_id_valid("eth_0-a"));
	assert_false(fc_id_valid(""));
	assert_false(fc_id_valid(NULL));
	assert_false(fc_id_valid("a/b"));
	assert_false(fc_id_valid("a b"));
	assert_false(fc_id_valid("..."));
	assert_true(fc_id_valid("0123456789012345678901234567890123456789012345678901234567890123"));
	assert_false(fc_id_valid("01234567890123456789012345678901234567890123456789012345678901234"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_getting_started),
		cmocka_unit_test(test_defaults_and_no_boot_source),
		cmocka_unit_test(test_drives),
		cmocka_unit_test(test_drive_errors),
		cmocka_unit_test(test_drive_path_with_comma),
		cmocka_unit_test(test_drive_rate_limiter),
		cmocka_unit_test(test_drive_patch),
		cmocka_unit_test(test_machine_config),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_put_unknown_resource),
		cmocka_unit_test(test_boot_source_and_json),
		cmocka_unit_test(test_nets),
		cmocka_unit_test(test_nets_vhost_user),
		cmocka_unit_test(test_metrics_logger_serial),
		cmocka_unit_test(test_config_file),
		cmocka_unit_test(test_actions_and_vm_state),
		cmocka_unit_test(test_snapshots),
		cmocka_unit_test(test_ids),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

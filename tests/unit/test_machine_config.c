/*
 * The snapshot's "machine" section (src/vmm/machine_config.c): the typed
 * device configuration saved field by field and loaded back, state files in
 * the old version-1 layout (disks and NICs as command-line strings), and
 * damaged sections.
 */
#include <arpa/inet.h>
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
#include "vmm/machine.h"

static char state_path[64];

static int setup(void **st)
{
	int fd;

	snprintf(state_path, sizeof(state_path), "/tmp/kestrel-test-mcfg-XXXXXX");
	fd = mkstemp(state_path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int teardown(void **st)
{
	unlink(state_path);
	return 0;
}

/* Write the writer's sections as a state file and load its machine section. */
static int save_and_load(struct snap_writer *w, struct machine_config *out, char *err, size_t errlen)
{
	struct snap_reader r;
	int e;

	assert_int_equal(snap_writer_save(w, state_path, err, errlen), 0);
	snap_writer_free(w);
	assert_int_equal(snap_reader_open(&r, state_path, err, errlen), 0);
	memset(out, 0, sizeof(*out));
	err[0] = '\0';
	e = machine_config_load(out, &r, err, errlen);
	snap_reader_free(&r);
	return e;
}

static void sample(struct machine_config *c)
{
	struct net_config *n;

	memset(c, 0, sizeof(*c));
	c->cpus = 2;
	c->mem_size = 512ull << 20;
	c->rng = true;
	c->transport_mmio = true;
	c->kernel = "/k/vmlinux";
	c->cmdline = "console=ttyS0 root=/dev/vda";
	c->ndisks = 2;
	blk_config_init(&c->disks[0]);
	strcpy(c->disks[0].path, "/img/a,with,commas.img");
	c->disks[0].read_only = true;
	c->disks[0].direct = true;
	c->disks[0].engine = BLOCK_ENGINE_SYNC;
	c->disks[0].num_queues = 4;
	strcpy(c->disks[0].serial, "SER-1");
	blk_config_init(&c->disks[1]);
	strcpy(c->disks[1].path, "/img/b.img");
	c->disks[1].rate_limit = (struct ratelimit_config){ .bandwidth = { 1 << 20, 4096, 250 },
							    .ops = { 100, 0, 1000 } };
	c->nnets = 2;
	n = &c->nets[0];
	strcpy(n->id, "net-a");
	n->backend = NET_BACKEND_TAP;
	strcpy(n->ifname, "tap,odd");
	n->mac_set = true;
	memcpy(n->mac, (uint8_t[]){ 0x06, 0, 0xac, 0x10, 0, 2 }, 6);
	n->mtu = 1400;
	n = &c->nets[1];
	n->model = NET_MODEL_E1000;
	n->backend = NET_BACKEND_USER;
	n->nr_hostfwd = 2;
	n->hostfwd[0].host_port = 2222;
	n->hostfwd[0].guest_port = 22;
	inet_pton(AF_INET, "127.0.0.1", &n->hostfwd[0].host_addr);
	n->hostfwd[1].udp = true;
	n->hostfwd[1].host_port = 5353;
	n->hostfwd[1].guest_port = 53;
	inet_pton(AF_INET, "10.0.2.15", &n->hostfwd[1].guest_addr);
}

static void test_roundtrip(void **st)
{
	struct machine_config in, out;
	struct snap_writer w;
	char err[256];

	sample(&in);
	snap_writer_init(&w);
	machine_config_save(&in, &w);
	assert_int_equal(save_and_load(&w, &out, err, sizeof(err)), 0);
	assert_int_equal(out.cpus, 2);
	assert_int_equal(out.mem_size, 512ull << 20);
	assert_true(out.rng);
	assert_true(out.transport_mmio);
	assert_false(out.hugepages);
	assert_string_equal(out.kernel, "/k/vmlinux");
	assert_string_equal(out.cmdline, "console=ttyS0 root=/dev/vda");
	assert_int_equal(out.ndisks, 2);
	assert_memory_equal(&out.disks[0], &in.disks[0], sizeof(in.disks[0]));
	assert_memory_equal(&out.disks[1], &in.disks[1], sizeof(in.disks[1]));
	assert_int_equal(out.disks[1].rate_limit.bandwidth.one_time_burst, 4096);
	assert_int_equal(out.disks[1].rate_limit.ops.refill_time_ms, 1000);
	assert_int_equal(out.nnets, 2);
	assert_memory_equal(&out.nets[0], &in.nets[0], sizeof(in.nets[0]));
	assert_memory_equal(&out.nets[1], &in.nets[1], sizeof(in.nets[1]));
	machine_config_release(&out);
}

/* A version-2 section (typed, before rate limiters): it loads, its disks unlimited. */
static void test_version2(void **st)
{
	struct machine_config out;
	struct snap_writer w;
	char err[256];

	snap_writer_init(&w);
	snap_begin(&w, "machine", 2);
	snap_put_u32(&w, 1);
	snap_put_u64(&w, 256ull << 20);
	snap_put_bool(&w, false);
	snap_put_bool(&w, false);
	snap_put_bool(&w, false);
	snap_put_bool(&w, false);
	snap_put_str(&w, "/k/vmlinux");
	snap_put_str(&w, "");
	snap_put_u32(&w, 1);
	snap_put_str(&w, "/img/c.img");
	snap_put_bool(&w, false);
	snap_put_bool(&w, false);
	snap_put_u32(&w, BLOCK_ENGINE_URING);
	snap_put_u32(&w, 1);
	snap_put_u16(&w, 128);
	snap_put_str(&w, "S2");
	snap_put_u32(&w, 0);
	snap_end(&w);
	assert_int_equal(save_and_load(&w, &out, err, sizeof(err)), 0);
	assert_int_equal(out.ndisks, 1);
	assert_string_equal(out.disks[0].path, "/img/c.img");
	assert_string_equal(out.disks[0].serial, "S2");
	assert_int_equal(out.disks[0].queue_size, 128);
	assert_false(ratelimit_config_enabled(&out.disks[0].rate_limit));
	machine_config_release(&out);
}

/* A version-1 section, as kestrel wrote it before the typed configuration. */
static void put_v1(struct snap_writer *w, const char *disk, const char *net, const char *net_id)
{
	snap_begin(w, "machine", 1);
	snap_put_u32(w, 1);
	snap_put_u64(w, 256ull << 20);
	snap_put_bool(w, false);
	snap_put_bool(w, false);
	snap_put_bool(w, true);
	snap_put_bool(w, false);
	snap_put_str(w, "/k/bzImage");
	snap_put_str(w, "console=hvc0");
	snap_put_u32(w, 1);
	snap_put_str(w, disk);
	snap_put_u32(w, 2);
	snap_put_str(w, net);
	snap_put_str(w, net_id);
	snap_put_str(w, "user,hostfwd=tcp::2222-:22,model=e1000");
	snap_put_str(w, NULL);
	snap_end(w);
}

static void test_old_version(void **st)
{
	struct machine_config out;
	struct net_config want;
	struct snap_writer w;
	uint8_t mac[6];
	char err[256];

	snap_writer_init(&w);
	put_v1(&w, "/img/root.img,ro,engine=sync,queues=2,serial=S1", "tap=tap0,mtu=1500", "eth0");
	assert_int_equal(save_and_load(&w, &out, err, sizeof(err)), 0);
	assert_int_equal(out.cpus, 1);
	assert_true(out.virtio_console);
	assert_string_equal(out.kernel, "/k/bzImage");
	assert_string_equal(out.cmdline, "console=hvc0");
	assert_int_equal(out.ndisks, 1);
	assert_string_equal(out.disks[0].path, "/img/root.img");
	assert_true(out.disks[0].read_only);
	assert_int_equal(out.disks[0].engine, BLOCK_ENGINE_SYNC);
	assert_int_equal(out.disks[0].num_queues, 2);
	assert_string_equal(out.disks[0].serial, "S1");
	assert_int_equal(out.nnets, 2);
	assert_string_equal(out.nets[0].id, "eth0");
	assert_int_equal(out.nets[0].model, NET_MODEL_VIRTIO);
	assert_int_equal(out.nets[0].backend, NET_BACKEND_TAP);
	assert_string_equal(out.nets[0].ifname, "tap0");
	assert_int_equal(out.nets[0].mtu, 1500);
	/* No mac= in the old string: the MAC the guest saw, derived from "tap=tap0". */
	assert_true(out.nets[0].mac_set);
	memset(&want, 0, sizeof(want));
	want.backend = NET_BACKEND_TAP;
	strcpy(want.ifname, "tap0");
	machine_net_default_mac(&want, mac);
	assert_memory_equal(out.nets[0].mac, mac, 6);
	assert_string_equal(out.nets[1].id, "");
	assert_int_equal(out.nets[1].model, NET_MODEL_E1000);
	assert_int_equal(out.nets[1].backend, NET_BACKEND_USER);
	assert_int_equal(out.nets[1].nr_hostfwd, 1);
	assert_int_equal(out.nets[1].hostfwd[0].host_port, 2222);
	assert_int_equal(out.nets[1].hostfwd[0].guest_port, 22);
	machine_config_release(&out);

	/* An old string that does not parse is refused with the parser's reason. */
	snap_writer_init(&w);
	put_v1(&w, "/img/root.img", "tap=tap0,model=token-ring", "eth0");
	assert_int_equal(save_and_load(&w, &out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown model"));
	assert_null(out.kernel);
	snap_writer_init(&w);
	put_v1(&w, "/img/root.img,engine=warp", "tap=tap0", "eth0");
	assert_int_equal(save_and_load(&w, &out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "version 1"));
}

/* A current-version section with one field changed by `poke` after a valid prefix. */
static int load_damaged(void (*poke)(struct machine_config *c), char *err, size_t errlen)
{
	struct machine_config in, out;
	struct snap_writer w;
	int e;

	sample(&in);
	poke(&in);
	snap_writer_init(&w);
	machine_config_save(&in, &w);
	e = save_and_load(&w, &out, err, errlen);
	if (!e)
		machine_config_release(&out);
	return e;
}

static void poke_engine(struct machine_config *c) { c->disks[1].engine = (enum block_engine)7; }
static void poke_queues(struct machine_config *c) { c->disks[0].num_queues = BLK_MAX_QUEUES + 1; }
static void poke_qsize(struct machine_config *c) { c->disks[0].queue_size = 100; }
static void poke_serial(struct machine_config *c) { strcpy(c->disks[0].serial, "a b"); }
static void poke_path(struct machine_config *c) { c->disks[1].path[0] = '\0'; }
static void poke_model(struct machine_config *c) { c->nets[0].model = (enum net_model)2; }
static void poke_backend(struct machine_config *c) { c->nets[1].backend = NET_BACKEND_NONE; }
static void poke_ifname(struct machine_config *c) { strcpy(c->nets[0].ifname, "a/b"); }
static void poke_tap_empty(struct machine_config *c) { c->nets[0].ifname[0] = '\0'; }
static void poke_mac(struct machine_config *c) { c->nets[0].mac[0] = 0x01; }
static void poke_fwd(struct machine_config *c) { c->nets[0].nr_hostfwd = 1; }   /* a TAP has none */
static void poke_id(struct machine_config *c) { strcpy(c->nets[0].id, "a\tb"); }
static void poke_cpus(struct machine_config *c) { c->cpus = 0; }
static void poke_limit(struct machine_config *c) { c->disks[1].rate_limit.ops.refill_time_ms = 0; }
static void poke_limit_big(struct machine_config *c) { c->disks[0].rate_limit.bandwidth.size = 1ull << 62; }

static void test_damaged(void **st)
{
	void (*const pokes[])(struct machine_config *) = {
		poke_engine, poke_queues, poke_qsize, poke_serial, poke_path, poke_model, poke_backend,
		poke_ifname, poke_tap_empty, poke_mac, poke_fwd, poke_id, poke_cpus, poke_limit, poke_limit_big,
	};
	struct machine_config out;
	struct snap_writer w;
	char err[256];

	for (size_t i = 0; i < sizeof(pokes) / sizeof(pokes[0]); i++) {
		assert_int_equal(load_damaged(pokes[i], err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "malformed"));
	}
	/* A version this kestrel does not know. */
	snap_writer_init(&w);
	snap_begin(&w, "machine", 4);
	snap_put_u32(&w, 1);
	snap_end(&w);
	assert_int_equal(save_and_load(&w, &out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "version 4"));
	/* Cut short. */
	snap_writer_init(&w);
	snap_begin(&w, "machine", 2);
	snap_put_u32(&w, 1);
	snap_put_u64(&w, 256ull << 20);
	snap_end(&w);
	assert_int_equal(save_and_load(&w, &out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "malformed"));
}

/* The --net syntax into a net_config. */
static void test_net_parse(void **st)
{
	struct net_config n;
	char err[256];

	assert_int_equal(machine_net_parse("tap=tap7,model=e1000,mac=06:00:00:00:00:09", &n, err, sizeof(err)), 0);
	assert_int_equal(n.model, NET_MODEL_E1000);
	assert_int_equal(n.backend, NET_BACKEND_TAP);
	assert_string_equal(n.ifname, "tap7");
	assert_true(n.mac_set);
	assert_int_equal(n.mac[5], 9);
	assert_int_equal(machine_net_parse("model=virtio,user,hostfwd=udp::53-:53", &n, err, sizeof(err)), 0);
	assert_int_equal(n.model, NET_MODEL_VIRTIO);
	assert_int_equal(n.backend, NET_BACKEND_USER);
	assert_int_equal(n.nr_hostfwd, 1);
	assert_true(n.hostfwd[0].udp);

	assert_int_equal(machine_net_parse("tap=t,model=", &n, err, sizeof(err)), -EINVAL);
	assert_int_equal(machine_net_parse("tap=t,model=e1000x", &n, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown model 'e1000x'"));
	assert_int_equal(machine_net_parse("model=e1000", &n, err, sizeof(err)), -EINVAL);
	assert_int_equal(machine_net_parse("tap=", &n, err, sizeof(err)), -EINVAL);
	assert_int_equal(machine_net_parse("tap=a-name-longer-than-15", &n, err, sizeof(err)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_old_version),
		cmocka_unit_test(test_version2),
		cmocka_unit_test(test_damaged),
		cmocka_unit_test(test_net_parse),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

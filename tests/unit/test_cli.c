#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cli/cli.h"

static void test_sizes(void **state)
{
	uint64_t v;

	assert_int_equal(cli_parse_size("512M", &v), 0);
	assert_int_equal(v, 512ull << 20);
	assert_int_equal(cli_parse_size("2G", &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(cli_parse_size("256", &v), 0);
	assert_int_equal(v, 256ull << 20);
	assert_int_equal(cli_parse_size("65536K", &v), 0);
	assert_int_equal(v, 64ull << 20);
	assert_int_equal(cli_parse_size("1GiB", &v), 0);
	assert_int_equal(v, 1ull << 30);
	assert_int_equal(cli_parse_size("", &v), -EINVAL);
	assert_int_equal(cli_parse_size("-1", &v), -EINVAL);
	assert_int_equal(cli_parse_size("12X", &v), -EINVAL);
	assert_int_equal(cli_parse_size("M", &v), -EINVAL);
	assert_int_equal(cli_parse_size("1G1", &v), -EINVAL);
	assert_int_equal(cli_parse_size("99999999999999999999G", &v), -EINVAL);
	assert_int_equal(cli_parse_size("17179869184G", &v), -ERANGE);
}

static int parse(struct machine_config *cfg, char *err, const char **args)
{
	char *argv[32];
	int argc = 0;

	argv[argc++] = (char *)"run";
	while (*args)
		argv[argc++] = (char *)*args++;
	argv[argc] = NULL;
	return cli_parse_run(argc, argv, cfg, err, 256);
}

static void test_run_options(void **state)
{
	struct machine_config cfg;
	char err[256];
	const char *ok[] = { "--kernel", "k", "--initrd", "i", "--cmdline", "console=ttyS0", "--cpus", "2",
			     "--memory", "512M", "--console", "none", "--stats", NULL };

	assert_int_equal(parse(&cfg, err, ok), 0);
	assert_string_equal(cfg.kernel, "k");
	assert_string_equal(cfg.initrd, "i");
	assert_string_equal(cfg.cmdline, "console=ttyS0");
	assert_int_equal(cfg.cpus, 2);
	assert_int_equal(cfg.mem_size, 512ull << 20);
	assert_string_equal(cfg.console, "none");
	assert_true(cfg.stats);
}

static void test_run_defaults(void **state)
{
	struct machine_config cfg;
	char err[256];
	const char *args[] = { "--kernel", "k", NULL };

	assert_int_equal(parse(&cfg, err, args), 0);
	assert_int_equal(cfg.cpus, 1);
	assert_int_equal(cfg.mem_size, 256ull << 20);
	assert_string_equal(cfg.console, "stdio");
	assert_null(cfg.initrd);
}

static void test_run_bad_input(void **state)
{
	struct machine_config cfg;
	char err[256];
	const char *no_kernel[] = { "--cpus", "2", NULL };
	const char *cpus0[] = { "--kernel", "k", "--cpus", "0", NULL };
	const char *cpus33[] = { "--kernel", "k", "--cpus", "33", NULL };
	const char *cpusx[] = { "--kernel", "k", "--cpus", "2x", NULL };
	const char *mem_small[] = { "--kernel", "k", "--memory", "1M", NULL };
	const char *mem_bad[] = { "--kernel", "k", "--memory", "lots", NULL };
	const char *unknown[] = { "--kernel", "k", "--frobnicate", NULL };
	const char *extra[] = { "--kernel", "k", "stray", NULL };
	const char *noarg[] = { "--kernel", NULL };

	assert_int_equal(parse(&cfg, err, no_kernel), CLI_EXIT_USAGE);
	assert_non_null(strstr(err, "--kernel is required"));
	assert_int_equal(parse(&cfg, err, cpus0), CLI_EXIT_USAGE);
	assert_non_null(strstr(err, "--cpus"));
	assert_int_equal(parse(&cfg, err, cpus33), CLI_EXIT_USAGE);
	assert_int_equal(parse(&cfg, err, cpusx), CLI_EXIT_USAGE);
	assert_int_equal(parse(&cfg, err, mem_small), CLI_EXIT_USAGE);
	assert_non_null(strstr(err, "--memory"));
	assert_int_equal(parse(&cfg, err, mem_bad), CLI_EXIT_USAGE);
	assert_int_equal(parse(&cfg, err, unknown), CLI_EXIT_USAGE);
	assert_non_null(strstr(err, "frobnicate"));
	assert_int_equal(parse(&cfg, err, extra), CLI_EXIT_USAGE);
	assert_non_null(strstr(err, "stray"));
	assert_int_equal(parse(&cfg, err, noarg), CLI_EXIT_USAGE);
}

/* --disk and --net are typed once, here at the edge. */
static void test_run_devices(void **state)
{
	struct machine_config cfg;
	char err[256];
	const char *args[] = { "--kernel", "k", "--disk", "/img/a.img,ro,engine=sync,queues=2,serial=S9",
			       "--disk", "/img/b.img", "--net", "tap=tap3,model=e1000,mac=06:00:00:00:00:07",
			       "--net", "user,hostfwd=tcp::2222-:22", NULL };

	assert_int_equal(parse(&cfg, err, args), 0);
	assert_int_equal(cfg.ndisks, 2);
	assert_string_equal(cfg.disks[0].path, "/img/a.img");
	assert_true(cfg.disks[0].read_only);
	assert_int_equal(cfg.disks[0].engine, BLOCK_ENGINE_SYNC);
	assert_int_equal(cfg.disks[0].num_queues, 2);
	assert_string_equal(cfg.disks[0].serial, "S9");
	assert_string_equal(cfg.disks[1].path, "/img/b.img");
	assert_false(cfg.disks[1].read_only);
	assert_int_equal(cfg.disks[1].engine, BLOCK_ENGINE_URING);
	assert_int_equal(cfg.nnets, 2);
	assert_int_equal(cfg.nets[0].model, NET_MODEL_E1000);
	assert_int_equal(cfg.nets[0].backend, NET_BACKEND_TAP);
	assert_string_equal(cfg.nets[0].ifname, "tap3");
	assert_int_equal(cfg.nets[0].mac[5], 7);
	assert_string_equal(cfg.nets[0].id, "");
	assert_int_equal(cfg.nets[1].model, NET_MODEL_VIRTIO);
	assert_int_equal(cfg.nets[1].backend, NET_BACKEND_USER);
	assert_int_equal(cfg.nets[1].nr_hostfwd, 1);
	assert_int_equal(cfg.nets[1].hostfwd[0].host_port, 2222);
}

/* A bad --disk or --net is a usage error now, before any VM is built. */
static void test_run_bad_devices(void **state)
{
	struct machine_config cfg;
	char err[256];
	const char *no_path[] = { "--kernel", "k", "--disk", ",ro", NULL };
	const char *bad_opt[] = { "--kernel", "k", "--disk", "a.img,fast", NULL };
	const char *bad_queues[] = { "--kernel", "k", "--disk", "a.img,queues=99", NULL };
	const char *bad_backend[] = { "--kernel", "k", "--net", "bridge=br0", NULL };
	const char *bad_model[] = { "--kernel", "k", "--net", "user,model=rtl8139", NULL };
	const char *bad_mac[] = { "--kernel", "k", "--net", "tap=t0,mac=01:00:00:00:00:01", NULL };

	assert_int_equal(parse(&cfg, err, no_path), CLI_EXIT_USAGE);
	assert_non_null(strstr(err, "missing image path"));
	assert_int_equal(parse(&cfg, err, bad_opt), CLI_EXIT_USAGE);
	assert_non_null(strstr(err, "unknown option 'fast'"));
	assert_int_equal(parse(&cfg, err, bad_queues), CLI_EXIT_USAGE);
	assert_non_null(strstr(err, "queues"));
	assert_int_equal(parse(&cfg, err, bad_backend), CLI_EXIT_USAGE);
	assert_non_null(strstr(err, "expected tap=NAME or user"));
	assert_int_equal(parse(&cfg, err, bad_model), CLI_EXIT_USAGE);
	assert_non_null(strstr(err, "unknown model 'rtl8139'"));
	assert_int_equal(parse(&cfg, err, bad_mac), CLI_EXIT_USAGE);
	assert_non_null(strstr(err, "bad mac"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_run_options),
		cmocka_unit_test(test_run_defaults),
		cmocka_unit_test(test_run_bad_input),
		cmocka_unit_test(test_run_devices),
		cmocka_unit_test(test_run_bad_devices),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

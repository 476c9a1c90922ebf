#include "cli/cli.h"
#include "api/api.h"
#include "api/api_client.h"
#include "api/cjson_shim.h"
#include "api/fc.h"
#include "snapshot/memfile.h"
#include "core/vm.h"
#include "util/file.h"
#include "util/log.h"
#include "vmm/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

static const char usage_text[] =
	"Usage: kestrel run --kernel PATH [options]\n"
	"       kestrel --api-sock PATH [--id ID] [--config-file FILE] [-v]\n"
	"       kestrel --config-file FILE [-v]\n"
	"       kestrel pause|resume|status --api-sock PATH\n"
	"       kestrel snapshot --api-sock PATH --snapshot-path FILE --mem-path FILE [--diff]\n"
	"       kestrel snapshot verify --snapshot-path FILE --mem-path FILE\n"
	"       kestrel --help | --version\n"
	"\n"
	"Boot a Linux kernel (bzImage, or ELF vmlinux with a PVH note) or a freestanding\n"
	"PVH/ELF64 guest in a KVM virtual machine.\n"
	"\n"
	"Options for 'run':\n"
	"  --kernel PATH        kernel image (required)\n"
	"  --initrd PATH        initial ramdisk\n"
	"  --cmdline STR        kernel command line\n"
	"  --cpus N             number of vCPUs, 1..32 (default 1)\n"
	"  --memory SIZE        guest RAM, e.g. 512M or 2G; a plain number is MiB (default 256M)\n"
	"  --console SPEC       the console: stdio (default, on COM1), file:PATH, none, or\n"
	"                       virtio (stdio on a virtio-console, hvc0 in the guest);\n"
	"                       file:PATH may be a FIFO (written without blocking)\n"
	"  --console-limit SIZE most guest output written to a file: console (default\n"
	"                       64M, then one marker line; 0: no limit)\n"
	"  --disk PATH[,ro][,direct][,engine=uring|sync][,queues=N][,serial=S][,bw=BYTES][,iops=N]\n"
	"                       a virtio-blk disk backed by a raw image (repeatable);\n"
	"                       bw/iops: per-second rate limits (requests wait, none dropped)\n"
	"  --disk vhost-user=SOCKET\n"
	"                       a virtio-blk disk served by a vhost-user back-end listening\n"
	"                       on SOCKET, e.g. qemu-storage-daemon (docs/vhost-user.md)\n"
	"  --net tap=NAME[,mac=M] | user[,hostfwd=tcp::HOSTPORT-:GUESTPORT][,mac=M]\n"
	"                       a virtio-net NIC on a TAP device or user-mode networking\n"
	"                       (libslirp: 10.0.2.15 by DHCP, host at 10.0.2.2) (repeatable);\n"
	"                       add ,model=e1000 for an emulated Intel 82540EM instead\n"
	"  --net vhost-user=SOCKET[,mac=M]\n"
	"                       a virtio-net NIC served by a vhost-user back-end listening\n"
	"                       on SOCKET, e.g. DPDK testpmd (docs/vhost-user.md)\n"
	"  --rng                a virtio-rng device fed from getrandom()\n"
	"  --transport pci|mmio virtio transport (default pci; mmio needs a guest kernel\n"
	"                       with virtio_mmio.device= support, which kestrel passes)\n"
	"  --pin vcpu=LIST[,io=LIST]  pin vCPU threads and I/O threads to host CPUs,\n"
	"                       LIST like 0-1 or 0,2 (round robin)\n"
	"  --hugepages          back guest RAM with hugetlbfs pages (default: THP), all\n"
	"                       reserved at start from /proc/sys/vm/nr_hugepages\n"
	"  --mem-overcommit     accept --memory beyond the host's memory plus swap\n"
	"  --stats              print exits per vCPU and device accesses when the VM ends\n"
	"  --metrics PATH       write counters as one JSON object per line to PATH, every\n"
	"                       --metrics-interval SECS (default 60) and at exit\n"
	"  --ignore-host-check  boot a stock kernel even when /dev/kvm has no hardware\n"
	"                       virtualization behind it (it will crawl; see HOST notes)\n"
	"  --kvm PATH           KVM device (default /dev/kvm)\n"
	"  -v, --verbose        more log output (repeat for debug)\n"
	"\n"
	"\n"
	"Control API (Firecracker's API and configuration layout; see docs/api.md):\n"
	"  --api-sock PATH      serve the HTTP API on the Unix socket PATH; without\n"
	"                       --config-file the VM is configured and started through it\n"
	"  --config-file FILE   boot the VM described by FILE (Firecracker's JSON layout)\n"
	"  --id ID              the instance id GET / reports (default anonymous-instance)\n"
	"  pause, resume        pause or resume the VM served on --api-sock\n"
	"  status               print the instance information (GET /) as JSON\n"
	"  snapshot             write a snapshot of the paused VM: --snapshot-path FILE\n"
	"                       (device state), --mem-path FILE (guest RAM), --diff (only\n"
	"                       the pages dirtied since the last one; needs\n"
	"                       track_dirty_pages)\n"
	"  snapshot verify      check that a state file and a memory file belong together\n"
	"                       and that the memory file holds what it was written with\n"
	"                       (reads all of it); exit status 0 if so, 1 if not\n"
	"\n"
	"Console: on a terminal, input goes to the guest; Ctrl-A x quits, Ctrl-A Ctrl-A\n"
	"sends Ctrl-A.\n"
	"Exit status: 0 when the guest resets (reboot -f, any reboot= type, a triple\n"
	"fault) or powers off, the byte a test guest wrote to the debug-exit port 0x501,\n"
	"1 on errors, 2 on usage errors, 128+N after signal N.\n";

int cli_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 20;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0': shift = 20; break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: return -EINVAL;
	}
	if (*end == 'i' || *end == 'B')
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end)
		return -EINVAL;
	if (v > (~0ull >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

static int parse_uint(const char *s, unsigned *out)
{
	char *end;
	unsigned long v;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > 0xffffffffu)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_CPUS, OPT_MEMORY, OPT_CONSOLE, OPT_HUGEPAGES,
       OPT_STATS, OPT_IGNORE_HOST, OPT_KVM, OPT_RNG, OPT_TRANSPORT, OPT_PIN, OPT_DISK, OPT_NET, OPT_METRICS, OPT_METRICS_INTERVAL,
       OPT_MEM_OVERCOMMIT, OPT_CONSOLE_LIMIT };

/* "0-3,6" -> cpus[]; 0 or -EINVAL. */
int cli_parse_cpulist(const char *s, int *cpus, unsigned max, unsigned *n)
{
	const char *p = s;

	*n = 0;
	while (*p) {
		char *end;
		unsigned long a, b;

		if (*p < '0' || *p > '9')
			return -EINVAL;
		a = strtoul(p, &end, 10);
		b = a;
		if (*end == '-') {
			if (end[1] < '0' || end[1] > '9')
				return -EINVAL;
			b = strtoul(end + 1, &end, 10);
		}
		if (b < a || b > 4095)
			return -EINVAL;
		for (unsigned long c = a; c <= b; c++) {
			if (*n == max)
				return -EINVAL;
			cpus[(*n)++] = (int)c;
		}
		if (*end == ',' && end[1])
			end++;
		else if (*end)
			return -EINVAL;
		p = end;
	}
	return *n ? 0 : -EINVAL;
}

/* "vcpu=0-1,io=2": the lists run until the next "key=". */
static int cli_parse_pin(const char *arg, struct machine_config *cfg)
{
	char buf[256], *key, *next;

	if (strlen(arg) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, arg);
	key = buf;
	while (key && *key) {
		char *eq = strchr(key, '='), *val;

		if (!eq)
			return -EINVAL;
		*eq = '\0';
		val = eq + 1;
		/* The value ends where the next key starts: ",io=" or ",vcpu=". */
		next = strstr(val, ",io=");
		if (!next)
			next = strstr(val, ",vcpu=");
		if (next)
			*next++ = '\0';
		if (!strcmp(key, "vcpu")) {
			if (cli_parse_cpulist(val, cfg->vcpu_cpus, 64, &cfg->n_vcpu_cpus))
				return -EINVAL;
		} else if (!strcmp(key, "io")) {
			if (cli_parse_cpulist(val, cfg->io_cpus, 64, &cfg->n_io_cpus))
				return -EINVAL;
		} else {
			return -EINVAL;
		}
		key = next;
	}
	return 0;
}

int cli_parse_run(int argc, char **argv, struct machine_config *cfg, char *err, size_t errlen)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "initrd", required_argument, NULL, OPT_INITRD },
		{ "cmdline", required_argument, NULL, OPT_CMDLINE },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "memory", required_argument, NULL, OPT_MEMORY },
		{ "console", required_argument, NULL, OPT_CONSOLE },
		{ "hugepages", no_argument, NULL, OPT_HUGEPAGES },
		{ "mem-overcommit", no_argument, NULL, OPT_MEM_OVERCOMMIT },
		{ "console-limit", required_argument, NULL, OPT_CONSOLE_LIMIT },
		{ "stats", no_argument, NULL, OPT_STATS },
		{ "ignore-host-check", no_argument, NULL, OPT_IGNORE_HOST },
		{ "kvm", required_argument, NULL, OPT_KVM },
		{ "rng", no_argument, NULL, OPT_RNG },
		{ "transport", required_argument, NULL, OPT_TRANSPORT },
		{ "pin", required_argument, NULL, OPT_PIN },
		{ "disk", required_argument, NULL, OPT_DISK },
		{ "net", required_argument, NULL, OPT_NET },
		{ "metrics", required_argument, NULL, OPT_METRICS },
		{ "metrics-interval", required_argument, NULL, OPT_METRICS_INTERVAL },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int verbose = 0, c;

	memset(cfg, 0, sizeof(*cfg));
	cfg->cpus = MACHINE_DEFAULT_CPUS;
	cfg->mem_size = MACHINE_DEFAULT_MEM;
	cfg->console = "stdio";
	cfg->kvm_path = "/dev/kvm";
	cfg->cmdline = "";
	cfg->metrics_interval = 60;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_KERNEL: cfg->kernel = optarg; break;
		case OPT_INITRD: cfg->initrd = optarg; break;
		case OPT_CMDLINE: cfg->cmdline = optarg; break;
		case OPT_CPUS:
			if (parse_uint(optarg, &cfg->cpus) || cfg->cpus == 0 || cfg->cpus > VM_MAX_VCPUS) {
				snprintf(err, errlen, "--cpus: '%s' is not a number from 1 to %d", optarg, VM_MAX_VCPUS);
				return CLI_EXIT_USAGE;
			}
			break;
		case OPT_MEMORY:
			if (cli_parse_size(optarg, &cfg->mem_size) || cfg->mem_size < MACHINE_MIN_MEM ||
			    cfg->mem_size > (1ull << 40)) {
				snprintf(err, errlen, "--memory: '%s' is not a size from 8M to 1024G", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case OPT_CONSOLE:
			if (!strcmp(optarg, "virtio")) {
				cfg->virtio_console = true;
				cfg->console = "stdio";
			} else {
				cfg->console = optarg;
			}
			break;
		case OPT_RNG: cfg->rng = true; break;
		case OPT_TRANSPORT:
			if (strcmp(optarg, "pci") && strcmp(optarg, "mmio")) {
				snprintf(err, errlen, "--transport: '%s' is not pci or mmio", optarg);
				return CLI_EXIT_USAGE;
			}
			cfg->transport_mmio = !strcmp(optarg, "mmio");
			break;
		case OPT_DISK:
			if (cfg->ndisks == MACHINE_MAX_DISKS) {
				snprintf(err, errlen, "--disk: at most %d disks", MACHINE_MAX_DISKS);
				return CLI_EXIT_USAGE;
			}
			if (blk_parse_spec(optarg, &cfg->disks[cfg->ndisks], err, errlen) < 0)
				return CLI_EXIT_USAGE;
			cfg->ndisks++;
			break;
		case OPT_NET:
			if (cfg->nnets == MACHINE_MAX_NETS) {
				snprintf(err, errlen, "--net: at most %d network devices", MACHINE_MAX_NETS);
				return CLI_EXIT_USAGE;
			}
			if (machine_net_parse(optarg, &cfg->nets[cfg->nnets], err, errlen) < 0)
				return CLI_EXIT_USAGE;
			cfg->nnets++;
			break;
		case OPT_METRICS: cfg->metrics_path = optarg; break;
		case OPT_METRICS_INTERVAL:
			if (parse_uint(optarg, &cfg->metrics_interval) || cfg->metrics_interval == 0 ||
			    cfg->metrics_interval > 86400) {
				snprintf(err, errlen, "--metrics-interval: '%s' is not 1..86400 seconds", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case OPT_PIN:
			if (cli_parse_pin(optarg, cfg)) {
				snprintf(err, errlen, "--pin: '%s' is not like vcpu=0-1,io=2", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case OPT_HUGEPAGES: cfg->hugepages = true; break;
		case OPT_MEM_OVERCOMMIT: cfg->mem_overcommit = true; break;
		case OPT_CONSOLE_LIMIT:
			if (cli_parse_size(optarg, &cfg->console_limit)) {
				snprintf(err, errlen, "--console-limit: '%s' is not a size (e.g. 64M; 0 for none)",
					 optarg);
				return CLI_EXIT_USAGE;
			}
			if (!cfg->console_limit)
				cfg->console_limit = UINT64_MAX;
			break;
		case OPT_STATS: cfg->stats = true; break;
		case OPT_IGNORE_HOST: cfg->ignore_host_check = true; break;
		case OPT_KVM: cfg->kvm_path = optarg; break;
		case 'v': verbose++; break;
		case 'h': return -1;
		default:
			if (optopt)
				snprintf(err, errlen, "option '-%c' is unknown or lacks its argument", optopt);
			else
				snprintf(err, errlen, "option '%s' is unknown or lacks its argument", argv[optind - 1]);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	if (!cfg->kernel) {
		snprintf(err, errlen, "--kernel is required");
		return CLI_EXIT_USAGE;
	}
	log_set_level(verbose >= 2 ? LOG_DEBUG : verbose == 1 ? LOG_INFO : LOG_WARN);
	return 0;
}

/*
 * kestrel run: the same VMM as the API's (one loop, one owner of the life
 * cycle), started at once with the command line's machine.
 */
static int cli_run(const struct machine_config *cfg)
{
	char err[512] = "";
	struct vmm *v = vmm_new();
	int r;

	if (!v) {
		fprintf(stderr, "kestrel: error: out of memory\n");
		return 1;
	}
	if (vmm_start(v, cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "kestrel: error: %s\n", err);
		vmm_free(v);
		return 1;
	}
	r = vmm_run(v);
	vmm_free(v);
	return r;
}

/* ---- kestrel --api-sock / --config-file: a VMM driven by the API or a file ---- */

/* Read a whole config file (at most FC_BODY_MAX bytes) into a malloc'd buffer. */
static int cli_read_config(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	ssize_t r;
	int fd, e;

	fd = file_open(path, O_RDONLY, 0, FILE_REG, "--config-file", &st, err, errlen);
	if (fd < 0)
		return fd;
	if (st.st_size > FC_BODY_MAX) {
		snprintf(err, errlen, "--config-file '%s': larger than %d bytes", path, FC_BODY_MAX);
		e = -EFBIG;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		e = -ENOMEM;
		goto out;
	}
	while (n < (size_t)st.st_size && (r = read(fd, buf + n, (size_t)st.st_size - n)) > 0)
		n += (size_t)r;
	if (n != (size_t)st.st_size) {
		snprintf(err, errlen, "--config-file '%s': short read", path);
		e = -EIO;
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
	e = 0;
out:
	free(buf);
	close(fd);
	return e;
}

enum { OPT_API_SOCK = 512, OPT_CONFIG_FILE, OPT_ID, OPT_SNAPSHOT_PATH, OPT_MEM_PATH, OPT_DIFF };

static int cli_usage_error(const char *fmt, const char *arg)
{
	fputs("kestrel: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs(" (try 'kestrel --help')\n", stderr);
	return CLI_EXIT_USAGE;
}

static int cli_bad_option(char **argv)
{
	if (optopt && optopt < 256)
		return cli_usage_error("option '-%c' is unknown or lacks its argument", (char[2]){ (char)optopt, 0 });
	return cli_usage_error("option '%s' is unknown or lacks its argument", argv[optind - 1]);
}

static int cli_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ "config-file", required_argument, NULL, OPT_CONFIG_FILE },
		{ "id", required_argument, NULL, OPT_ID },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = NULL, *config = NULL, *id = NULL;
	struct fc_config fc;
	struct fc_machine machine = { 0 };
	struct api *a = NULL;
	struct vmm *v = NULL;
	char err[512] = "", *text = NULL;
	size_t len = 0;
	int verbose = 0, c, r = 1;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		switch (c) {
		case OPT_API_SOCK: sock = optarg; break;
		case OPT_CONFIG_FILE: config = optarg; break;
		case OPT_ID: id = optarg; break;
		case 'v': verbose++; break;
		default: return cli_bad_option(argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (!sock && !config)
		return cli_usage_error("%s--api-sock or --config-file is required", "");
	if (id && !fc_id_valid(id))
		return cli_usage_error("--id: '%s' is not 1 to 64 letters, digits, '_' or '-'", id);
	log_set_level(verbose >= 2 ? LOG_DEBUG : verbose == 1 ? LOG_INFO : LOG_WARN);

	fc_config_init(&fc);
	if (config) {
		if (cjson_shim_load(err, sizeof(err)) || cli_read_config(config, &text, &len, err, sizeof(err)) ||
		    fc_config_load(&fc, text, len, err, sizeof(err)))
			goto out;
	}
	v = vmm_new();
	if (!v) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	if (sock && !(a = api_new(v, sock, id, err, sizeof(err))))
		goto out;
	/* This is the VMM thread: vmm_start may be called directly. */
	if (config && (a ? api_boot(a, &fc, err, sizeof(err)) : api_vm_start(v, &fc, &machine, err, sizeof(err))))
		goto out;
	r = vmm_run(v);
	err[0] = '\0';
out:
	if (err[0])
		fprintf(stderr, "kestrel: %s\n", err);
	/* The order matters: no request may run once the VMM is gone, and the
	 * VM's strings (in the api or machine) must outlive it. */
	api_stop(a);
	vmm_free(v);
	api_free(a);
	fc_machine_exit(&machine);
	fc_config_exit(&fc);
	free(text);
	return r;
}

/* ---- kestrel pause|resume|snapshot|status: one API request ---- */

static int cli_ctl(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ "snapshot-path", required_argument, NULL, OPT_SNAPSHOT_PATH },
		{ "mem-path", required_argument, NULL, OPT_MEM_PATH },
		{ "diff", no_argument, NULL, OPT_DIFF },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd = argv[0], *sock = NULL, *snap = NULL, *mem = NULL, *method, *path;
	bool snapshot = !strcmp(cmd, "snapshot"), diff = false;
	char err[512], *body = NULL, *resp = NULL;
	cJSON *o = NULL, *reply;
	long status;
	int c, r = 1;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case OPT_API_SOCK: sock = optarg; break;
		case OPT_SNAPSHOT_PATH: snap = optarg; break;
		case OPT_MEM_PATH: mem = optarg; break;
		case OPT_DIFF: diff = true; break;
		default: return cli_bad_option(argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (!sock)
		return cli_usage_error("%s: --api-sock is required", cmd);
	if (!snapshot && (snap || mem || diff))
		return cli_usage_error("%s: --snapshot-path, --mem-path and --diff are for 'snapshot'", cmd);
	if (snapshot && (!snap || !mem))
		return cli_usage_error("%s: --snapshot-path and --mem-path are required", cmd);

	if (cjson_shim_load(err, sizeof(err))) {
		fprintf(stderr, "kestrel: %s\n", err);
		return 1;
	}
	if (!strcmp(cmd, "status")) {
		method = "GET";
		path = "/";
	} else if (snapshot) {
		method = "PUT";
		path = "/snapshot/create";
		o = cJSON_CreateObject();
		if (o && cJSON_AddStringToObject(o, "snapshot_type", diff ? "Diff" : "Full") &&
		    cJSON_AddStringToObject(o, "snapshot_path", snap) && cJSON_AddStringToObject(o, "mem_file_path", mem))
			body = cJSON_PrintUnformatted(o);
	} else {
		method = "PATCH";
		path = "/vm";
		o = cJSON_CreateObject();
		if (o && cJSON_AddStringToObject(o, "state", !strcmp(cmd, "pause") ? "Paused" : "Resumed"))
			body = cJSON_PrintUnformatted(o);
	}
	cJSON_Delete(o);
	if (strcmp(method, "GET") && !body) {
		fprintf(stderr, "kestrel: out of memory\n");
		return 1;
	}
	if (api_client_request(sock, method, path, body, &status, &resp, err, sizeof(err))) {
		fprintf(stderr, "kestrel: %s\n", err);
		goto out;
	}
	if (status >= 200 && status < 300) {
		if (!strcmp(cmd, "status"))
			printf("%s\n", resp);
		r = 0;
		goto out;
	}
	reply = cJSON_Parse(resp);
	if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(reply, "fault_message")))
		fprintf(stderr, "kestrel: %s: %s\n", cmd, cJSON_GetObjectItemCaseSensitive(reply, "fault_message")->valuestring);
	else
		fprintf(stderr, "kestrel: %s: the API answered HTTP %ld\n", cmd, status);
	cJSON_Delete(reply);
out:
	free(body);
	free(resp);
	return r;
}

/* ---- kestrel snapshot verify: no VM, no API; the files only ---- */

static int cli_snapshot_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "snapshot-path", required_argument, NULL, OPT_SNAPSHOT_PATH },
		{ "mem-path", required_argument, NULL, OPT_MEM_PATH },
		{ NULL, 0, NULL, 0 },
	};
	const char *snap = NULL, *mem = NULL;
	char msg[1024];
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case OPT_SNAPSHOT_PATH: snap = optarg; break;
		case OPT_MEM_PATH: mem = optarg; break;
		default: return cli_bad_option(argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (!snap || !mem)
		return cli_usage_error("%s: --snapshot-path and --mem-path are required", "snapshot verify");
	if (memfile_verify(snap, mem, msg, sizeof(msg)) < 0) {
		fprintf(stderr, "kestrel: snapshot verify: %s\n", msg);
		return 1;
	}
	printf("%s\n", msg);
	return 0;
}

int cli_main(int argc, char **argv)
{
	struct machine_config cfg;
	char err[256] = "";
	int r;

	if (argc < 2) {
		fputs(usage_text, stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("kestrel %s\n", KESTREL_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "snapshot") && argc > 2 && !strcmp(argv[2], "verify"))
		return cli_snapshot_verify(argc - 2, argv + 2);
	if (!strcmp(argv[1], "pause") || !strcmp(argv[1], "resume") || !strcmp(argv[1], "snapshot") ||
	    !strcmp(argv[1], "status"))
		return cli_ctl(argc - 1, argv + 1);
	if (argv[1][0] == '-')
		return cli_serve(argc, argv);
	if (strcmp(argv[1], "run")) {
		fprintf(stderr, "kestrel: unknown command '%s' (try 'kestrel --help')\n", argv[1]);
		return CLI_EXIT_USAGE;
	}
	r = cli_parse_run(argc - 1, argv + 1, &cfg, err, sizeof(err));
	if (r < 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (r) {
		fprintf(stderr, "kestrel: %s (try 'kestrel --help')\n", err);
		return r;
	}
	return cli_run(&cfg);
}

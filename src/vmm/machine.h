/*
 * A whole virtual machine as the user asked for it: memory, vCPUs, the
 * kernel, the legacy devices and the PCI host, wired onto the buses.
 */
#ifndef KESTREL_MACHINE_H
#define KESTREL_MACHINE_H

#include "util/compiler.h"

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/net.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/net.h"

#define MACHINE_MAX_DISKS 8
#define MACHINE_MAX_NETS 4
#define MACHINE_NET_ID_MAX 64

/*
 * The devices are typed from the edge on: the command line, the API and the
 * config file fill these once, the machine builds its devices from them, the
 * snapshot stores them field by field and a restore overrides fields. A disk
 * is the virtio-blk device's own struct blk_config (path, ro, direct, engine,
 * queues, serial); a NIC is a struct net_config.
 */
enum net_model {
	NET_MODEL_VIRTIO = 0,
	NET_MODEL_E1000 = 1,
};

struct net_config {
	char id[MACHINE_NET_ID_MAX + 1];  /* the API's iface_id; empty: "ethN" by position */
	enum net_model model;
	enum net_backend_kind backend;    /* NET_BACKEND_TAP, _USER or _VHOST_USER */
	char ifname[IFNAMSIZ];            /* tap */
	struct net_hostfwd hostfwd[NET_MAX_HOSTFWD];   /* user */
	unsigned nr_hostfwd;
	bool mac_set;                     /* false: derived from the backend when the VM is built */
	uint8_t mac[6];
	uint16_t mtu;                     /* 0: not advertised */
	char vhost_socket[108];           /* vhost-user: the back-end's socket (client mode) */
};

struct machine_config {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	unsigned cpus;
	uint64_t mem_size;
	const char *console;        /* stdio | file:PATH | none */
	bool hugepages;
	bool mem_overcommit;        /* --mem-overcommit: allow RAM beyond host memory plus swap */
	uint64_t console_limit;     /* --console-limit: bytes for a file: console; 0 default, UINT64_MAX none */
	bool stats;
	const char *metrics_path;   /* --metrics PATH */
	unsigned metrics_interval;  /* seconds */
	bool ignore_host_check;     /* try a stock kernel even on a software KVM */
	const char *kvm_path;

	/* Paravirtual devices */
	bool rng;                   /* --rng */
	bool virtio_console;        /* --console virtio: stdio on hvc0 instead of COM1 */
	bool transport_mmio;        /* --transport mmio */
	struct blk_config disks[MACHINE_MAX_DISKS];
	unsigned ndisks;
	struct net_config nets[MACHINE_MAX_NETS];
	unsigned nnets;
	bool track_dirty_pages;     /* log dirty pages from the start (Diff snapshots) */

	/* --pin vcpu=LIST,io=LIST: host CPUs for vCPU threads and I/O threads (round robin) */
	int vcpu_cpus[64];
	unsigned n_vcpu_cpus;
	int io_cpus[64];
	unsigned n_io_cpus;
};

#define MACHINE_DEFAULT_CPUS 1
#define MACHINE_DEFAULT_MEM  (256ull << 20)
#define MACHINE_MIN_MEM      (8ull << 20)

/*
 * The --net syntax, "tap=NAME|user[,hostfwd=...][,mac=M][,mtu=N][,model=virtio|e1000]"
 * or "vhost-user=SOCK[,mac=M]" (virtio only),
 * into a net_config (the MAC is always set). 0 or -EINVAL with a one-line reason.
 */
KESTREL_MUST_CHECK int machine_net_parse(const char *spec, struct net_config *out, char *err, size_t errlen);
/* The MAC a NIC without mac= gets: 52:54:00 plus a hash of its backend. */
void machine_net_default_mac(const struct net_config *n, uint8_t mac[6]);
/* NIC i's id: its own, or "ethN" by position. */
const char *machine_net_id(const struct machine_config *c, unsigned i, char *buf, size_t len);

struct machine;
struct loop;
struct snap_writer;
struct snap_reader;

/*
 * The life cycle the vmm drives (for `kestrel run` and the API alike). machine_new builds the VM
 * and its devices and registers their host fds on `loop` (the caller runs it);
 * without mem_file it loads the kernel, with one it maps RAM from that
 * snapshot memory file and loads no kernel (machine_load follows).
 * 0 / -errno with a one-line reason in err.
 */
KESTREL_MUST_CHECK struct machine *machine_new(const struct machine_config *cfg, struct loop *loop,
		const char *mem_file, char *err, size_t errlen);
/*
 * Start I/O threads and vCPUs; pause a running machine, resume a paused one.
 * The machine keeps no life-cycle state: the vmm (vmm.h) owns it and calls
 * these only in the states they are meant for.
 */
KESTREL_MUST_CHECK int machine_start(struct machine *m, char *err, size_t errlen);
int machine_pause(struct machine *m);
KESTREL_MUST_CHECK int machine_resume(struct machine *m, char *err, size_t errlen);
/* An eventfd that becomes readable when the VM wants to stop (register it on the loop). */
int machine_stop_fd(const struct machine *m);
void machine_request_stop(struct machine *m, int status);
/* Join the vCPUs after a stop, print --stats, flush metrics; returns the exit status. */
int machine_finish(struct machine *m);
void machine_free(struct machine *m);

/* Snapshots (VM paused): the state file and the memory file. diff: dirty pages only. */
KESTREL_MUST_CHECK int machine_snapshot(struct machine *m, bool diff, const char *state_path, const char *mem_path,
		     char *err, size_t errlen);
/*
 * The machine configuration stored in a snapshot ("machine" section, field by
 * field; the loader still reads the version-1 sections that held the --disk
 * and --net strings). Loaded strings (kernel, cmdline) are malloc'ed, released
 * by machine_config_release().
 */
void machine_config_save(const struct machine_config *cfg, struct snap_writer *w);
KESTREL_MUST_CHECK int machine_config_load(struct machine_config *cfg, const struct snap_reader *r, char *err,
		size_t errlen);
void machine_config_release(struct machine_config *cfg);
/* Device and vCPU state from a snapshot into a machine built by machine_new(cfg, .., mem_file). */
KESTREL_MUST_CHECK int machine_load(struct machine *m, const struct snap_reader *r, char *err, size_t errlen);
KESTREL_MUST_CHECK int machine_track_dirty(struct machine *m, bool on);

/* SendCtrlAltDel; metrics (PUT /metrics, FlushMetrics). */
KESTREL_MUST_CHECK int machine_ctrl_alt_del(struct machine *m);
KESTREL_MUST_CHECK int machine_set_metrics(struct machine *m, const char *path, char *err, size_t errlen);
KESTREL_MUST_CHECK int machine_flush_metrics(struct machine *m, char *err, size_t errlen);
/* A new rate limiter for disk `index` (cfg->disks order) of a running machine. 0 or -EINVAL. */
KESTREL_MUST_CHECK int machine_set_disk_rate_limit(struct machine *m, unsigned index,
		const struct ratelimit_config *rl, char *err, size_t errlen);

#endif

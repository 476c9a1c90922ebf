/*
 * A whole virtual machine as the user asked for it: memory, vCPUs, the
 * kernel, the legacy devices and the PCI host, wired onto the buses.
 */
#ifndef KESTREL_MACHINE_H
#define KESTREL_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MACHINE_MAX_DISKS 8
#define MACHINE_MAX_NETS 4

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
	const char *disks[MACHINE_MAX_DISKS];
	unsigned ndisks;
	const char *nets[MACHINE_MAX_NETS];
	const char *net_ids[MACHINE_MAX_NETS];   /* API iface_id of each NIC, or NULL */
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

/* Build, boot and run the VM to its end; returns kestrel's exit status. */
int machine_run(const struct machine_config *cfg);

struct machine;
struct loop;
struct snap_writer;
struct snap_reader;

/*
 * The life cycle behind machine_run and the API. machine_new builds the VM
 * and its devices and registers their host fds on `loop` (the caller runs it);
 * without mem_file it loads the kernel, with one it maps RAM from that
 * snapshot memory file and loads no kernel (machine_load follows).
 * 0 / -errno with a one-line reason in err.
 */
struct machine *machine_new(const struct machine_config *cfg, struct loop *loop, const char *mem_file,
			    char *err, size_t errlen);
/* Start I/O threads and vCPUs. */
int machine_start(struct machine *m, char *err, size_t errlen);
int machine_pause(struct machine *m);
int machine_resume(struct machine *m, char *err, size_t errlen);
bool machine_started(const struct machine *m);
/* An eventfd that becomes readable when the VM wants to stop (register it on the loop). */
int machine_stop_fd(const struct machine *m);
void machine_request_stop(struct machine *m, int status);
/* Join the vCPUs after a stop, print --stats, flush metrics; returns the exit status. */
int machine_finish(struct machine *m);
void machine_free(struct machine *m);

/* Snapshots (VM paused): the state file and the memory file. diff: dirty pages only. */
int machine_snapshot(struct machine *m, bool diff, const char *state_path, const char *mem_path,
		     char *err, size_t errlen);
/*
 * The machine configuration stored in a snapshot ("machine" section); its
 * strings are malloc'ed, released by machine_config_release().
 */
int machine_config_load(struct machine_config *cfg, const struct snap_reader *r, char *err, size_t errlen);
void machine_config_release(struct machine_config *cfg);
/* Device and vCPU state from a snapshot into a machine built by machine_new(cfg, .., mem_file). */
int machine_load(struct machine *m, const struct snap_reader *r, char *err, size_t errlen);
int machine_track_dirty(struct machine *m, bool on);

/* SendCtrlAltDel; metrics (PUT /metrics, FlushMetrics). */
int machine_ctrl_alt_del(struct machine *m);
int machine_set_metrics(struct machine *m, const char *path, char *err, size_t errlen);
int machine_flush_metrics(struct machine *m, char *err, size_t errlen);

#endif

/*
 * The VMM process around one machine: the main thread's event loop, the
 * machine's life cycle (not started → running ⇄ paused → ended) and the
 * control operations the API and the command line ask for.
 *
 * Threading: every vmm_* function below runs on the VMM (main) thread only.
 * The API server's request threads post work there with vmm_call(), which
 * runs a function on the main loop and waits for it.
 */
#ifndef KESTREL_VMM_H
#define KESTREL_VMM_H

#include "util/compiler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "machine.h"

struct vmm;
struct loop;

/* The one record of where the VM is in its life cycle (the machine keeps none). */
enum vmm_state {
	VMM_NOT_STARTED = 0,
	VMM_RUNNING,
	VMM_PAUSED,
	VMM_LOADED,          /* restored from a snapshot, paused, vCPUs not run yet (reported as paused) */
	VMM_ENDED,           /* the guest powered off / reset; the process is about to exit */
};

/*
 * What a caller may ask for. Each rule lives in vmm_allowed() alone: the
 * vmm_* operations below check it themselves, and the API asks it for the
 * pre-boot configuration it keeps (VMM_OP_CONFIGURE).
 */
enum vmm_op {
	VMM_OP_CONFIGURE,        /* change a boot resource (before start or load) */
	VMM_OP_START,            /* InstanceStart */
	VMM_OP_PAUSE,
	VMM_OP_RESUME,
	VMM_OP_SNAPSHOT_CREATE,
	VMM_OP_SNAPSHOT_LOAD,
	VMM_OP_CTRL_ALT_DEL,
	VMM_OP_FLUSH_METRICS,
};

enum vmm_snapshot_type {
	VMM_SNAPSHOT_FULL = 0,
	VMM_SNAPSHOT_DIFF,   /* only pages dirtied since the last snapshot (needs track_dirty_pages) */
};

struct vmm_snapshot_params {
	enum vmm_snapshot_type type;
	const char *state_path;   /* snapshot_path: vCPU, irqchip and device state */
	const char *mem_path;     /* mem_file_path: guest RAM */
};

#define VMM_MAX_NET_OVERRIDES 4

struct vmm_load_params {
	const char *state_path;
	const char *mem_path;     /* mem_backend.backend_path (backend_type File) or mem_file_path */
	bool resume;              /* resume_vm */
	bool track_dirty_pages;   /* enable_diff_snapshots / track_dirty_pages */
	bool verify_memory;       /* check the memory file's content digest (reads all of it) */
	/* network_overrides: the NIC with this id (the index in the --net / API order, as
	 * the string the API used: e.g. "eth0") gets a different host TAP device. */
	struct {
		const char *iface_id;
		const char *host_dev_name;
	} net_overrides[VMM_MAX_NET_OVERRIDES];
	unsigned n_net_overrides;
};

struct vmm_info {
	enum vmm_state state;
	bool restored;            /* the VM was loaded from a snapshot */
	unsigned cpus;
	uint64_t mem_size;
};

/* The process-wide controller; one per process. NULL on out of memory. */
KESTREL_MUST_CHECK struct vmm *vmm_new(void);
void vmm_free(struct vmm *v);
struct loop *vmm_loop(struct vmm *v);
/* Where the console of a VM restored by vmm_snapshot_load goes (chardev spec; default stdio). */
void vmm_set_console(struct vmm *v, const char *spec);

/*
 * Run `fn(opaque)` on the VMM thread and wait for it to return (any thread but
 * the VMM thread). Returns fn's result, or -ESHUTDOWN once the VMM is exiting.
 */
KESTREL_MUST_CHECK int vmm_call(struct vmm *v, int (*fn)(struct vmm *v, void *opaque), void *opaque);

/*
 * 0 when `op` is allowed now, else -EINVAL with the rule, worded for the
 * user, in err. `what` names the resource for VMM_OP_CONFIGURE (else NULL).
 */
KESTREL_MUST_CHECK int vmm_allowed(struct vmm *v, enum vmm_op op, const char *what, char *err, size_t errlen);
/* The state's name as the API reports it ("Not started", "Running", "Paused", "Ended"). */
const char *vmm_state_name(enum vmm_state s);

/* Build and boot the machine (InstanceStart). `cfg` and its strings must stay valid
 * for the life of the VM. 0, or -errno with a one-line reason in err. */
KESTREL_MUST_CHECK int vmm_start(struct vmm *v, const struct machine_config *cfg, char *err, size_t errlen);
/* Pausing a paused VM and resuming a running one do nothing (as in Firecracker). */
KESTREL_MUST_CHECK int vmm_pause(struct vmm *v, char *err, size_t errlen);
KESTREL_MUST_CHECK int vmm_resume(struct vmm *v, char *err, size_t errlen);
/* The VM must be paused (as in Firecracker). */
KESTREL_MUST_CHECK int vmm_snapshot_create(struct vmm *v, const struct vmm_snapshot_params *p, char *err,
		size_t errlen);
/* Only before the VM started; on failure nothing is left half-loaded (still not started). */
KESTREL_MUST_CHECK int vmm_snapshot_load(struct vmm *v, const struct vmm_load_params *p, char *err, size_t errlen);
/* SendCtrlAltDel: the i8042 reports Ctrl+Alt+Del to the guest. */
KESTREL_MUST_CHECK int vmm_ctrl_alt_del(struct vmm *v, char *err, size_t errlen);
/* FlushMetrics: write one metrics line now (needs a metrics path). */
KESTREL_MUST_CHECK int vmm_flush_metrics(struct vmm *v, char *err, size_t errlen);
/* PUT /metrics: where metrics go; before or after start. */
/* A disk's rate limiter on the running (or paused) machine; 0 with nothing to do before start. */
KESTREL_MUST_CHECK int vmm_set_disk_rate_limit(struct vmm *v, unsigned index, const struct ratelimit_config *rl,
		char *err, size_t errlen);
KESTREL_MUST_CHECK int vmm_set_metrics_path(struct vmm *v, const char *path, char *err, size_t errlen);
void vmm_get_info(struct vmm *v, struct vmm_info *out);
/*
 * vmm_get_info for any thread, without waiting for the VMM thread (which may
 * be busy for seconds writing a snapshot): the info as of the end of the last
 * vmm_call() or vmm_run()'s start or end. A vmm_call's own changes are seen
 * once it returns.
 */
void vmm_peek_info(struct vmm *v, struct vmm_info *out);

/*
 * Run the main loop until the VM ends (then returns its exit status) or the
 * process gets SIGINT/SIGTERM (128+N). Without a VM it waits for the API.
 */
int vmm_run(struct vmm *v);

#endif

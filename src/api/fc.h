/*
 * Firecracker's configuration objects (its API bodies and its --config-file
 * layout) turned into a kestrel machine_config. Shared by the control API and
 * `kestrel --config-file`.
 *
 * Every input is hostile: each body is checked completely (unknown, duplicate,
 * missing and mistyped fields, ranges, lengths, control characters) before
 * anything in the config changes, so a rejected request leaves it as it was.
 * Errors are one line in err, naming the field and where it was.
 *
 * No threads, no vmm: the API layer serializes calls and decides whether a
 * change is allowed in the VM's current state.
 */
#ifndef KESTREL_API_FC_H
#define KESTREL_API_FC_H

#include "util/compiler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/ratelimit.h"
#include "vmm/machine.h"
#include "vmm/vmm.h"

#define FC_BODY_MAX      (64 * 1024)   /* the largest request body or config file */
#define FC_ID_MAX        64            /* drive_id, iface_id, instance id */
#define FC_PATH_MAX      4095
#define FC_BOOT_ARGS_MAX 2048
#define FC_MAX_VCPUS     32
#define FC_MIN_MEM_MIB   8
#define FC_MAX_MEM_MIB   (1024u * 1024u)   /* 1 TiB */
#define FC_DEFAULT_MEM_MIB 128             /* Firecracker's default */

_Static_assert(FC_ID_MAX <= MACHINE_NET_ID_MAX, "an iface_id fits a net_config's id");

struct fc_drive {
	char *id;
	char *path;
	char *partuuid;          /* NULL unless given */
	bool root;
	bool read_only;
	int cache;               /* -1 absent, 0 Unsafe, 1 Writeback */
	int engine;              /* -1 absent (kestrel's default), 0 Sync, 1 Async */
	struct ratelimit_config rate_limit;   /* all zero: none */
};

struct fc_net {
	char *id;
	char *host_dev;          /* a TAP device, or NULL with vhost_socket */
	char *vhost_socket;      /* kestrel's vhost_user_socket: a vhost-user back-end instead of a TAP */
	char *mac;               /* NULL: kestrel derives one */
	unsigned mtu;            /* 0: not advertised */
};

/* What a log level names; FC_LOG_UNSET when no logger level was given. */
#define FC_LOG_UNSET (-1)

struct fc_config {
	/* boot-source */
	char *kernel;
	char *initrd;
	char *boot_args;
	/* machine-config */
	unsigned vcpus;
	unsigned mem_mib;
	bool track_dirty_pages;
	int huge_pages;          /* 0 None, 1 Transparent, 2 2M */
	/* drives and network-interfaces, in the order they were first put */
	struct fc_drive drives[MACHINE_MAX_DISKS];
	unsigned ndrives;
	struct fc_net nets[MACHINE_MAX_NETS];
	unsigned nnets;
	/* metrics, logger, serial / kestrel.console */
	char *metrics_path;
	int log_level;           /* enum log_level or FC_LOG_UNSET */
	char *console;           /* NULL: stdio */
	bool entropy;            /* a virtio-rng device */
	/* Whether any boot resource was configured (snapshot/load refuses then). */
	bool boot_configured;
};

void fc_config_init(struct fc_config *c);
void fc_config_exit(struct fc_config *c);

/* The resources a PUT (or PATCH) configures. */
enum fc_resource {
	FC_BOOT_SOURCE,
	FC_MACHINE_CONFIG,        /* PUT: absent optional fields get their defaults */
	FC_MACHINE_CONFIG_PATCH,  /* PATCH: only the fields given change */
	FC_DRIVE,                 /* PUT /drives/{id}: a drive with that id is replaced */
	FC_NET,                   /* PUT /network-interfaces/{id} */
	FC_METRICS,
	FC_LOGGER,
	FC_ENTROPY,               /* a virtio-rng device */
	FC_SERIAL,                /* {"serial_out_path": P}: the console goes to file P */
};

/*
 * One request body for resource r. id is the path's id (FC_DRIVE, FC_NET;
 * NULL elsewhere). `json` need not be NUL-terminated; len is checked against
 * FC_BODY_MAX. 0, or -EINVAL (bad input) / -ENOMEM / -ENOSPC (too many
 * devices) with a one-line reason in err; on error c is unchanged.
 */
KESTREL_MUST_CHECK int fc_put(struct fc_config *c, enum fc_resource r, const char *id, const char *json, size_t len,
	   char *err, size_t errlen);

/*
 * PATCH /drives/{id}: {"drive_id", "rate_limiter"} for a drive already put.
 * Checks only: *rl is the drive's limiter with the buckets given replaced
 * (a bucket left out keeps its setting; size and refill_time 0 remove
 * it), *slot the drive's index in c->drives and *disk its index among the
 * machine's disks (the root drive first, as fc_machine_build orders them).
 * 0 or -EINVAL with a one-line reason.
 */
KESTREL_MUST_CHECK int fc_drive_patch(const struct fc_config *c, const char *id, const char *json, size_t len,
		struct ratelimit_config *rl, unsigned *slot, unsigned *disk, char *err, size_t errlen);

/* A whole --config-file (Firecracker's layout) into a fresh config. */
KESTREL_MUST_CHECK int fc_config_load(struct fc_config *c, const char *json, size_t len, char *err, size_t errlen);

/* JSON texts (malloc'd, NULL on out of memory): the full config in the
 * --config-file layout, and the machine-config object. */
char *fc_config_to_json(const struct fc_config *c);
char *fc_machine_config_to_json(const struct fc_config *c);

/* A machine_config built from a fc_config, owning every string it points to
 * (the devices are typed: drives and interfaces are copied into it). */
struct fc_machine {
	struct machine_config cfg;
	char *cmdline;
	char *strs[5];           /* kernel, initrd, console, metrics path, spare */
};

/* Needs a boot source. 0, or -EINVAL/-ENOMEM with err. */
KESTREL_MUST_CHECK int fc_machine_build(const struct fc_config *c, struct fc_machine *m, char *err, size_t errlen);
void fc_machine_exit(struct fc_machine *m);

/* ---- bodies that are not configuration ---- */

enum fc_action { FC_ACTION_START, FC_ACTION_CTRL_ALT_DEL, FC_ACTION_FLUSH_METRICS };

KESTREL_MUST_CHECK int fc_parse_action(const char *json, size_t len, enum fc_action *out, char *err, size_t errlen);
/* PATCH /vm: *pause is true for "Paused", false for "Resumed". */
KESTREL_MUST_CHECK int fc_parse_vm_state(const char *json, size_t len, bool *pause, char *err, size_t errlen);

/* PUT /snapshot/create; owns the strings p points to. */
struct fc_snapshot_create {
	struct vmm_snapshot_params p;
	char *state_path;
	char *mem_path;
};
KESTREL_MUST_CHECK int fc_parse_snapshot_create(const char *json, size_t len, struct fc_snapshot_create *out,
			     char *err, size_t errlen);
void fc_snapshot_create_exit(struct fc_snapshot_create *s);

/* PUT /snapshot/load; owns the strings p points to. */
struct fc_snapshot_load {
	struct vmm_load_params p;
	char *strs[2 + 2 * VMM_MAX_NET_OVERRIDES];
};
KESTREL_MUST_CHECK int fc_parse_snapshot_load(const char *json, size_t len, struct fc_snapshot_load *out,
			   char *err, size_t errlen);
void fc_snapshot_load_exit(struct fc_snapshot_load *s);

/* An instance / drive / interface id: 1..FC_ID_MAX of [A-Za-z0-9_-]. */
bool fc_id_valid(const char *id);

#endif

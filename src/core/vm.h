/*
 * A VM: the KVM VM fd, guest memory slots, in-kernel irqchip and PIT, the
 * vCPU threads and their run loop. Exits are decoded once here and handed to
 * the PIO/MMIO buses; nothing above this layer issues KVM ioctls.
 */
#ifndef KESTREL_VM_H
#define KESTREL_VM_H

#include "util/compiler.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "boot/boot.h"
#include "bus/bus.h"
#include "bus/irq.h"
#include "core/kvm.h"
#include "mem/gm.h"

#define VM_MAX_VCPUS 32

struct vm;

struct vcpu_stats {
	uint64_t exits[KVM_EXIT_REASON_MAX];   /* by KVM exit reason */
	uint64_t io_in, io_out, mmio_read, mmio_write;
};

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	int cpu;              /* host CPU to pin to, or -1 */
	struct kvm_cpuid2 *cpuid;  /* what KVM_SET_CPUID2 was given (snapshots save it) */
	struct vcpu_stats stats;
};

enum vm_stop_reason {
	VM_STOP_NONE = 0,
	VM_STOP_RESET,        /* guest reset (i8042, 0xCF9, ACPI reset register, triple fault) */
	VM_STOP_POWEROFF,     /* ACPI S5 or KVM system event */
	VM_STOP_DEBUG_EXIT,   /* test guest wrote the debug-exit port */
	VM_STOP_USER,         /* Ctrl-A x, signal */
	VM_STOP_ERROR,        /* emulation failure, failed VM entry, ... */
};

struct vm {
	struct kvm *kvm;
	int fd;
	struct guest_mem gm;
	struct bus pio;
	struct bus mmio;
	unsigned ncpus;
	struct vcpu vcpus[VM_MAX_VCPUS];
	struct boot_entry entry;

	/* Stop handshake: the first request wins; the main thread waits on stop_cond. */
	pthread_mutex_t stop_lock;
	pthread_cond_t stop_cond;
	enum vm_stop_reason stop_reason;
	int exit_status;
	int stop_eventfd;     /* readable once a stop was requested (for event loops) */

	/* GSI routing: the irqchip defaults plus MSI routes, committed as a whole. */
	pthread_mutex_t route_lock;
	struct kvm_irq_routing_entry *routes;
	unsigned nr_routes, cap_routes;
	unsigned next_msi_gsi;

	/*
	 * Pause handshake: vCPU threads park on pause_cond after an immediate
	 * exit while pause_req is set; vm_pause waits on parked_cond until every
	 * running vCPU thread has parked (or ended).
	 */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	pthread_cond_t parked_cond;
	bool pause_req;
	unsigned nparked, nrunning;

	bool dirty_log;       /* every RAM slot has KVM_MEM_LOG_DIRTY_PAGES */

	/* Called on the boot vCPU's thread right before its first KVM_RUN (start-up timing). */
	void (*on_first_run)(struct vm *vm, void *opaque);
	void *on_first_run_opaque;
};

/* mem_file: restore RAM from a snapshot memory file (gm_init_file) instead of fresh memfd RAM. */
KESTREL_MUST_CHECK int vm_create(struct vm *vm, struct kvm *kvm, uint64_t ram_size, unsigned ncpus, unsigned gm_flags,
	      const char *mem_file, char *err, size_t errlen);
void vm_destroy(struct vm *vm);

/* Set up every vCPU (CPUID, MSRs, LAPIC, FPU) and the boot vCPU's registers for `entry`. */
KESTREL_MUST_CHECK int vm_setup_vcpus(struct vm *vm, const struct boot_entry *entry, char *err, size_t errlen);
KESTREL_MUST_CHECK int vm_start(struct vm *vm);
/* Block until a stop is requested, then stop and join every vCPU. Returns the exit status. */
int vm_wait(struct vm *vm);

/* Thread-safe; from any thread (devices, signal-driven code, vCPUs). */
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int status);
bool vm_stopping(struct vm *vm);

/* An IOAPIC/PIC line as an interrupt object. */
void vm_irq_init(struct vm *vm, struct irq *irq, unsigned gsi);

/*
 * Notifications without exits: an eventfd signalled by KVM when the guest
 * writes `len` bytes (0: any length) at addr (MMIO or PIO), optionally only the
 * value `match` (>= 0), and an eventfd
 * that injects GSI `gsi` when written. 0 or -errno.
 */
KESTREL_MUST_CHECK int vm_ioeventfd(struct vm *vm, uint64_t addr, unsigned len, bool pio, int64_t match,
		int fd, bool assign);
KESTREL_MUST_CHECK int vm_irqfd(struct vm *vm, int fd, unsigned gsi, bool assign);
/* MSI routes: allocate a GSI for MSI, point it at (addr, data), release it. */
KESTREL_MUST_CHECK int vm_msi_route_alloc(struct vm *vm);
KESTREL_MUST_CHECK int vm_msi_route_set(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data);
int vm_msi_route_free(struct vm *vm, unsigned gsi);

/*
 * Pause: every vCPU completes the exit it is in (pending PIO/MMIO reads are
 * delivered by re-entering KVM_RUN with immediate_exit), leaves KVM_RUN and
 * parks; vm_pause() returns once all have parked. A stop request while
 * paused still ends the VM. Both are idempotent; main thread only.
 */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
bool vm_paused(const struct vm *vm);

struct snap_writer;
struct snap_reader;

/*
 * The KVM side of a snapshot, with every vCPU paused (or not yet started):
 * section "kvm.vm" (PIC master/slave, IOAPIC, PIT, KVM clock) and one
 * "kvm.vcpu.N" per vCPU (registers, special registers, XSAVE (or FPU), XCRs,
 * MSRs incl. TSC and kvmclock, LAPIC, vCPU events, MP state, debug registers).
 * vm_load_state validates every section before the first KVM_SET_* call;
 * 0 or -errno with a one-line reason.
 */
KESTREL_MUST_CHECK int vm_save_state(struct vm *vm, struct snap_writer *w, char *err, size_t errlen);
KESTREL_MUST_CHECK int vm_load_state(struct vm *vm, const struct snap_reader *r, char *err, size_t errlen);

/* Dirty-page logging on every RAM slot (KVM_MEM_LOG_DIRTY_PAGES), for Diff snapshots. */
KESTREL_MUST_CHECK int vm_dirty_log_enable(struct vm *vm, bool on);
bool vm_dirty_log_enabled(const struct vm *vm);
/*
 * Fetch and clear KVM's dirty bitmap of RAM region `region` (gm.regions[i],
 * one bit per 4 KiB page, bit i of word i/64) and OR it into `bitmap`.
 */
KESTREL_MUST_CHECK int vm_dirty_log_fetch(struct vm *vm, unsigned region, uint64_t *bitmap);

/* Print per-vCPU exit counters and per-device access counters. */
void vm_print_stats(struct vm *vm, FILE *out);

#endif

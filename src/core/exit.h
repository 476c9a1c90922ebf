/*
 * Decoding of one KVM exit: a free function over a kvm_run area and the
 * buses, with no vCPU fd and no ioctl, so every exit reason can be tested
 * with a fabricated kvm_run. The vCPU loop (vcpu.c) acts on the verdict.
 */
#ifndef KESTREL_EXIT_H
#define KESTREL_EXIT_H

#include <stdbool.h>
#include <stddef.h>

#include "bus/bus.h"
#include "core/vm.h"

enum exit_action {
	EXIT_CONTINUE,   /* re-enter KVM_RUN */
	EXIT_HALTED,     /* HLT with no in-kernel LAPIC: park briefly, then re-enter */
	EXIT_STOP,       /* end this vCPU's loop and stop the VM with reason/status */
};

struct exit_verdict {
	enum exit_action action;
	enum vm_stop_reason reason;  /* EXIT_STOP only */
	int status;                  /* exit status of kestrel for EXIT_STOP */
	bool dump;                   /* print the vCPU's registers after msg */
	char msg[384];               /* what happened, for the user; "" when nothing to say */
};

struct exit_env {
	struct bus *pio;
	struct bus *mmio;
	struct vcpu_stats *stats;    /* NULL: not counted */
	bool hw_virt;                /* the host KVM has hardware virtualization (hint in messages) */
};

/*
 * Decode run->exit_reason and perform the PIO/MMIO access it stands for.
 * run_size is the size of the kvm_run mapping: PIO data is only touched
 * when it lies inside it, after struct kvm_run itself. Values KVM should
 * never report (a PIO size other than 1/2/4, MMIO longer than 8 bytes,
 * data outside the mapping) stop the VM with status 1: the run area cannot
 * be trusted any more.
 */
void exit_decode(struct kvm_run *run, size_t run_size, const struct exit_env *env,
		 struct exit_verdict *v);

#endif

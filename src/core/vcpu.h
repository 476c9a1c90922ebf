#ifndef KESTREL_VCPU_H
#define KESTREL_VCPU_H

#include "util/compiler.h"

#include <stddef.h>

#include "core/vm.h"

KESTREL_MUST_CHECK int vcpu_create(struct vcpu *v, struct vm *vm, unsigned id, char *err, size_t errlen);
void vcpu_destroy(struct vcpu *v);
/* entry != NULL for the boot vCPU; APs wait for INIT/SIPI in the in-kernel LAPIC. */
KESTREL_MUST_CHECK int vcpu_setup(struct vcpu *v, const struct boot_entry *entry, char *err, size_t errlen);
/* KVM_SET_CPUID2; the first thing a vCPU needs (MSRs and XSAVE are checked against it). 0 or -errno. */
KESTREL_MUST_CHECK int vcpu_set_cpuid(struct vcpu *v, const struct kvm_cpuid2 *cpuid);
KESTREL_MUST_CHECK int vcpu_start(struct vcpu *v);
/* Make KVM_RUN return soon (immediate_exit + signal). */
void vcpu_kick(struct vcpu *v);
void vcpu_join(struct vcpu *v);
/* Registers, segments and the bytes at RIP, for fatal exits. */
void vcpu_dump(struct vcpu *v, FILE *out);

/* CPUID for vCPU `id` of `ncpus`, filtered from KVM's supported set (cpuid.c). */
KESTREL_MUST_CHECK struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm *kvm, unsigned id, unsigned ncpus);

#endif

/*
 * Per-vCPU CPUID: KVM's supported set, with the topology, APIC id and
 * hypervisor bits a guest expects from one socket of `ncpus` cores.
 */
#include "core/vcpu.h"

#include <stdlib.h>
#include <string.h>

#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT        (1u << 28)
#define CPUID_6_EAX_ARAT       (1u << 2)

static void cpuid_set_topology_leaf(struct kvm_cpuid_entry2 *e, unsigned id, unsigned ncpus)
{
	unsigned level = e->index;
	unsigned shift = 0;

	while ((1u << shift) < ncpus)
		shift++;
	/* Subleaf 0: SMT level, one thread per core; subleaf 1: core level. */
	if (level == 0) {
		e->eax = 0;
		e->ebx = 1;
		e->ecx = (1u << 8) | level;
	} else if (level == 1) {
		e->eax = shift;
		e->ebx = ncpus;
		e->ecx = (2u << 8) | level;
	} else {
		e->eax = e->ebx = 0;
		e->ecx = level;
	}
	e->edx = id;
}

struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm *kvm, unsigned id, unsigned ncpus)
{
	size_t sz = sizeof(struct kvm_cpuid2) + kvm->cpuid->nent * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = malloc(sz);
	bool intel = false;

	if (!c)
		return NULL;
	memcpy(c, kvm->cpuid, sz);
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 0)
			intel = e->ebx == 0x756e6547; /* "Genu" */
	}
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x0000ffffu) | (id << 24) | ((ncpus & 0xff) << 16);
			e->ecx |= CPUID_1_ECX_HYPERVISOR;
			if (ncpus > 1)
				e->edx |= CPUID_1_EDX_HTT;
			break;
		case 4:
			/* Cores per package - 1 in EAX[31:26]; threads sharing cache. */
			if (intel) {
				e->eax &= 0x3ffu;
				e->eax |= ((ncpus - 1) & 0x3f) << 26;
			}
			break;
		case 6:
			e->eax |= CPUID_6_EAX_ARAT; /* the LAPIC timer does not stop in C-states */
			break;
		case 0xb:
		case 0x1f:
			cpuid_set_topology_leaf(e, id, ncpus);
			break;
		case 0x80000008:
			if (!intel)
				e->ecx = (e->ecx & ~0xffu) | ((ncpus - 1) & 0xff);
			break;
		case 0x8000001e:
			/* AMD extended APIC id and core id. */
			e->eax = id;
			e->ebx = (e->ebx & 0xffffff00u) | (id & 0xff);
			e->ecx = 0;
			break;
		default:
			break;
		}
	}
	return c;
}

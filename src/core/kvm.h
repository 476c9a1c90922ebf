/*
 * The only place that talks to /dev/kvm: the system fd, capability checks
 * and checked ioctl wrappers. Everything above sees vm/vcpu objects.
 */
#ifndef KESTREL_KVM_H
#define KESTREL_KVM_H

#include "util/compiler.h"

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>

struct kvm {
	int fd;
	int vcpu_mmap_size;
	int max_vcpus;
	struct kvm_cpuid2 *cpuid;     /* KVM_GET_SUPPORTED_CPUID */
	struct kvm_msr_list *msrs;    /* KVM_GET_MSR_INDEX_LIST */
	bool hw_virt;                 /* host CPU has VT-x/AMD-V (not a software KVM) */
	char module[32];              /* "kvm_intel", "kvm_amd", "kvm_pvm", ... */
};

/*
 * Open /dev/kvm (O_CLOEXEC), check the API version and every capability
 * kestrel relies on. On failure returns -errno and a one-line reason in err.
 */
KESTREL_MUST_CHECK int kvm_open(struct kvm *kvm, const char *path, char *err, size_t errlen);
void kvm_close(struct kvm *kvm);

bool kvm_msr_supported(const struct kvm *kvm, unsigned index);

/* ioctl that retries on EINTR for setup calls; returns result or -errno. */
int kvm_ioctl(int fd, unsigned long req, void *arg);

const char *kvm_exit_reason_name(unsigned reason);
#define KVM_EXIT_REASON_MAX 64

#endif

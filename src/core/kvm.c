#include "core/kvm.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int kvm_ioctl(int fd, unsigned long req, void *arg)
{
	int r;

	do {
		r = ioctl(fd, req, arg);
	} while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

/* Capabilities kestrel uses, each with why, so a failure names it. */
static const struct {
	int cap;
	const char *name;
} kvm_required_caps[] = {
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP (in-kernel IOAPIC/LAPIC/PIC)" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2 (in-kernel PIT)" },
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	{ KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT (pausing and stopping vCPUs)" },
	{ KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
	{ KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
	{ KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
	{ KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE" },
};

static void kvm_detect_module(struct kvm *kvm)
{
	static const char *const mods[] = { "kvm_pvm", "kvm_intel", "kvm_amd" };
	char path[64], line[4096];
	FILE *f;

	snprintf(kvm->module, sizeof(kvm->module), "kvm");
	for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
		snprintf(path, sizeof(path), "/sys/module/%s", mods[i]);
		if (access(path, F_OK) == 0) {
			snprintf(kvm->module, sizeof(kvm->module), "%s", mods[i]);
			break;
		}
	}
	/* Hardware virtualization shows as vmx/svm in the host CPU flags. */
	kvm->hw_virt = false;
	f = fopen("/proc/cpuinfo", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5))
			continue;
		kvm->hw_virt = strstr(line, " vmx") || strstr(line, " svm");
		break;
	}
	fclose(f);
	if (!strcmp(kvm->module, "kvm_pvm"))
		kvm->hw_virt = false;
}

static int kvm_get_cpuid(struct kvm *kvm)
{
	for (int n = 128; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)n * sizeof(c->entries[0]));
		int r;

		if (!c)
			return -ENOMEM;
		c->nent = (unsigned)n;
		r = kvm_ioctl(kvm->fd, KVM_GET_SUPPORTED_CPUID, c);
		if (r == 0) {
			kvm->cpuid = c;
			return 0;
		}
		free(c);
		if (r != -E2BIG)
			return r;
	}
	return -E2BIG;
}

static int kvm_get_msr_list(struct kvm *kvm)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	struct kvm_msr_list *l;
	int r;

	r = kvm_ioctl(kvm->fd, KVM_GET_MSR_INDEX_LIST, &probe);
	if (r < 0 && r != -E2BIG)
		return r;
	l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(l->indices[0]));
	if (!l)
		return -ENOMEM;
	l->nmsrs = probe.nmsrs;
	r = kvm_ioctl(kvm->fd, KVM_GET_MSR_INDEX_LIST, l);
	if (r < 0) {
		free(l);
		return r;
	}
	kvm->msrs = l;
	return 0;
}

int kvm_open(struct kvm *kvm, const char *path, char *err, size_t errlen)
{
	int r, api;

	memset(kvm, 0, sizeof(*kvm));
	kvm->fd = open(path, O_RDWR | O_CLOEXEC);
	if (kvm->fd < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot open %s: %s%s", path, strerror(-r),
			 r == -ENOENT ? " (is the kvm module loaded?)" :
			 r == -EACCES ? " (is your user in the kvm group?)" : "");
		return r;
	}
	api = ioctl(kvm->fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		snprintf(err, errlen, "%s: KVM API version %d, kestrel needs %d", path, api, KVM_API_VERSION);
		r = -ENOTSUP;
		goto err_close;
	}
	for (size_t i = 0; i < sizeof(kvm_required_caps) / sizeof(kvm_required_caps[0]); i++) {
		if (ioctl(kvm->fd, KVM_CHECK_EXTENSION, kvm_required_caps[i].cap) <= 0) {
			snprintf(err, errlen, "%s lacks %s", path, kvm_required_caps[i].name);
			r = -ENOTSUP;
			goto err_close;
		}
	}
	kvm->vcpu_mmap_size = ioctl(kvm->fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (kvm->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
		snprintf(err, errlen, "%s: bad KVM_GET_VCPU_MMAP_SIZE %d", path, kvm->vcpu_mmap_size);
		r = -ENOTSUP;
		goto err_close;
	}
	kvm->max_vcpus = ioctl(kvm->fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (kvm->max_vcpus <= 0)
		kvm->max_vcpus = ioctl(kvm->fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (kvm->max_vcpus <= 0)
		kvm->max_vcpus = 4; /* the API's documented minimum guarantee */
	r = kvm_get_cpuid(kvm);
	if (r < 0) {
		snprintf(err, errlen, "%s: KVM_GET_SUPPORTED_CPUID failed: %s", path, strerror(-r));
		goto err_close;
	}
	r = kvm_get_msr_list(kvm);
	if (r < 0) {
		snprintf(err, errlen, "%s: KVM_GET_MSR_INDEX_LIST failed: %s", path, strerror(-r));
		goto err_close;
	}
	kvm_detect_module(kvm);
	return 0;

err_close:
	free(kvm->cpuid);
	close(kvm->fd);
	kvm->fd = -1;
	return r;
}

void kvm_close(struct kvm *kvm)
{
	if (kvm->fd >= 0)
		close(kvm->fd);
	free(kvm->cpuid);
	free(kvm->msrs);
	memset(kvm, 0, sizeof(*kvm));
	kvm->fd = -1;
}

bool kvm_msr_supported(const struct kvm *kvm, unsigned index)
{
	for (unsigned i = 0; kvm->msrs && i < kvm->msrs->nmsrs; i++)
		if (kvm->msrs->indices[i] == index)
			return true;
	return false;
}

const char *kvm_exit_reason_name(unsigned reason)
{
	static const char *const names[] = {
		[KVM_EXIT_UNKNOWN] = "unknown",
		[KVM_EXIT_EXCEPTION] = "exception",
		[KVM_EXIT_IO] = "io",
		[KVM_EXIT_HYPERCALL] = "hypercall",
		[KVM_EXIT_DEBUG] = "debug",
		[KVM_EXIT_HLT] = "hlt",
		[KVM_EXIT_MMIO] = "mmio",
		[KVM_EXIT_IRQ_WINDOW_OPEN] = "irq_window_open",
		[KVM_EXIT_SHUTDOWN] = "shutdown",
		[KVM_EXIT_FAIL_ENTRY] = "fail_entry",
		[KVM_EXIT_INTR] = "intr",
		[KVM_EXIT_SET_TPR] = "set_tpr",
		[KVM_EXIT_TPR_ACCESS] = "tpr_access",
		[KVM_EXIT_NMI] = "nmi",
		[KVM_EXIT_INTERNAL_ERROR] = "internal_error",
		[KVM_EXIT_SYSTEM_EVENT] = "system_event",
		[KVM_EXIT_IOAPIC_EOI] = "ioapic_eoi",
		[KVM_EXIT_HYPERV] = "hyperv",
		[KVM_EXIT_X86_RDMSR] = "rdmsr",
		[KVM_EXIT_X86_WRMSR] = "wrmsr",
		[KVM_EXIT_DIRTY_RING_FULL] = "dirty_ring_full",
		[KVM_EXIT_X86_BUS_LOCK] = "bus_lock",
	};

	if (reason < sizeof(names) / sizeof(names[0]) && names[reason])
		return names[reason];
	return "other";
}

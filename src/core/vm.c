#include "core/vm.h"
#include "core/vcpu.h"
#include "mem/layout.h"
#include "util/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int vm_set_memory(struct vm *vm, char *err, size_t errlen)
{
	for (unsigned i = 0; i < vm->gm.nr_regions; i++) {
		const struct gm_region *r = &vm->gm.regions[i];
		struct kvm_userspace_memory_region mr = {
			.slot = i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->host,
		};
		int e = kvm_ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &mr);

		if (e < 0) {
			snprintf(err, errlen, "KVM_SET_USER_MEMORY_REGION slot %u: %s", i, strerror(-e));
			return e;
		}
	}
	return 0;
}

static int vm_create_irqchip(struct vm *vm, char *err, size_t errlen)
{
	uint64_t ident = LAYOUT_IDENTITY_MAP_ADDR;
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	int e;

	/* Both addresses live in the device window, below the firmware area. */
	e = kvm_ioctl(vm->fd, KVM_SET_TSS_ADDR, (void *)(uintptr_t)LAYOUT_TSS_ADDR);
	if (e < 0) {
		snprintf(err, errlen, "KVM_SET_TSS_ADDR: %s", strerror(-e));
		return e;
	}
	e = kvm_ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &ident);
	if (e < 0) {
		snprintf(err, errlen, "KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(-e));
		return e;
	}
	e = kvm_ioctl(vm->fd, KVM_CREATE_IRQCHIP, NULL);
	if (e < 0) {
		snprintf(err, errlen, "KVM_CREATE_IRQCHIP: %s", strerror(-e));
		return e;
	}
	e = kvm_ioctl(vm->fd, KVM_CREATE_PIT2, &pit);
	if (e < 0) {
		snprintf(err, errlen, "KVM_CREATE_PIT2: %s", strerror(-e));
		return e;
	}
	return 0;
}

int vm_create(struct vm *vm, struct kvm *kvm, uint64_t ram_size, unsigned ncpus, unsigned gm_flags,
	      char *err, size_t errlen)
{
	int e;

	memset(vm, 0, sizeof(*vm));
	vm->fd = -1;
	vm->stop_eventfd = -1;
	vm->gm.memfd = -1;
	vm->kvm = kvm;
	if (ncpus == 0 || ncpus > VM_MAX_VCPUS || (int)ncpus > kvm->max_vcpus) {
		snprintf(err, errlen, "%u vCPUs requested; this host allows 1..%d", ncpus,
			 kvm->max_vcpus < VM_MAX_VCPUS ? kvm->max_vcpus : VM_MAX_VCPUS);
		return -EINVAL;
	}
	vm->ncpus = ncpus;
	pthread_mutex_init(&vm->stop_lock, NULL);
	pthread_cond_init(&vm->stop_cond, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	vm->stop_eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_eventfd < 0) {
		e = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(-e));
		goto err_destroy;
	}
	e = gm_init(&vm->gm, ram_size, gm_flags);
	if (e < 0) {
		snprintf(err, errlen, "cannot allocate %llu MiB of guest memory%s: %s",
			 (unsigned long long)(ram_size >> 20),
			 (gm_flags & GM_HUGEPAGES) ? " from hugetlbfs" : "", strerror(-e));
		goto err_destroy;
	}
	e = kvm_ioctl(kvm->fd, KVM_CREATE_VM, 0);
	if (e < 0) {
		snprintf(err, errlen, "KVM_CREATE_VM: %s", strerror(-e));
		goto err_destroy;
	}
	vm->fd = e;
	e = vm_create_irqchip(vm, err, errlen);
	if (e < 0)
		goto err_destroy;
	e = vm_set_memory(vm, err, errlen);
	if (e < 0)
		goto err_destroy;
	for (unsigned i = 0; i < ncpus; i++) {
		e = vcpu_create(&vm->vcpus[i], vm, i, err, errlen);
		if (e < 0)
			goto err_destroy;
	}
	return 0;

err_destroy:
	vm_destroy(vm);
	return e;
}

void vm_destroy(struct vm *vm)
{
	for (unsigned i = 0; i < VM_MAX_VCPUS; i++)
		vcpu_destroy(&vm->vcpus[i]);
	if (vm->fd >= 0)
		close(vm->fd);
	vm->fd = -1;
	gm_exit(&vm->gm);
	if (vm->stop_eventfd >= 0)
		close(vm->stop_eventfd);
	vm->stop_eventfd = -1;
	bus_exit(&vm->pio);
	bus_exit(&vm->mmio);
}

int vm_setup_vcpus(struct vm *vm, const struct boot_entry *entry, char *err, size_t errlen)
{
	vm->entry = *entry;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		int e = vcpu_setup(&vm->vcpus[i], i == 0 ? entry : NULL, err, errlen);

		if (e < 0)
			return e;
	}
	return 0;
}

int vm_start(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		int e = vcpu_start(&vm->vcpus[i]);

		if (e < 0) {
			vm_request_stop(vm, VM_STOP_ERROR, 1);
			return e;
		}
	}
	return 0;
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int status)
{
	uint64_t one = 1;
	bool first = false;

	pthread_mutex_lock(&vm->stop_lock);
	if (vm->stop_reason == VM_STOP_NONE) {
		vm->stop_reason = reason;
		vm->exit_status = status;
		first = true;
		pthread_cond_broadcast(&vm->stop_cond);
	}
	pthread_mutex_unlock(&vm->stop_lock);
	if (!first)
		return;
	if (write(vm->stop_eventfd, &one, sizeof(one)) < 0)
		log_debug("vm", "stop eventfd: %s", strerror(errno));
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
}

bool vm_stopping(struct vm *vm)
{
	return __atomic_load_n(&vm->stop_reason, __ATOMIC_ACQUIRE) != VM_STOP_NONE;
}

int vm_wait(struct vm *vm)
{
	pthread_mutex_lock(&vm->stop_lock);
	while (vm->stop_reason == VM_STOP_NONE)
		pthread_cond_wait(&vm->stop_cond, &vm->stop_lock);
	pthread_mutex_unlock(&vm->stop_lock);
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_join(&vm->vcpus[i]);
	return vm->exit_status;
}

static void vm_irq_set_level(struct irq *irq, bool level)
{
	struct vm *vm = irq->opaque;
	struct kvm_irq_level l = { .irq = irq->gsi, .level = level };

	if (kvm_ioctl(vm->fd, KVM_IRQ_LINE, &l) < 0)
		log_warn("vm", "KVM_IRQ_LINE %u: %s", irq->gsi, strerror(errno));
}

static const struct irq_ops vm_irq_ops = { .set_level = vm_irq_set_level };

void vm_irq_init(struct vm *vm, struct irq *irq, unsigned gsi)
{
	memset(irq, 0, sizeof(*irq));
	irq->ops = &vm_irq_ops;
	irq->opaque = vm;
	irq->gsi = gsi;
}

struct stats_ctx {
	FILE *out;
	const char *bus;
};

static void vm_print_range(const struct bus_range *r, void *arg)
{
	struct stats_ctx *c = arg;
	uint64_t rd = __atomic_load_n(&r->counters->reads, __ATOMIC_RELAXED);
	uint64_t wr = __atomic_load_n(&r->counters->writes, __ATOMIC_RELAXED);

	if (rd || wr)
		fprintf(c->out, "  %-4s %-16s %#10llx %12llu %12llu\n", c->bus, r->name,
			(unsigned long long)r->base, (unsigned long long)rd, (unsigned long long)wr);
}

void vm_print_stats(struct vm *vm, FILE *out)
{
	struct stats_ctx c = { .out = out };
	uint64_t total[KVM_EXIT_REASON_MAX] = { 0 };

	fprintf(out, "kestrel: exits by reason\n  %-16s", "reason");
	for (unsigned i = 0; i < vm->ncpus; i++)
		fprintf(out, " %10s%-2u", "vcpu", i);
	fprintf(out, " %12s\n", "total");
	for (unsigned r = 0; r < KVM_EXIT_REASON_MAX; r++)
		for (unsigned i = 0; i < vm->ncpus; i++)
			total[r] += vm->vcpus[i].stats.exits[r];
	for (unsigned r = 0; r < KVM_EXIT_REASON_MAX; r++) {
		if (!total[r])
			continue;
		fprintf(out, "  %-16s", kvm_exit_reason_name(r));
		for (unsigned i = 0; i < vm->ncpus; i++)
			fprintf(out, " %12llu", (unsigned long long)vm->vcpus[i].stats.exits[r]);
		fprintf(out, " %12llu\n", (unsigned long long)total[r]);
	}
	fprintf(out, "kestrel: device accesses\n  %-4s %-16s %10s %12s %12s\n", "bus", "device", "base",
		"reads", "writes");
	c.bus = "pio";
	bus_for_each(&vm->pio, vm_print_range, &c);
	c.bus = "mmio";
	bus_for_each(&vm->mmio, vm_print_range, &c);
	fprintf(out, "  unmapped: pio %llu reads %llu writes, mmio %llu reads %llu writes\n",
		(unsigned long long)vm->pio.unmapped_reads, (unsigned long long)vm->pio.unmapped_writes,
		(unsigned long long)vm->mmio.unmapped_reads, (unsigned long long)vm->mmio.unmapped_writes);
}

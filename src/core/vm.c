#include "core/vm.h"
#include "core/vcpu.h"
#include "mem/layout.h"
#include "util/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int vm_set_slot(struct vm *vm, unsigned i, uint32_t flags)
{
	const struct gm_region *r = &vm->gm.regions[i];
	struct kvm_userspace_memory_region mr = {
		.slot = i,
		.flags = flags,
		.guest_phys_addr = r->gpa,
		.memory_size = r->size,
		.userspace_addr = (uint64_t)(uintptr_t)r->host,
	};

	return kvm_ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &mr);
}

static int vm_set_memory(struct vm *vm, char *err, size_t errlen)
{
	for (unsigned i = 0; i < vm->gm.nr_regions; i++) {
		int e = vm_set_slot(vm, i, 0);

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
	      const char *mem_file, char *err, size_t errlen)
{
	int e;

	memset(vm, 0, sizeof(*vm));
	vm->fd = -1;
	vm->stop_eventfd = -1;
	vm->gm.memfd = -1;
	vm->kvm = kvm;
	/* vCPUs that never get created must not look like they own fd 0. */
	for (unsigned i = 0; i < VM_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;
	if (ncpus == 0 || ncpus > VM_MAX_VCPUS || (int)ncpus > kvm->max_vcpus) {
		snprintf(err, errlen, "%u vCPUs requested; this host allows 1..%d", ncpus,
			 kvm->max_vcpus < VM_MAX_VCPUS ? kvm->max_vcpus : VM_MAX_VCPUS);
		return -EINVAL;
	}
	vm->ncpus = ncpus;
	pthread_mutex_init(&vm->stop_lock, NULL);
	pthread_mutex_init(&vm->route_lock, NULL);
	pthread_cond_init(&vm->stop_cond, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	pthread_cond_init(&vm->parked_cond, NULL);
	e = bus_init(&vm->pio, "pio");
	e = e ?: bus_init(&vm->mmio, "mmio");
	if (e < 0) {
		snprintf(err, errlen, "device buses: %s", strerror(-e));
		goto err_destroy;
	}
	vm->stop_eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_eventfd < 0) {
		e = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(-e));
		goto err_destroy;
	}
	e = gm_check_host(ram_size, gm_flags, err, errlen);
	if (e < 0)
		goto err_destroy;
	if (mem_file) {
		e = gm_init_file(&vm->gm, ram_size, mem_file, err, errlen);
		if (e < 0)
			goto err_destroy;
	} else {
		e = gm_init(&vm->gm, ram_size, gm_flags);
	}
	if (e < 0) {
		uint64_t hp_free, hp_kib;

		if ((gm_flags & GM_HUGEPAGES) && e == -ENOMEM && gm_hugepages_free(&hp_free, &hp_kib) == 0)
			snprintf(err, errlen, "cannot reserve %llu MiB of guest memory from hugetlbfs: the host's "
				 "huge-page pool has %llu free %llu KiB pages, %llu are needed "
				 "(raise /proc/sys/vm/nr_hugepages, or run without huge pages)",
				 (unsigned long long)(ram_size >> 20), (unsigned long long)hp_free,
				 (unsigned long long)hp_kib,
				 (unsigned long long)(hp_kib ? (ram_size >> 10) / hp_kib : 0));
		else
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
	free(vm->routes);
	vm->routes = NULL;
	vm->nr_routes = vm->cap_routes = 0;
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
		/* Seq-cst: read without the lock by vCPUs between a kick and KVM_RUN (vcpu.c). */
		__atomic_store_n(&vm->stop_reason, reason, __ATOMIC_SEQ_CST);
		vm->exit_status = status;
		first = true;
		pthread_cond_broadcast(&vm->stop_cond);
	}
	pthread_mutex_unlock(&vm->stop_lock);
	if (!first)
		return;
	if (write(vm->stop_eventfd, &one, sizeof(one)) < 0)
		log_debug("vm", "stop eventfd: %s", strerror(errno));
	/* Parked vCPUs see the stop under the lock and leave. */
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
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

void vm_pause(struct vm *vm)
{
	/* Seen by a vCPU that clears immediate_exit after our kick set it (vcpu.c). */
	__atomic_store_n(&vm->pause_req, true, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].started)
			vcpu_kick(&vm->vcpus[i]);
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->nparked < vm->nrunning)
		pthread_cond_wait(&vm->parked_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	__atomic_store_n(&vm->pause_req, false, __ATOMIC_SEQ_CST);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

bool vm_paused(const struct vm *vm)
{
	return __atomic_load_n(&vm->pause_req, __ATOMIC_ACQUIRE);
}

int vm_dirty_log_enable(struct vm *vm, bool on)
{
	uint32_t flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0;
	unsigned i;
	int e = 0;

	if (vm->dirty_log == on)
		return 0;
	for (i = 0; i < vm->gm.nr_regions; i++) {
		e = vm_set_slot(vm, i, flags);
		if (e < 0)
			break;
	}
	if (e < 0) {
		log_warn("vm", "%s dirty logging on slot %u: %s", on ? "enabling" : "disabling", i,
			 strerror(-e));
		/* Leave every slot as it was. */
		while (i-- > 0)
			vm_set_slot(vm, i, on ? 0 : KVM_MEM_LOG_DIRTY_PAGES);
		return e;
	}
	vm->dirty_log = on;
	return 0;
}

bool vm_dirty_log_enabled(const struct vm *vm)
{
	return vm->dirty_log;
}

int vm_dirty_log_fetch(struct vm *vm, unsigned region, uint64_t *bitmap)
{
	struct kvm_dirty_log log = { .slot = region };
	uint64_t *tmp;
	size_t words;
	int e;

	if (region >= vm->gm.nr_regions)
		return -EINVAL;
	if (!vm->dirty_log)
		return -ENOENT;
	words = (vm->gm.regions[region].size / 4096 + 63) / 64;
	tmp = calloc(words ? words : 1, sizeof(*tmp));
	if (!tmp)
		return -ENOMEM;
	log.dirty_bitmap = tmp;
	/* Without KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled this also clears the log. */
	e = kvm_ioctl(vm->fd, KVM_GET_DIRTY_LOG, &log);
	if (e == 0)
		for (size_t w = 0; w < words; w++)
			bitmap[w] |= tmp[w];
	free(tmp);
	return e < 0 ? e : 0;
}

int vm_ioeventfd(struct vm *vm, uint64_t addr, unsigned len, bool pio, int64_t match, int fd, bool assign)
{
	struct kvm_ioeventfd io = {
		.datamatch = match >= 0 ? (uint64_t)match : 0,
		.addr = addr,
		.len = len,
		.fd = fd,
		.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN) |
			 (match >= 0 ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0),
	};

	return kvm_ioctl(vm->fd, KVM_IOEVENTFD, &io);
}

int vm_irqfd(struct vm *vm, int fd, unsigned gsi, bool assign)
{
	struct kvm_irqfd f = { .fd = (uint32_t)fd, .gsi = gsi, .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };

	return kvm_ioctl(vm->fd, KVM_IRQFD, &f);
}

#define VM_MAX_ROUTES 1024
#define VM_FIRST_MSI_GSI LAYOUT_IOAPIC_PINS

static int vm_route_add(struct vm *vm, const struct kvm_irq_routing_entry *e)
{
	if (vm->nr_routes == vm->cap_routes) {
		unsigned cap = vm->cap_routes ? vm->cap_routes * 2 : 64;
		struct kvm_irq_routing_entry *n;

		if (cap > VM_MAX_ROUTES)
			return -ENOSPC;
		n = realloc(vm->routes, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		vm->routes = n;
		vm->cap_routes = cap;
	}
	vm->routes[vm->nr_routes++] = *e;
	return 0;
}

/*
 * KVM_SET_GSI_ROUTING replaces the whole table, so ours starts as a copy of
 * KVM's default: GSIs 0-15 to both PICs and the IOAPIC, 16-23 to the IOAPIC.
 */
static int vm_routes_init(struct vm *vm)
{
	struct kvm_irq_routing_entry e;
	int r = 0;

	for (unsigned gsi = 0; gsi < LAYOUT_IOAPIC_PINS && !r; gsi++) {
		memset(&e, 0, sizeof(e));
		e.gsi = gsi;
		e.type = KVM_IRQ_ROUTING_IRQCHIP;
		if (gsi < 16) {
			e.u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
			e.u.irqchip.pin = gsi % 8;
			r = vm_route_add(vm, &e);
		}
		e.u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		e.u.irqchip.pin = gsi;
		r = r ?: vm_route_add(vm, &e);
	}
	vm->next_msi_gsi = VM_FIRST_MSI_GSI;
	return r;
}

/* Caller holds route_lock. */
static int vm_routes_commit(struct vm *vm)
{
	size_t sz = sizeof(struct kvm_irq_routing) + vm->nr_routes * sizeof(struct kvm_irq_routing_entry);
	struct kvm_irq_routing *t = calloc(1, sz);
	int r;

	if (!t)
		return -ENOMEM;
	/* Freed MSI slots (type 0) stay in our table for reuse but are not passed on. */
	for (unsigned i = 0; i < vm->nr_routes; i++)
		if (vm->routes[i].type != 0)
			t->entries[t->nr++] = vm->routes[i];
	r = kvm_ioctl(vm->fd, KVM_SET_GSI_ROUTING, t);
	free(t);
	return r < 0 ? r : 0;
}

int vm_msi_route_alloc(struct vm *vm)
{
	struct kvm_irq_routing_entry e = { .type = KVM_IRQ_ROUTING_MSI };
	int r;

	pthread_mutex_lock(&vm->route_lock);
	if (!vm->nr_routes && (r = vm_routes_init(vm)) < 0)
		goto out;
	/* Reuse a freed GSI (marked with type 0) before growing. */
	for (unsigned i = 0; i < vm->nr_routes; i++) {
		if (vm->routes[i].type == 0) {
			vm->routes[i].type = KVM_IRQ_ROUTING_MSI;
			memset(&vm->routes[i].u, 0, sizeof(vm->routes[i].u));
			r = (int)vm->routes[i].gsi;
			goto out;
		}
	}
	e.gsi = vm->next_msi_gsi;
	r = vm_route_add(vm, &e);
	if (r == 0)
		r = (int)vm->next_msi_gsi++;
out:
	pthread_mutex_unlock(&vm->route_lock);
	return r;
}

static struct kvm_irq_routing_entry *vm_route_find(struct vm *vm, unsigned gsi)
{
	for (unsigned i = 0; i < vm->nr_routes; i++)
		if (vm->routes[i].gsi == gsi && vm->routes[i].type == KVM_IRQ_ROUTING_MSI)
			return &vm->routes[i];
	return NULL;
}

int vm_msi_route_set(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data)
{
	struct kvm_irq_routing_entry *e;
	int r = -ENOENT;

	pthread_mutex_lock(&vm->route_lock);
	e = vm_route_find(vm, gsi);
	if (e) {
		e->u.msi.address_lo = (uint32_t)addr;
		e->u.msi.address_hi = (uint32_t)(addr >> 32);
		e->u.msi.data = data;
		r = vm_routes_commit(vm);
	}
	pthread_mutex_unlock(&vm->route_lock);
	return r;
}

int vm_msi_route_free(struct vm *vm, unsigned gsi)
{
	struct kvm_irq_routing_entry *e;
	int r = -ENOENT;

	pthread_mutex_lock(&vm->route_lock);
	e = vm_route_find(vm, gsi);
	if (e) {
		/* Mark it free; the table only grows. */
		e->type = 0;
		r = vm_routes_commit(vm);
	}
	pthread_mutex_unlock(&vm->route_lock);
	return r;
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

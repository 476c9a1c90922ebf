/*
 * vCPU threads: register setup for each boot mode and the KVM_RUN loop,
 * which acts on exit_decode()'s verdict for every exit (core/exit.c).
 */
#include "core/vcpu.h"
#include "core/exit.h"
#include "mem/layout.h"
#include "util/log.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define VCPU_KICK_SIGNAL SIGUSR1

#define X86_CR0_PE (1ull << 0)
#define X86_CR0_MP (1ull << 1)
#define X86_CR0_ET (1ull << 4)
#define X86_CR0_NE (1ull << 5)
#define X86_CR0_PG (1ull << 31)
#define X86_CR4_PAE (1ull << 5)
#define X86_EFER_LME (1ull << 8)
#define X86_EFER_LMA (1ull << 10)

#define MSR_IA32_TSC            0x10
#define MSR_IA32_SYSENTER_CS    0x174
#define MSR_IA32_SYSENTER_ESP   0x175
#define MSR_IA32_SYSENTER_EIP   0x176
#define MSR_IA32_MISC_ENABLE    0x1a0
#define MSR_MTRR_DEF_TYPE       0x2ff
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

int vcpu_create(struct vcpu *v, struct vm *vm, unsigned id, char *err, size_t errlen)
{
	void *run;
	int fd;

	memset(v, 0, sizeof(*v));
	v->fd = -1;
	fd = kvm_ioctl(vm->fd, KVM_CREATE_VCPU, (void *)(uintptr_t)id);
	if (fd < 0) {
		snprintf(err, errlen, "KVM_CREATE_VCPU %u: %s", id, strerror(-fd));
		return fd;
	}
	run = mmap(NULL, (size_t)vm->kvm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (run == MAP_FAILED) {
		int e = -errno;

		snprintf(err, errlen, "mmap of vCPU %u run area: %s", id, strerror(-e));
		close(fd);
		return e;
	}
	v->vm = vm;
	v->id = id;
	v->fd = fd;
	v->cpu = -1;
	v->run = run;
	return 0;
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->run)
		munmap(v->run, (size_t)v->vm->kvm->vcpu_mmap_size);
	if (v->fd >= 0)
		close(v->fd);
	free(v->cpuid);
	v->cpuid = NULL;
	v->run = NULL;
	v->fd = -1;
}

static int vcpu_set_msrs(struct vcpu *v)
{
	static const struct { unsigned index; uint64_t value; } init[] = {
		{ MSR_IA32_SYSENTER_CS, 0 }, { MSR_IA32_SYSENTER_ESP, 0 }, { MSR_IA32_SYSENTER_EIP, 0 },
		{ MSR_STAR, 0 }, { MSR_LSTAR, 0 }, { MSR_CSTAR, 0 }, { MSR_SYSCALL_MASK, 0 },
		{ MSR_KERNEL_GS_BASE, 0 }, { MSR_IA32_TSC, 0 },
		{ MSR_IA32_MISC_ENABLE, 1 },                 /* fast string operations */
		{ MSR_MTRR_DEF_TYPE, (1u << 11) | 6 },       /* MTRRs on, default write-back */
	};
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[sizeof(init) / sizeof(init[0])];
	} m;
	unsigned n = 0;
	int r;

	memset(&m, 0, sizeof(m));
	for (size_t i = 0; i < sizeof(init) / sizeof(init[0]); i++) {
		if (!kvm_msr_supported(v->vm->kvm, init[i].index))
			continue;
		m.e[n].index = init[i].index;
		m.e[n].data = init[i].value;
		n++;
	}
	m.hdr.nmsrs = n;
	r = kvm_ioctl(v->fd, KVM_SET_MSRS, &m);
	if (r < 0)
		return r;
	return r == (int)n ? 0 : -EINVAL;
}

static void lapic_set_lvt_mode(struct kvm_lapic_state *s, unsigned reg, unsigned mode)
{
	uint32_t val;

	memcpy(&val, &s->regs[reg], 4);
	val = (val & ~0x700u) | (mode << 8);
	memcpy(&s->regs[reg], &val, 4);
}

/* Virtual-wire mode as a PC BIOS leaves it: LINT0 ExtINT (PIC), LINT1 NMI. */
static int vcpu_set_lapic(struct vcpu *v)
{
	struct kvm_lapic_state s;
	int r = kvm_ioctl(v->fd, KVM_GET_LAPIC, &s);

	if (r < 0)
		return r;
	lapic_set_lvt_mode(&s, APIC_LVT_LINT0, APIC_MODE_EXTINT);
	lapic_set_lvt_mode(&s, APIC_LVT_LINT1, APIC_MODE_NMI);
	return kvm_ioctl(v->fd, KVM_SET_LAPIC, &s);
}

static int vcpu_set_fpu(struct vcpu *v)
{
	struct kvm_fpu fpu;

	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	return kvm_ioctl(v->fd, KVM_SET_FPU, &fpu);
}

static struct kvm_segment seg_flat(uint16_t sel, uint8_t type, bool code64, bool db)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = db, .s = 1, .l = code64, .g = 1,
	};
}

static int vcpu_set_boot_regs(struct vcpu *v, const struct boot_entry *e)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	bool lm = e->mode != BOOT_MODE_PVH32;
	int r;

	r = kvm_ioctl(v->fd, KVM_GET_SREGS, &sregs);
	if (r < 0)
		return r;
	sregs.cs = seg_flat(0x10, 0xb, lm, !lm);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = seg_flat(0x18, 0x3, false, true);
	sregs.gdt.base = e->gdt_base;
	sregs.gdt.limit = e->gdt_limit;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	/* A busy 32/64-bit TSS and an unusable LDT keep VM entry checks happy. */
	sregs.tr = (struct kvm_segment){ .limit = 0xffff, .type = 0xb, .present = 1 };
	sregs.ldt = (struct kvm_segment){ .type = 0x2, .present = 1, .unusable = 1 };
	if (lm) {
		sregs.cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
		sregs.cr3 = e->cr3;
		sregs.cr4 = X86_CR4_PAE;
		sregs.efer = X86_EFER_LME | X86_EFER_LMA;
	} else {
		sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
		sregs.cr3 = 0;
		sregs.cr4 = 0;
		sregs.efer = 0;
	}
	r = kvm_ioctl(v->fd, KVM_SET_SREGS, &sregs);
	if (r < 0)
		return r;
	memset(&regs, 0, sizeof(regs));
	regs.rflags = 2;
	regs.rip = e->rip;
	regs.rsp = e->rsp;
	regs.rsi = e->rsi;
	regs.rbx = e->rbx;
	return kvm_ioctl(v->fd, KVM_SET_REGS, &regs);
}

/*
 * A copy is kept: KVM_GET_CPUID2 is no record of it (kvm_pvm answers with
 * bits that were never set), and a snapshot must carry what the guest saw.
 */
int vcpu_set_cpuid(struct vcpu *v, const struct kvm_cpuid2 *cpuid)
{
	size_t sz = sizeof(*cpuid) + cpuid->nent * sizeof(cpuid->entries[0]);
	struct kvm_cpuid2 *copy = malloc(sz);
	int r;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, cpuid, sz);
	r = kvm_ioctl(v->fd, KVM_SET_CPUID2, copy);
	if (r < 0) {
		free(copy);
		return r;
	}
	free(v->cpuid);
	v->cpuid = copy;
	return 0;
}

int vcpu_setup(struct vcpu *v, const struct boot_entry *entry, char *err, size_t errlen)
{
	struct kvm_cpuid2 *cpuid = cpuid_for_vcpu(v->vm->kvm, v->id, v->vm->ncpus);
	const char *what;
	int r;

	if (!cpuid) {
		snprintf(err, errlen, "vCPU %u: out of memory", v->id);
		return -ENOMEM;
	}
	r = vcpu_set_cpuid(v, cpuid);
	free(cpuid);
	what = "KVM_SET_CPUID2";
	if (r < 0)
		goto err;
	what = "KVM_SET_MSRS";
	r = vcpu_set_msrs(v);
	if (r < 0)
		goto err;
	what = "KVM_SET_LAPIC";
	r = vcpu_set_lapic(v);
	if (r < 0)
		goto err;
	what = "KVM_SET_FPU";
	r = vcpu_set_fpu(v);
	if (r < 0)
		goto err;
	if (entry) {
		what = "KVM_SET_SREGS/REGS";
		r = vcpu_set_boot_regs(v, entry);
		if (r < 0)
			goto err;
	}
	return 0;
err:
	snprintf(err, errlen, "vCPU %u: %s: %s", v->id, what, strerror(-r));
	return r;
}

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

void vcpu_kick(struct vcpu *v)
{
	if (!v->run)
		return;
	/*
	 * Sequentially consistent, like the vCPU's clear and its flag reads
	 * (vcpu_interrupted): either the vCPU sees the caller's pause/stop flag,
	 * or its next KVM_RUN sees immediate_exit = 1.
	 */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (v->started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

static void vcpu_dump_seg(FILE *out, const char *name, const struct kvm_segment *s)
{
	fprintf(out, "  %-3s sel=%04x base=%016llx limit=%08x type=%x dpl=%u p=%u l=%u db=%u\n", name,
		s->selector, (unsigned long long)s->base, s->limit, s->type, s->dpl, s->present, s->l,
		s->db);
}

void vcpu_dump(struct vcpu *v, FILE *out)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_translation tr;
	const uint8_t *code;

	if (kvm_ioctl(v->fd, KVM_GET_REGS, &r) < 0 || kvm_ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		fprintf(out, "kestrel: vCPU %u: registers unavailable\n", v->id);
		return;
	}
	fprintf(out, "kestrel: vCPU %u registers:\n", v->id);
	fprintf(out, "  rip=%016llx rsp=%016llx rflags=%016llx\n", (unsigned long long)r.rip,
		(unsigned long long)r.rsp, (unsigned long long)r.rflags);
	fprintf(out, "  rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n", (unsigned long long)r.rax,
		(unsigned long long)r.rbx, (unsigned long long)r.rcx, (unsigned long long)r.rdx);
	fprintf(out, "  rsi=%016llx rdi=%016llx rbp=%016llx\n", (unsigned long long)r.rsi,
		(unsigned long long)r.rdi, (unsigned long long)r.rbp);
	fprintf(out, "  r8 =%016llx r9 =%016llx r10=%016llx r11=%016llx\n", (unsigned long long)r.r8,
		(unsigned long long)r.r9, (unsigned long long)r.r10, (unsigned long long)r.r11);
	fprintf(out, "  r12=%016llx r13=%016llx r14=%016llx r15=%016llx\n", (unsigned long long)r.r12,
		(unsigned long long)r.r13, (unsigned long long)r.r14, (unsigned long long)r.r15);
	fprintf(out, "  cr0=%016llx cr2=%016llx cr3=%016llx cr4=%016llx efer=%llx\n",
		(unsigned long long)s.cr0, (unsigned long long)s.cr2, (unsigned long long)s.cr3,
		(unsigned long long)s.cr4, (unsigned long long)s.efer);
	vcpu_dump_seg(out, "cs", &s.cs);
	vcpu_dump_seg(out, "ss", &s.ss);
	vcpu_dump_seg(out, "ds", &s.ds);
	vcpu_dump_seg(out, "tr", &s.tr);
	fprintf(out, "  gdt=%016llx/%x idt=%016llx/%x\n", (unsigned long long)s.gdt.base, s.gdt.limit,
		(unsigned long long)s.idt.base, s.idt.limit);
	/* The bytes at RIP, through the guest's own page tables. */
	memset(&tr, 0, sizeof(tr));
	tr.linear_address = s.cs.base + r.rip;
	if (kvm_ioctl(v->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid) {
		fprintf(out, "  code: rip not mapped\n");
		return;
	}
	code = gm_ptr(&v->vm->gm, tr.physical_address, 16);
	if (!code) {
		fprintf(out, "  code: rip -> gpa %#llx is not RAM\n", (unsigned long long)tr.physical_address);
		return;
	}
	fprintf(out, "  code at gpa %#llx:", (unsigned long long)tr.physical_address);
	for (int i = 0; i < 16; i++)
		fprintf(out, " %02x", code[i]);
	fprintf(out, "\n");
}

static void vcpu_fatal(struct vcpu *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One message, one register dump, then the whole VM stops with status 1. */
static void vcpu_fatal(struct vcpu *v, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!vm_stopping(v->vm)) {
		fprintf(stderr, "\nkestrel: vCPU %u: %s\n", v->id, msg);
		vcpu_dump(v, stderr);
	}
	vm_request_stop(v->vm, VM_STOP_ERROR, 1);
}

/* Returns false when the loop must end. */
static bool vcpu_handle_exit(struct vcpu *v)
{
	const struct exit_env env = {
		.pio = &v->vm->pio, .mmio = &v->vm->mmio, .stats = &v->stats,
		.hw_virt = v->vm->kvm->hw_virt,
	};
	struct exit_verdict verdict;

	exit_decode(v->run, (size_t)v->vm->kvm->vcpu_mmap_size, &env, &verdict);
	switch (verdict.action) {
	case EXIT_CONTINUE:
		return true;
	case EXIT_HALTED: {
		/* Only without an in-kernel LAPIC; keep the vCPU parked cheaply. */
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
		return true;
	}
	case EXIT_STOP:
		break;
	}
	/* The first stop request wins; later ones (other vCPUs) say nothing. */
	if (verdict.msg[0] && !vm_stopping(v->vm)) {
		fprintf(stderr, "\nkestrel: vCPU %u: %s\n", v->id, verdict.msg);
		if (verdict.dump)
			vcpu_dump(v, stderr);
	}
	vm_request_stop(v->vm, verdict.reason, verdict.status);
	return false;
}

/*
 * KVM_RUN returned -EINTR: a kick (immediate_exit or the signal) with any
 * pending PIO/MMIO read completed, so the vCPU state is consistent. Park
 * while a pause is requested. immediate_exit is cleared *before* the flags
 * are read: a kick that lands after the clear sets it again and the next
 * KVM_RUN returns at once, so no kick is lost between here and KVM_RUN.
 */
static void vcpu_interrupted(struct vcpu *v)
{
	struct vm *vm = v->vm;

	for (;;) {
		__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		if (!__atomic_load_n(&vm->pause_req, __ATOMIC_SEQ_CST) ||
		    __atomic_load_n(&vm->stop_reason, __ATOMIC_SEQ_CST) != VM_STOP_NONE)
			return;
		pthread_mutex_lock(&vm->pause_lock);
		if (vm_paused(vm) && !vm_stopping(vm)) {
			vm->nparked++;
			pthread_cond_broadcast(&vm->parked_cond);
			while (vm_paused(vm) && !vm_stopping(vm))
				pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
			vm->nparked--;
		}
		pthread_mutex_unlock(&vm->pause_lock);
	}
}

static void vcpu_thread_done(struct vcpu *v)
{
	struct vm *vm = v->vm;

	pthread_mutex_lock(&vm->pause_lock);
	vm->nrunning--;
	pthread_cond_broadcast(&vm->parked_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	if (v->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(v->cpu, &set);
		if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set))
			log_warn("vcpu", "vCPU %u: cannot pin to host CPU %d", v->id, v->cpu);
	}
	if (v->id == 0 && v->vm->on_first_run)
		v->vm->on_first_run(v->vm, v->vm->on_first_run_opaque);
	/* A VM paused (or stopped) before it started parks (or ends) here. */
	vcpu_interrupted(v);
	while (!vm_stopping(v->vm)) {
		int r = ioctl(v->fd, KVM_RUN, 0);

		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vcpu_interrupted(v);
				continue;
			}
			vcpu_fatal(v, "KVM_RUN: %s", strerror(errno));
			break;
		}
		if (!vcpu_handle_exit(v))
			break;
	}
	vcpu_thread_done(v);
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	static const struct sigaction sa = { .sa_handler = vcpu_kick_handler };
	sigset_t all, old;
	int r;

	/* No SA_RESTART: the kick must interrupt KVM_RUN with EINTR. */
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
	/* vCPU threads take only the kick signal; the main thread handles the rest. */
	sigfillset(&all);
	sigdelset(&all, VCPU_KICK_SIGNAL);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_mutex_lock(&v->vm->pause_lock);
	v->vm->nrunning++;
	pthread_mutex_unlock(&v->vm->pause_lock);
	r = -pthread_create(&v->thread, NULL, vcpu_thread, v);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r == 0) {
		v->started = true;
	} else {
		pthread_mutex_lock(&v->vm->pause_lock);
		v->vm->nrunning--;
		pthread_mutex_unlock(&v->vm->pause_lock);
	}
	return r;
}

void vcpu_join(struct vcpu *v)
{
	if (!v->started)
		return;
	vcpu_kick(v);
	pthread_join(v->thread, NULL);
	v->started = false;
}

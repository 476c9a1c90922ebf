/*
 * The KVM side of a snapshot: what KVM holds for a VM and each vCPU, saved
 * as snapshot sections and loaded back into a fresh VM.
 *
 * KVM structures are stored as length-prefixed raw bytes (the x86-64 host
 * ABI of <linux/kvm.h>); a length that is not this host's size is refused.
 * Pieces that depend on an optional capability carry a presence byte, so a
 * host without it can still save, and a host that lacks what a snapshot
 * holds refuses to load it instead of dropping state.
 *
 *   kvm.vm     : 3 x kvm_irqchip (PIC master, PIC slave, IOAPIC) |
 *                u8 has_pit, kvm_pit_state2 | u8 has_clock, u64 kvmclock ns
 *   kvm.vcpu.N : u32 nent, kvm_cpuid_entry2[nent] | kvm_sregs | kvm_regs |
 *                u8 fpu form (0 FPU, 1 XSAVE), kvm_fpu or XSAVE area |
 *                u8 has_xcrs, kvm_xcrs | u32 nmsrs, (u32 index, u64 value)... |
 *                kvm_lapic_state | u8 has_events, kvm_vcpu_events |
 *                u32 mp_state | u8 has_debugregs, kvm_debugregs
 *
 * Loading parses and checks every section first (count, sizes, MSR indices,
 * CPUID against what this host supports), then applies them. KVM itself can
 * still refuse a value (a bad CR0, say); the VM is then half-restored and the
 * caller throws it away, as it does after any failed restore.
 */
#include "core/vcpu.h"
#include "snapshot/snap.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VMSTATE_VM_VERSION   1
#define VMSTATE_VCPU_VERSION 1
#define VMSTATE_MAX_CPUID    256     /* KVM's own limit on CPUID entries */
#define VMSTATE_MAX_MSRS     64

#define FPU_FORM_FPU   0
#define FPU_FORM_XSAVE 1

#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MSR_MTRR_VAR_FIRST    0x200
#define MSR_MTRR_VAR_LAST     0x20f
#define CPUID_1_EDX_MTRR      (1u << 12)

/*
 * The MSRs a snapshot carries, in the order they are restored: TSC first
 * (KVM synchronises the TSC offset on a host write), ASYNC_PF_INT before
 * ASYNC_PF_EN (enabling checks the vector). TSC_DEADLINE is written after
 * the LAPIC: KVM ignores it unless the LAPIC timer is in deadline mode.
 * Saved when KVM_GET_MSR_INDEX_LIST lists them; MTRRs, which that list never
 * holds, when the guest's CPUID has MTRR.
 */
static const uint32_t vmstate_msrs[] = {
	0x10,                                   /* TSC */
	0x3b,                                   /* TSC_ADJUST */
	0x174, 0x175, 0x176,                    /* SYSENTER_CS/ESP/EIP */
	0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, /* STAR, LSTAR, CSTAR, SFMASK */
	0xc0000102,                             /* KERNEL_GS_BASE */
	0xc0000103,                             /* TSC_AUX */
	0x277,                                  /* PAT */
	0x1a0,                                  /* MISC_ENABLE */
	0x48,                                   /* SPEC_CTRL */
	0x17a, 0x17b,                           /* MCG_STATUS, MCG_CTL */
	0x140,                                  /* MISC_FEATURES_ENABLES */
	0x4b564d00, 0x4b564d01,                 /* kvmclock WALL_CLOCK_NEW, SYSTEM_TIME_NEW */
	0x4b564d03,                             /* STEAL_TIME */
	0x4b564d04,                             /* PV_EOI_EN */
	0x4b564d05,                             /* POLL_CONTROL */
	0x4b564d06,                             /* ASYNC_PF_INT */
	0x4b564d02,                             /* ASYNC_PF_EN */
	0x2ff,                                  /* MTRR default type */
	0x250, 0x258, 0x259,                    /* fixed MTRRs */
	0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
	0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, /* variable MTRRs */
	0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f,
	MSR_IA32_TSC_DEADLINE,
};
_Static_assert(sizeof(vmstate_msrs) / sizeof(vmstate_msrs[0]) <= VMSTATE_MAX_MSRS, "MSR bound");

static bool msr_is_mtrr(uint32_t i)
{
	return i == 0x2ff || i == 0x250 || i == 0x258 || i == 0x259 || (i >= 0x268 && i <= 0x26f) ||
	       (i >= MSR_MTRR_VAR_FIRST && i <= MSR_MTRR_VAR_LAST);
}

struct vmstate_msr {
	uint32_t index;
	uint64_t value;
};

struct vcpu_state {
	struct kvm_cpuid2 *cpuid;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	uint8_t fpu_form;
	struct kvm_fpu fpu;
	void *xsave;
	size_t xsave_size;
	bool has_xcrs;
	struct kvm_xcrs xcrs;
	unsigned nmsrs;
	struct vmstate_msr msrs[VMSTATE_MAX_MSRS];
	struct kvm_lapic_state lapic;
	bool has_events;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	bool has_debugregs;
	struct kvm_debugregs dbg;
};

struct vm_kstate {
	struct kvm_irqchip chip[3];
	bool has_pit;
	struct kvm_pit_state2 pit;
	bool has_clock;
	uint64_t clock;
};

static int vm_cap(const struct vm *vm, int cap)
{
	int r = kvm_ioctl(vm->fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)cap);

	return r < 0 ? 0 : r;
}

/* Size of this host's XSAVE area for KVM_GET/SET_XSAVE(2); 0 without XSAVE. */
static size_t vm_xsave_size(const struct vm *vm)
{
	int n;

	if (!vm_cap(vm, KVM_CAP_XSAVE))
		return 0;
	n = vm_cap(vm, KVM_CAP_XSAVE2);
	return n > (int)sizeof(struct kvm_xsave) ? (size_t)n : sizeof(struct kvm_xsave);
}

static const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; c && i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == fn &&
		    (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == idx))
			return e;
	}
	return NULL;
}

static bool vmstate_msr_wanted(const struct kvm *kvm, const struct kvm_cpuid2 *cpuid, uint32_t index)
{
	bool listed = false;

	for (size_t i = 0; i < sizeof(vmstate_msrs) / sizeof(vmstate_msrs[0]); i++)
		listed |= vmstate_msrs[i] == index;
	if (!listed)
		return false;
	if (kvm_msr_supported(kvm, index))
		return true;
	if (msr_is_mtrr(index)) {
		const struct kvm_cpuid_entry2 *e = cpuid_find(cpuid, 1, 0);

		return e && (e->edx & CPUID_1_EDX_MTRR);
	}
	return false;
}

static void vcpu_state_free(struct vcpu_state *st)
{
	if (!st)
		return;
	free(st->cpuid);
	free(st->xsave);
	free(st);
}

/* --- save ------------------------------------------------------------- */

static int vmstate_get_cpuid(struct vcpu *v, struct vcpu_state *st)
{
	size_t sz;

	if (!v->cpuid)
		return -ENODATA;   /* never set up: nothing a snapshot could restore */
	sz = sizeof(*v->cpuid) + v->cpuid->nent * sizeof(v->cpuid->entries[0]);
	st->cpuid = malloc(sz);
	if (!st->cpuid)
		return -ENOMEM;
	memcpy(st->cpuid, v->cpuid, sz);
	return 0;
}

static struct kvm_msrs *msrs_new(void)
{
	return calloc(1, sizeof(struct kvm_msrs) + VMSTATE_MAX_MSRS * sizeof(struct kvm_msr_entry));
}

static int vmstate_get_msrs(struct vcpu *v, struct vcpu_state *st, char *err, size_t errlen)
{
	struct kvm_msrs *m = msrs_new();
	unsigned n = 0;
	int r;

	if (!m)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(vmstate_msrs) / sizeof(vmstate_msrs[0]); i++)
		if (vmstate_msr_wanted(v->vm->kvm, st->cpuid, vmstate_msrs[i]))
			m->entries[n++].index = vmstate_msrs[i];
	m->nmsrs = n;
	r = kvm_ioctl(v->fd, KVM_GET_MSRS, m);
	if (r < 0) {
		snprintf(err, errlen, "snapshot: kvm.vcpu.%u: KVM_GET_MSRS: %s", v->id, strerror(-r));
	} else if ((unsigned)r != n) {
		snprintf(err, errlen, "snapshot: kvm.vcpu.%u: KVM_GET_MSRS cannot read MSR %#x", v->id,
			 m->entries[r].index);
		r = -EIO;
	} else {
		st->nmsrs = n;
		for (unsigned i = 0; i < n; i++)
			st->msrs[i] = (struct vmstate_msr){ m->entries[i].index, m->entries[i].data };
		r = 0;
	}
	free(m);
	return r;
}

/* Read everything of one vCPU before its section is opened. */
static int vmstate_get_vcpu(struct vcpu *v, struct vcpu_state *st, char *err, size_t errlen)
{
	struct vm *vm = v->vm;
	const char *what;
	int r;

	what = "CPUID";
	r = vmstate_get_cpuid(v, st);
	if (r < 0)
		goto err;
	what = "KVM_GET_SREGS";
	r = kvm_ioctl(v->fd, KVM_GET_SREGS, &st->sregs);
	if (r < 0)
		goto err;
	what = "KVM_GET_REGS";
	r = kvm_ioctl(v->fd, KVM_GET_REGS, &st->regs);
	if (r < 0)
		goto err;
	st->xsave_size = vm_xsave_size(vm);
	if (st->xsave_size) {
		st->fpu_form = FPU_FORM_XSAVE;
		st->xsave = calloc(1, st->xsave_size);
		r = -ENOMEM;
		what = "XSAVE buffer";
		if (!st->xsave)
			goto err;
		what = st->xsave_size > sizeof(struct kvm_xsave) ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE";
		r = kvm_ioctl(v->fd, st->xsave_size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE,
			      st->xsave);
	} else {
		st->fpu_form = FPU_FORM_FPU;
		what = "KVM_GET_FPU";
		r = kvm_ioctl(v->fd, KVM_GET_FPU, &st->fpu);
	}
	if (r < 0)
		goto err;
	st->has_xcrs = vm_cap(vm, KVM_CAP_XCRS);
	what = "KVM_GET_XCRS";
	if (st->has_xcrs && (r = kvm_ioctl(v->fd, KVM_GET_XCRS, &st->xcrs)) < 0)
		goto err;
	r = vmstate_get_msrs(v, st, err, errlen);
	if (r < 0)
		return r;
	what = "KVM_GET_LAPIC";
	r = kvm_ioctl(v->fd, KVM_GET_LAPIC, &st->lapic);
	if (r < 0)
		goto err;
	st->has_events = vm_cap(vm, KVM_CAP_VCPU_EVENTS);
	what = "KVM_GET_VCPU_EVENTS";
	if (st->has_events && (r = kvm_ioctl(v->fd, KVM_GET_VCPU_EVENTS, &st->events)) < 0)
		goto err;
	what = "KVM_GET_MP_STATE";
	r = kvm_ioctl(v->fd, KVM_GET_MP_STATE, &st->mp);
	if (r < 0)
		goto err;
	st->has_debugregs = vm_cap(vm, KVM_CAP_DEBUGREGS);
	what = "KVM_GET_DEBUGREGS";
	if (st->has_debugregs && (r = kvm_ioctl(v->fd, KVM_GET_DEBUGREGS, &st->dbg)) < 0)
		goto err;
	return 0;
err:
	if (r == -ENODATA)
		snprintf(err, errlen, "snapshot: kvm.vcpu.%u: the vCPU was never set up", v->id);
	else
		snprintf(err, errlen, "snapshot: kvm.vcpu.%u: %s: %s", v->id, what, strerror(-r));
	return r;
}

static void put_blob(struct snap_writer *w, const void *p, size_t n)
{
	snap_put_u32(w, (uint32_t)n);
	snap_put(w, p, n);
}

static void vmstate_put_vcpu(struct snap_writer *w, unsigned id, const struct vcpu_state *st)
{
	char name[SNAP_NAME_LEN];

	snprintf(name, sizeof(name), "kvm.vcpu.%u", id);
	snap_begin(w, name, VMSTATE_VCPU_VERSION);
	snap_put_u32(w, st->cpuid->nent);
	put_blob(w, st->cpuid->entries, st->cpuid->nent * sizeof(st->cpuid->entries[0]));
	put_blob(w, &st->sregs, sizeof(st->sregs));
	put_blob(w, &st->regs, sizeof(st->regs));
	snap_put_u8(w, st->fpu_form);
	if (st->fpu_form == FPU_FORM_XSAVE)
		put_blob(w, st->xsave, st->xsave_size);
	else
		put_blob(w, &st->fpu, sizeof(st->fpu));
	snap_put_bool(w, st->has_xcrs);
	if (st->has_xcrs)
		put_blob(w, &st->xcrs, sizeof(st->xcrs));
	snap_put_u32(w, st->nmsrs);
	for (unsigned i = 0; i < st->nmsrs; i++) {
		snap_put_u32(w, st->msrs[i].index);
		snap_put_u64(w, st->msrs[i].value);
	}
	put_blob(w, &st->lapic, sizeof(st->lapic));
	snap_put_bool(w, st->has_events);
	if (st->has_events)
		put_blob(w, &st->events, sizeof(st->events));
	snap_put_u32(w, st->mp.mp_state);
	snap_put_bool(w, st->has_debugregs);
	if (st->has_debugregs)
		put_blob(w, &st->dbg, sizeof(st->dbg));
	snap_end(w);
}

static int vmstate_get_vm(struct vm *vm, struct vm_kstate *ks, char *err, size_t errlen)
{
	static const char *const chip_names[3] = { "PIC master", "PIC slave", "IOAPIC" };
	struct kvm_clock_data clk;
	int r;

	memset(ks, 0, sizeof(*ks));
	for (unsigned i = 0; i < 3; i++) {
		ks->chip[i].chip_id = i;
		r = kvm_ioctl(vm->fd, KVM_GET_IRQCHIP, &ks->chip[i]);
		if (r < 0) {
			snprintf(err, errlen, "snapshot: kvm.vm: KVM_GET_IRQCHIP (%s): %s", chip_names[i],
				 strerror(-r));
			return r;
		}
	}
	ks->has_pit = vm_cap(vm, KVM_CAP_PIT_STATE2);
	if (ks->has_pit && (r = kvm_ioctl(vm->fd, KVM_GET_PIT2, &ks->pit)) < 0) {
		snprintf(err, errlen, "snapshot: kvm.vm: KVM_GET_PIT2: %s", strerror(-r));
		return r;
	}
	ks->has_clock = vm_cap(vm, KVM_CAP_ADJUST_CLOCK);
	if (ks->has_clock) {
		memset(&clk, 0, sizeof(clk));
		r = kvm_ioctl(vm->fd, KVM_GET_CLOCK, &clk);
		if (r < 0) {
			snprintf(err, errlen, "snapshot: kvm.vm: KVM_GET_CLOCK: %s", strerror(-r));
			return r;
		}
		ks->clock = clk.clock;
	}
	return 0;
}

static bool vm_quiescent(struct vm *vm)
{
	bool ok;

	pthread_mutex_lock(&vm->pause_lock);
	ok = vm->nrunning == 0 || (vm_paused(vm) && vm->nparked == vm->nrunning);
	pthread_mutex_unlock(&vm->pause_lock);
	return ok;
}

int vm_save_state(struct vm *vm, struct snap_writer *w, char *err, size_t errlen)
{
	struct vcpu_state *st[VM_MAX_VCPUS] = { 0 };
	struct vm_kstate ks;
	int r = 0;

	if (!vm_quiescent(vm)) {
		snprintf(err, errlen, "snapshot: the vCPUs are running; pause the VM first");
		return -EBUSY;
	}
	/* Everything is read before the first section is written. */
	for (unsigned i = 0; i < vm->ncpus && r == 0; i++) {
		st[i] = calloc(1, sizeof(*st[i]));
		if (!st[i]) {
			snprintf(err, errlen, "snapshot: out of memory");
			r = -ENOMEM;
			break;
		}
		r = vmstate_get_vcpu(&vm->vcpus[i], st[i], err, errlen);
	}
	if (r == 0)
		r = vmstate_get_vm(vm, &ks, err, errlen);
	if (r == 0) {
		snap_begin(w, "kvm.vm", VMSTATE_VM_VERSION);
		for (unsigned i = 0; i < 3; i++)
			put_blob(w, &ks.chip[i], sizeof(ks.chip[i]));
		snap_put_bool(w, ks.has_pit);
		if (ks.has_pit)
			put_blob(w, &ks.pit, sizeof(ks.pit));
		snap_put_bool(w, ks.has_clock);
		snap_put_u64(w, ks.clock);
		snap_end(w);
		for (unsigned i = 0; i < vm->ncpus; i++)
			vmstate_put_vcpu(w, i, st[i]);
	}
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_state_free(st[i]);
	return r;
}

/* --- load: parse and check ------------------------------------------------ */

struct vmstate_ctx {
	const char *sec;
	char *err;
	size_t errlen;
};

static int load_fail(struct vmstate_ctx *c, struct snap_sec *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int load_fail(struct vmstate_ctx *c, struct snap_sec *s, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(c->err, c->errlen, "snapshot: %s: %s", c->sec, msg);
	if (s)
		snap_sec_fail(s);
	return -EINVAL;
}

static int get_blob(struct vmstate_ctx *c, struct snap_sec *s, void *dst, size_t n, const char *what)
{
	uint32_t len = snap_get_u32(s);

	if (s->err)
		return load_fail(c, s, "truncated at %s", what);
	if (len != n)
		return load_fail(c, s, "%s size %u, this host needs %zu", what, len, n);
	if (snap_get(s, dst, n) < 0)
		return load_fail(c, s, "truncated in %s", what);
	return 0;
}

static int get_flag(struct vmstate_ctx *c, struct snap_sec *s, bool *v, const char *what)
{
	*v = snap_get_bool(s);
	return s->err ? load_fail(c, s, "bad or missing %s flag", what) : 0;
}

/* Feature registers the guest saw must all be offered by this host. */
static int vmstate_check_cpuid(struct vmstate_ctx *c, const struct kvm *kvm, const struct kvm_cpuid2 *saved)
{
	static const struct {
		uint32_t fn, idx;
		uint8_t reg;        /* 0 eax, 1 ebx, 2 ecx, 3 edx */
		uint32_t ignore;    /* bits KVM or kestrel set per vCPU or at run time */
		const char *name;
	} feats[] = {
		{ 1, 0, 2, (1u << 27) | (1u << 31), "1.ECX" },          /* OSXSAVE, hypervisor */
		{ 1, 0, 3, (1u << 9) | (1u << 28), "1.EDX" },           /* APIC (enable bit), HTT */
		{ 7, 0, 1, 0, "7.0.EBX" },
		{ 7, 0, 2, 1u << 4, "7.0.ECX" },                        /* OSPKE */
		{ 7, 0, 3, 0, "7.0.EDX" },
		{ 7, 1, 0, 0, "7.1.EAX" },
		{ 0xd, 0, 0, 0, "0xD.0.EAX (XCR0 features)" },
		{ 0xd, 0, 3, 0, "0xD.0.EDX (XCR0 features)" },
		{ 0xd, 1, 0, 0, "0xD.1.EAX" },
		{ 0x80000001, 0, 2, 0, "0x80000001.ECX" },
		{ 0x80000001, 0, 3, 0, "0x80000001.EDX" },
		{ 0x80000007, 0, 3, 0, "0x80000007.EDX" },
		{ 0x80000008, 0, 1, 0, "0x80000008.EBX" },
		{ 0x40000001, 0, 0, 0, "0x40000001.EAX (KVM features)" },
	};
	const struct kvm_cpuid_entry2 *hs, *gs;

	hs = cpuid_find(kvm->cpuid, 0, 0);
	gs = cpuid_find(saved, 0, 0);
	if (!gs || !hs || hs->ebx != gs->ebx || hs->ecx != gs->ecx || hs->edx != gs->edx)
		return load_fail(c, NULL, "the CPU vendor differs from this host's");
	for (size_t i = 0; i < sizeof(feats) / sizeof(feats[0]); i++) {
		uint32_t gv, hv;

		gs = cpuid_find(saved, feats[i].fn, feats[i].idx);
		if (!gs)
			continue;
		hs = cpuid_find(kvm->cpuid, feats[i].fn, feats[i].idx);
		switch (feats[i].reg) {
		case 0: gv = gs->eax; hv = hs ? hs->eax : 0; break;
		case 1: gv = gs->ebx; hv = hs ? hs->ebx : 0; break;
		case 2: gv = gs->ecx; hv = hs ? hs->ecx : 0; break;
		default: gv = gs->edx; hv = hs ? hs->edx : 0; break;
		}
		gv &= ~feats[i].ignore;
		if (gv & ~hv)
			return load_fail(c, NULL,
					 "the guest saw CPUID %s bits %#x that this host does not offer",
					 feats[i].name, gv & ~hv);
	}
	return 0;
}

#define EVENTS_FLAGS_KNOWN (KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | \
			    KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM)

static int vmstate_parse_vcpu(struct vm *vm, struct snap_sec *s, struct vcpu_state *st,
			      struct vmstate_ctx *c)
{
	size_t host_xsave = vm_xsave_size(vm);
	uint32_t nent, nmsrs;
	int r;

	if (s->version != VMSTATE_VCPU_VERSION)
		return load_fail(c, s, "version %u, this kestrel reads %u", s->version, VMSTATE_VCPU_VERSION);
	nent = snap_get_u32(s);
	if (s->err || nent == 0 || nent > VMSTATE_MAX_CPUID)
		return load_fail(c, s, "%u CPUID entries (1..%u allowed)", nent, VMSTATE_MAX_CPUID);
	st->cpuid = calloc(1, sizeof(*st->cpuid) + nent * sizeof(st->cpuid->entries[0]));
	if (!st->cpuid) {
		snprintf(c->err, c->errlen, "snapshot: out of memory");
		return -ENOMEM;
	}
	st->cpuid->nent = nent;
	if ((r = get_blob(c, s, st->cpuid->entries, nent * sizeof(st->cpuid->entries[0]), "CPUID")) < 0 ||
	    (r = vmstate_check_cpuid(c, vm->kvm, st->cpuid)) < 0 ||
	    (r = get_blob(c, s, &st->sregs, sizeof(st->sregs), "SREGS")) < 0 ||
	    (r = get_blob(c, s, &st->regs, sizeof(st->regs), "REGS")) < 0)
		return r;
	st->fpu_form = snap_get_u8(s);
	if (s->err)
		return load_fail(c, s, "truncated at the FPU form");
	if (st->fpu_form == FPU_FORM_XSAVE) {
		if (!host_xsave)
			return load_fail(c, s, "holds XSAVE state, this host lacks KVM_CAP_XSAVE");
		st->xsave_size = host_xsave;
		st->xsave = calloc(1, host_xsave);
		if (!st->xsave) {
			snprintf(c->err, c->errlen, "snapshot: out of memory");
			return -ENOMEM;
		}
		if ((r = get_blob(c, s, st->xsave, host_xsave, "XSAVE")) < 0)
			return r;
	} else if (st->fpu_form == FPU_FORM_FPU) {
		if ((r = get_blob(c, s, &st->fpu, sizeof(st->fpu), "FPU")) < 0)
			return r;
	} else {
		return load_fail(c, s, "unknown FPU form %u", st->fpu_form);
	}
	if ((r = get_flag(c, s, &st->has_xcrs, "XCRS")) < 0)
		return r;
	if (st->has_xcrs) {
		if (!vm_cap(vm, KVM_CAP_XCRS))
			return load_fail(c, s, "holds XCRs, this host lacks KVM_CAP_XCRS");
		if ((r = get_blob(c, s, &st->xcrs, sizeof(st->xcrs), "XCRS")) < 0)
			return r;
		if (st->xcrs.nr_xcrs > KVM_MAX_XCRS || st->xcrs.flags)
			return load_fail(c, s, "%u XCRs, flags %#x", st->xcrs.nr_xcrs, st->xcrs.flags);
	}
	nmsrs = snap_get_u32(s);
	if (s->err || nmsrs > VMSTATE_MAX_MSRS)
		return load_fail(c, s, "%u MSRs (at most %u)", nmsrs, VMSTATE_MAX_MSRS);
	st->nmsrs = nmsrs;
	for (unsigned i = 0; i < nmsrs; i++) {
		st->msrs[i].index = snap_get_u32(s);
		st->msrs[i].value = snap_get_u64(s);
		if (s->err)
			return load_fail(c, s, "truncated in the MSRs");
		if (!vmstate_msr_wanted(vm->kvm, st->cpuid, st->msrs[i].index))
			return load_fail(c, s, "MSR %#x is not one this host restores", st->msrs[i].index);
		for (unsigned j = 0; j < i; j++)
			if (st->msrs[j].index == st->msrs[i].index)
				return load_fail(c, s, "MSR %#x appears twice", st->msrs[i].index);
	}
	if ((r = get_blob(c, s, &st->lapic, sizeof(st->lapic), "LAPIC")) < 0 ||
	    (r = get_flag(c, s, &st->has_events, "vCPU events")) < 0)
		return r;
	if (st->has_events) {
		if (!vm_cap(vm, KVM_CAP_VCPU_EVENTS))
			return load_fail(c, s, "holds vCPU events, this host lacks KVM_CAP_VCPU_EVENTS");
		if ((r = get_blob(c, s, &st->events, sizeof(st->events), "vCPU events")) < 0)
			return r;
		if (st->events.flags & ~EVENTS_FLAGS_KNOWN)
			return load_fail(c, s, "vCPU event flags %#x not understood", st->events.flags);
		if (st->events.exception.nr >= 32 || st->events.exception_has_payload)
			return load_fail(c, s, "bad pending exception %u", st->events.exception.nr);
		if (st->events.smi.smm && !vm_cap(vm, KVM_CAP_X86_SMM))
			return load_fail(c, s, "the vCPU is in SMM, this host lacks KVM_CAP_X86_SMM");
	}
	st->mp.mp_state = snap_get_u32(s);
	if (s->err || st->mp.mp_state > KVM_MP_STATE_SIPI_RECEIVED)
		return load_fail(c, s, "bad MP state %u", st->mp.mp_state);
	if ((r = get_flag(c, s, &st->has_debugregs, "debug registers")) < 0)
		return r;
	if (st->has_debugregs) {
		if (!vm_cap(vm, KVM_CAP_DEBUGREGS))
			return load_fail(c, s, "holds debug registers, this host lacks KVM_CAP_DEBUGREGS");
		if ((r = get_blob(c, s, &st->dbg, sizeof(st->dbg), "DEBUGREGS")) < 0)
			return r;
		if (st->dbg.flags)
			return load_fail(c, s, "debug register flags %#llx", (unsigned long long)st->dbg.flags);
	}
	if (snap_sec_end(s) < 0)
		return load_fail(c, s, "%zu bytes left over", s->len - s->off);
	return 0;
}

static int vmstate_parse_vm(struct vm *vm, struct snap_sec *s, struct vm_kstate *ks, struct vmstate_ctx *c)
{
	static const char *const chip_names[3] = { "PIC master", "PIC slave", "IOAPIC" };
	int r;

	memset(ks, 0, sizeof(*ks));
	if (s->version != VMSTATE_VM_VERSION)
		return load_fail(c, s, "version %u, this kestrel reads %u", s->version, VMSTATE_VM_VERSION);
	for (unsigned i = 0; i < 3; i++) {
		if ((r = get_blob(c, s, &ks->chip[i], sizeof(ks->chip[i]), chip_names[i])) < 0)
			return r;
		if (ks->chip[i].chip_id != i)
			return load_fail(c, s, "%s has chip id %u", chip_names[i], ks->chip[i].chip_id);
	}
	if ((r = get_flag(c, s, &ks->has_pit, "PIT")) < 0)
		return r;
	if (ks->has_pit) {
		if (!vm_cap(vm, KVM_CAP_PIT_STATE2))
			return load_fail(c, s, "holds PIT state, this host lacks KVM_CAP_PIT_STATE2");
		if ((r = get_blob(c, s, &ks->pit, sizeof(ks->pit), "PIT")) < 0)
			return r;
		if (ks->pit.flags & ~(uint32_t)(KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON))
			return load_fail(c, s, "PIT flags %#x", ks->pit.flags);
	}
	if ((r = get_flag(c, s, &ks->has_clock, "clock")) < 0)
		return r;
	ks->clock = snap_get_u64(s);
	if (ks->has_clock && !vm_cap(vm, KVM_CAP_ADJUST_CLOCK))
		return load_fail(c, s, "holds the KVM clock, this host lacks KVM_CAP_ADJUST_CLOCK");
	if (snap_sec_end(s) < 0)
		return load_fail(c, s, "truncated or %zu bytes left over", s->len - s->off);
	return 0;
}

/* Exactly kvm.vcpu.0 .. kvm.vcpu.(ncpus-1), no others. */
static int vmstate_check_count(struct vm *vm, const struct snap_reader *r, char *err, size_t errlen)
{
	for (unsigned i = 0; i < r->nsections; i++) {
		const char *n = r->sec[i].name;
		char *end;
		unsigned long id;

		if (strncmp(n, "kvm.vcpu.", 9))
			continue;
		id = strtoul(n + 9, &end, 10);
		if (n[9] < '0' || n[9] > '9' || *end || id >= vm->ncpus) {
			snprintf(err, errlen, "snapshot: section %.*s does not fit a VM of %u vCPUs",
				 SNAP_NAME_LEN, n, vm->ncpus);
			return -EINVAL;
		}
	}
	return 0;
}

/* --- load: apply ------------------------------------------------------------ */

static int vmstate_set_msrs(struct vcpu *v, const struct vcpu_state *st, bool deadline, char *err,
			    size_t errlen)
{
	struct kvm_msrs *m = msrs_new();
	unsigned n = 0;
	int r;

	if (!m) {
		snprintf(err, errlen, "snapshot: out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < st->nmsrs; i++) {
		if ((st->msrs[i].index == MSR_IA32_TSC_DEADLINE) != deadline)
			continue;
		m->entries[n].index = st->msrs[i].index;
		m->entries[n].data = st->msrs[i].value;
		n++;
	}
	m->nmsrs = n;
	r = n ? kvm_ioctl(v->fd, KVM_SET_MSRS, m) : 0;
	if (r < 0) {
		snprintf(err, errlen, "snapshot: kvm.vcpu.%u: KVM_SET_MSRS: %s", v->id, strerror(-r));
	} else if ((unsigned)r != n) {
		snprintf(err, errlen, "snapshot: kvm.vcpu.%u: KVM refused MSR %#x = %#llx", v->id,
			 m->entries[r].index, (unsigned long long)m->entries[r].data);
		r = -EINVAL;
	} else {
		r = 0;
	}
	free(m);
	return r;
}

/*
 * The order matters: CPUID first (MSRs and XSAVE are checked against it),
 * special registers (EFER, CR0/CR4, APIC base) before the general ones and
 * the LAPIC, MSRs including the TSC before the LAPIC (whose timer counts
 * from it), then TSC_DEADLINE, pending events, and the MP state last.
 */
static int vmstate_set_vcpu(struct vcpu *v, const struct vcpu_state *st, char *err, size_t errlen)
{
	const char *what;
	int r;

	what = "KVM_SET_CPUID2";
	if ((r = vcpu_set_cpuid(v, st->cpuid)) < 0)
		goto err;
	what = "KVM_SET_SREGS";
	if ((r = kvm_ioctl(v->fd, KVM_SET_SREGS, (void *)&st->sregs)) < 0)
		goto err;
	what = "KVM_SET_REGS";
	if ((r = kvm_ioctl(v->fd, KVM_SET_REGS, (void *)&st->regs)) < 0)
		goto err;
	if (st->fpu_form == FPU_FORM_XSAVE) {
		what = "KVM_SET_XSAVE";
		r = kvm_ioctl(v->fd, KVM_SET_XSAVE, st->xsave);
	} else {
		what = "KVM_SET_FPU";
		r = kvm_ioctl(v->fd, KVM_SET_FPU, (void *)&st->fpu);
	}
	if (r < 0)
		goto err;
	what = "KVM_SET_XCRS";
	if (st->has_xcrs && (r = kvm_ioctl(v->fd, KVM_SET_XCRS, (void *)&st->xcrs)) < 0)
		goto err;
	if ((r = vmstate_set_msrs(v, st, false, err, errlen)) < 0)
		return r;
	what = "KVM_SET_LAPIC";
	if ((r = kvm_ioctl(v->fd, KVM_SET_LAPIC, (void *)&st->lapic)) < 0)
		goto err;
	if ((r = vmstate_set_msrs(v, st, true, err, errlen)) < 0)
		return r;
	what = "KVM_SET_VCPU_EVENTS";
	if (st->has_events && (r = kvm_ioctl(v->fd, KVM_SET_VCPU_EVENTS, (void *)&st->events)) < 0)
		goto err;
	what = "KVM_SET_DEBUGREGS";
	if (st->has_debugregs && (r = kvm_ioctl(v->fd, KVM_SET_DEBUGREGS, (void *)&st->dbg)) < 0)
		goto err;
	what = "KVM_SET_MP_STATE";
	if ((r = kvm_ioctl(v->fd, KVM_SET_MP_STATE, (void *)&st->mp)) < 0)
		goto err;
	return 0;
err:
	snprintf(err, errlen, "snapshot: kvm.vcpu.%u: %s: %s", v->id, what, strerror(-r));
	return r;
}

static int vmstate_set_vm(struct vm *vm, const struct vm_kstate *ks, char *err, size_t errlen)
{
	struct kvm_clock_data clk;
	int r;

	if (ks->has_pit && (r = kvm_ioctl(vm->fd, KVM_SET_PIT2, (void *)&ks->pit)) < 0) {
		snprintf(err, errlen, "snapshot: kvm.vm: KVM_SET_PIT2: %s", strerror(-r));
		return r;
	}
	for (unsigned i = 0; i < 3; i++) {
		r = kvm_ioctl(vm->fd, KVM_SET_IRQCHIP, (void *)&ks->chip[i]);
		if (r < 0) {
			snprintf(err, errlen, "snapshot: kvm.vm: KVM_SET_IRQCHIP %u: %s", i, strerror(-r));
			return r;
		}
	}
	/*
	 * Last: the guest sees kvmclock continue from the saved value (no
	 * KVM_CLOCK_REALTIME, so the time the VM spent saved does not pass).
	 */
	if (ks->has_clock) {
		memset(&clk, 0, sizeof(clk));
		clk.clock = ks->clock;
		r = kvm_ioctl(vm->fd, KVM_SET_CLOCK, &clk);
		if (r < 0) {
			snprintf(err, errlen, "snapshot: kvm.vm: KVM_SET_CLOCK: %s", strerror(-r));
			return r;
		}
	}
	return 0;
}

int vm_load_state(struct vm *vm, const struct snap_reader *rd, char *err, size_t errlen)
{
	struct vcpu_state *st[VM_MAX_VCPUS] = { 0 };
	char name[SNAP_NAME_LEN];
	struct vmstate_ctx c = { .err = err, .errlen = errlen };
	struct vm_kstate ks;
	struct snap_sec s;
	int r;

	if (!vm_quiescent(vm)) {
		snprintf(err, errlen, "snapshot: the vCPUs are running; cannot load KVM state");
		return -EBUSY;
	}
	r = vmstate_check_count(vm, rd, err, errlen);
	if (r < 0)
		return r;
	c.sec = "kvm.vm";
	if (snap_find(rd, "kvm.vm", &s) < 0) {
		snprintf(err, errlen, "snapshot: section kvm.vm is missing");
		return -EINVAL;
	}
	r = vmstate_parse_vm(vm, &s, &ks, &c);
	for (unsigned i = 0; i < vm->ncpus && r == 0; i++) {
		snprintf(name, sizeof(name), "kvm.vcpu.%u", i);
		c.sec = name;
		if (snap_find(rd, name, &s) < 0) {
			snprintf(err, errlen, "snapshot: section %s is missing (the VM has %u vCPUs)", name,
				 vm->ncpus);
			r = -EINVAL;
			break;
		}
		st[i] = calloc(1, sizeof(*st[i]));
		if (!st[i]) {
			snprintf(err, errlen, "snapshot: out of memory");
			r = -ENOMEM;
			break;
		}
		r = vmstate_parse_vcpu(vm, &s, st[i], &c);
	}
	/* Everything checked: apply. */
	for (unsigned i = 0; i < vm->ncpus && r == 0; i++)
		r = vmstate_set_vcpu(&vm->vcpus[i], st[i], err, errlen);
	if (r == 0)
		r = vmstate_set_vm(vm, &ks, err, errlen);
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_state_free(st[i]);
	return r;
}

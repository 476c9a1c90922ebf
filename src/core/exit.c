/*
 * One KVM exit into a bus access or a stop verdict. Kept apart from the
 * vCPU thread so that every reason, including the ones KVM should never
 * produce, is exercised by unit tests (tests/unit/test_exit.c).
 */
#include "core/exit.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void verdict_stop(struct exit_verdict *v, enum vm_stop_reason reason, int status, bool dump,
			 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void verdict_stop(struct exit_verdict *v, enum vm_stop_reason reason, int status, bool dump,
			 const char *fmt, ...)
{
	va_list ap;

	v->action = EXIT_STOP;
	v->reason = reason;
	v->status = status;
	v->dump = dump;
	va_start(ap, fmt);
	vsnprintf(v->msg, sizeof(v->msg), fmt, ap);
	va_end(ap);
}

static void verdict_error(struct exit_verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void verdict_error(struct exit_verdict *v, const char *fmt, ...)
{
	va_list ap;

	v->action = EXIT_STOP;
	v->reason = VM_STOP_ERROR;
	v->status = 1;
	v->dump = true;
	va_start(ap, fmt);
	vsnprintf(v->msg, sizeof(v->msg), fmt, ap);
	va_end(ap);
}

static void exit_io(struct kvm_run *run, size_t run_size, const struct exit_env *env,
		    struct exit_verdict *v)
{
	unsigned size = run->io.size;
	uint64_t off = run->io.data_offset;
	uint64_t len = (uint64_t)size * run->io.count;
	uint8_t *data;

	if (size != 1 && size != 2 && size != 4) {
		verdict_error(v, "KVM reported a port I/O exit of %u bytes at port %#x", size, run->io.port);
		return;
	}
	/*
	 * The kernel picks data_offset, but an IN writes there: never outside
	 * the mapping, and never over the exit fields this function reads.
	 */
	if (off < sizeof(*run) || off > run_size || len > run_size - off) {
		verdict_error(v, "KVM reported port I/O data at offset %#llx, %u x %u bytes, outside the "
			      "%zu-byte run area", (unsigned long long)off, run->io.count, size, run_size);
		return;
	}
	data = (uint8_t *)run + off;
	/* String I/O (rep ins/outs) arrives as count accesses to the same port. */
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		uint64_t val = 0;

		if (run->io.direction == KVM_EXIT_IO_OUT) {
			memcpy(&val, data, size);
			if (env->stats)
				env->stats->io_out++;
			bus_write(env->pio, run->io.port, size, val);
		} else {
			if (env->stats)
				env->stats->io_in++;
			bus_read(env->pio, run->io.port, size, &val);
			memcpy(data, &val, size);
		}
	}
}

static void exit_mmio(struct kvm_run *run, const struct exit_env *env, struct exit_verdict *v)
{
	unsigned len = run->mmio.len;
	uint64_t val = 0;

	if (len == 0 || len > sizeof(run->mmio.data)) {
		verdict_error(v, "KVM reported an MMIO exit of %u bytes at %#llx", len,
			      (unsigned long long)run->mmio.phys_addr);
		return;
	}
	if (run->mmio.is_write) {
		memcpy(&val, run->mmio.data, len);
		if (env->stats)
			env->stats->mmio_write++;
		bus_write(env->mmio, run->mmio.phys_addr, len, val);
	} else {
		if (env->stats)
			env->stats->mmio_read++;
		bus_read(env->mmio, run->mmio.phys_addr, len, &val);
		memcpy(run->mmio.data, &val, len);
	}
}

static const char *internal_suberror_name(uint32_t sub)
{
	switch (sub) {
	case KVM_INTERNAL_ERROR_EMULATION: return "instruction emulation failed";
	case KVM_INTERNAL_ERROR_SIMUL_EX: return "exception while delivering an exception";
	case KVM_INTERNAL_ERROR_DELIVERY_EV: return "event delivery failed";
	case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: return "unexpected exit reason";
	default: return "unknown suberror";
	}
}

static void exit_internal_error(const struct kvm_run *run, const struct exit_env *env,
				struct exit_verdict *v)
{
	char extra[256] = "";
	size_t n = 0;
	/* ndata is the kernel's word; data[] has room for 16. */
	uint32_t ndata = run->internal.ndata < 16 ? run->internal.ndata : 16;

	for (uint32_t i = 0; i < ndata && n < sizeof(extra) - 20; i++)
		n += (size_t)snprintf(extra + n, sizeof(extra) - n, " %#llx",
				      (unsigned long long)run->internal.data[i]);
	verdict_error(v, "KVM internal error %u (%s)%s%s%s", run->internal.suberror,
		      internal_suberror_name(run->internal.suberror), n ? ", data:" : "", extra,
		      run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && !env->hw_virt ?
			      " — this host's KVM has no hardware virtualization and its instruction "
			      "emulator cannot run this guest code (see the test bed, testbed/README.md)" : "");
}

static void exit_system_event(const struct kvm_run *run, struct exit_verdict *v)
{
	switch (run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		verdict_stop(v, VM_STOP_POWEROFF, 0, false, "%s", "");
		break;
	case KVM_SYSTEM_EVENT_RESET:
		verdict_stop(v, VM_STOP_RESET, 0, false, "%s", "");
		break;
	case KVM_SYSTEM_EVENT_CRASH:
		verdict_error(v, "guest reported a crash (system event)");
		break;
	default:
		/* Wake-ups and the like: nothing to do, the vCPU runs on. */
		log_warn("vcpu", "system event %u ignored", run->system_event.type);
		v->action = EXIT_CONTINUE;
		break;
	}
}

void exit_decode(struct kvm_run *run, size_t run_size, const struct exit_env *env,
		 struct exit_verdict *v)
{
	unsigned reason = run->exit_reason;

	memset(v, 0, sizeof(*v));
	v->action = EXIT_CONTINUE;
	if (env->stats)
		env->stats->exits[reason < KVM_EXIT_REASON_MAX ? reason : 0]++;
	switch (reason) {
	case KVM_EXIT_IO:
		exit_io(run, run_size, env, v);
		break;
	case KVM_EXIT_MMIO:
		exit_mmio(run, env, v);
		break;
	case KVM_EXIT_HLT:
		v->action = EXIT_HALTED;
		break;
	case KVM_EXIT_INTR:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
	case KVM_EXIT_IOAPIC_EOI:
		break;
	case KVM_EXIT_SHUTDOWN:
		/*
		 * A triple fault resets a PC. It is how Linux's reboot=t (and the
		 * last step of its default reboot order) restarts the machine, so
		 * it ends the VM like any other reset. It is also how a broken
		 * guest dies: the registers are printed for that case.
		 */
		verdict_stop(v, VM_STOP_RESET, 0, true,
			     "triple fault (KVM_EXIT_SHUTDOWN): the guest reset the CPU; ending the VM as a reset");
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		exit_system_event(run, v);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		verdict_error(v, "VM entry failed, hardware reason %#llx on host CPU %u",
			      (unsigned long long)run->fail_entry.hardware_entry_failure_reason,
			      run->fail_entry.cpu);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		exit_internal_error(run, env, v);
		break;
	default:
		verdict_error(v, "unhandled exit reason %u (%s)", reason, kvm_exit_reason_name(reason));
		break;
	}
}

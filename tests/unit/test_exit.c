/*
 * The exit decoder (core/exit.c) against fabricated kvm_run areas: every
 * exit reason, string I/O, and the values KVM should never report.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "boot/acpi.h"
#include "core/exit.h"
#include "pci/pci.h"

#define RUN_SIZE  (3 * 4096)       /* like KVM: the run struct, the PIO page, the coalesced ring */
#define PIO_OFF   4096             /* KVM_PIO_PAGE_OFFSET * page size */
#define DEV_PORT  0x100
#define DEV_MMIO  0x10000000ull
#define LOG_MAX   64

struct access {
	bool write;
	uint64_t off;
	unsigned size;
	uint64_t value;
};

struct fixture {
	struct bus pio, mmio;
	struct vcpu_stats stats;
	struct exit_env env;
	struct kvm_run *run;
	struct access log[LOG_MAX];
	unsigned nlog;
	uint64_t next_read;        /* value device reads return, incremented per read */
	unsigned resets;
};

static uint64_t dev_read(void *opaque, uint64_t off, unsigned size)
{
	struct fixture *f = opaque;

	if (f->nlog < LOG_MAX)
		f->log[f->nlog++] = (struct access){ false, off, size, f->next_read };
	return f->next_read++;
}

static void dev_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	struct fixture *f = opaque;

	if (f->nlog < LOG_MAX)
		f->log[f->nlog++] = (struct access){ true, off, size, value };
}

static const struct bus_dev_ops dev_ops = { .read = dev_read, .write = dev_write };

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(bus_init(&f->pio, "pio"), 0);
	assert_int_equal(bus_init(&f->mmio, "mmio"), 0);
	assert_int_equal(bus_register(&f->pio, DEV_PORT, 8, BUS_SZ_ANY, &dev_ops, f, "dev"), 0);
	assert_int_equal(bus_register(&f->mmio, DEV_MMIO, 0x1000, BUS_SZ_ANY, &dev_ops, f, "dev"), 0);
	f->run = calloc(1, RUN_SIZE);
	assert_non_null(f->run);
	f->env = (struct exit_env){ .pio = &f->pio, .mmio = &f->mmio, .stats = &f->stats };
	f->next_read = 0x11223344;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	bus_exit(&f->pio);
	bus_exit(&f->mmio);
	free(f->run);
	free(f);
	return 0;
}

static void pio_exit(struct kvm_run *run, uint8_t dir, uint16_t port, uint8_t size, uint32_t count,
		     uint64_t data_offset)
{
	run->exit_reason = KVM_EXIT_IO;
	run->io.direction = dir;
	run->io.port = port;
	run->io.size = size;
	run->io.count = count;
	run->io.data_offset = data_offset;
}

static void decode(struct fixture *f, struct exit_verdict *v)
{
	memset(v, 0xa5, sizeof(*v));   /* the decoder must fill every field */
	exit_decode(f->run, RUN_SIZE, &f->env, v);
}

/* rep outsw: three words, in order, to the same port. */
static void test_pio_string_out(void **state)
{
	struct fixture *f = *state;
	uint16_t words[3] = { 0x1111, 0x2222, 0x3333 };
	struct exit_verdict v;

	pio_exit(f->run, KVM_EXIT_IO_OUT, DEV_PORT + 2, 2, 3, PIO_OFF);
	memcpy((uint8_t *)f->run + PIO_OFF, words, sizeof(words));
	decode(f, &v);
	assert_int_equal(v.action, EXIT_CONTINUE);
	assert_int_equal(f->nlog, 3);
	for (unsigned i = 0; i < 3; i++) {
		assert_true(f->log[i].write);
		assert_int_equal(f->log[i].off, 2);
		assert_int_equal(f->log[i].size, 2);
		assert_int_equal(f->log[i].value, words[i]);
	}
	assert_int_equal(f->stats.io_out, 3);
	assert_int_equal(f->stats.exits[KVM_EXIT_IO], 1);
}

/* rep insl: four dwords land one after the other in the data page. */
static void test_pio_string_in(void **state)
{
	struct fixture *f = *state;
	uint32_t got[4];
	struct exit_verdict v;

	pio_exit(f->run, KVM_EXIT_IO_IN, DEV_PORT, 4, 4, PIO_OFF + 64);
	decode(f, &v);
	assert_int_equal(v.action, EXIT_CONTINUE);
	assert_int_equal(f->nlog, 4);
	memcpy(got, (uint8_t *)f->run + PIO_OFF + 64, sizeof(got));
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(got[i], 0x11223344u + i);
	assert_int_equal(f->stats.io_in, 4);
}

/* The last byte of the mapping is usable; one more is not. */
static void test_pio_data_at_end_of_mapping(void **state)
{
	struct fixture *f = *state;
	struct exit_verdict v;

	pio_exit(f->run, KVM_EXIT_IO_IN, DEV_PORT, 1, 16, RUN_SIZE - 16);
	decode(f, &v);
	assert_int_equal(v.action, EXIT_CONTINUE);
	assert_int_equal(f->nlog, 16);
	assert_int_equal(((uint8_t *)f->run)[RUN_SIZE - 1], (uint8_t)(0x11223344u + 15));

	f->nlog = 0;
	pio_exit(f->run, KVM_EXIT_IO_IN, DEV_PORT, 1, 17, RUN_SIZE - 16);
	decode(f, &v);
	assert_int_equal(v.action, EXIT_STOP);
	assert_int_equal(f->nlog, 0);
}

static void assert_stopped_with_error(const struct exit_verdict *v, const char *what)
{
	assert_int_equal(v->action, EXIT_STOP);
	assert_int_equal(v->reason, VM_STOP_ERROR);
	assert_int_equal(v->status, 1);
	assert_true(v->dump);
	assert_non_null(strstr(v->msg, what));
}

/* Offsets outside the mapping (or over the exit fields) touch nothing and stop the VM. */
static void test_pio_data_offset_outside(void **state)
{
	struct fixture *f = *state;
	static const uint64_t bad[] = {
		RUN_SIZE, RUN_SIZE + 4096, UINT64_MAX - 1, 0, sizeof(struct kvm_run) - 1,
	};
	struct exit_verdict v;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pio_exit(f->run, KVM_EXIT_IO_IN, DEV_PORT, 4, 1, bad[i]);
		decode(f, &v);
		assert_stopped_with_error(&v, "outside");
	}
	/* count * size overflowing 32 bits must not wrap into range either. */
	pio_exit(f->run, KVM_EXIT_IO_OUT, DEV_PORT, 4, 0x40000001u, PIO_OFF);
	decode(f, &v);
	assert_stopped_with_error(&v, "outside");
	assert_int_equal(f->nlog, 0);
	assert_int_equal(f->stats.io_in + f->stats.io_out, 0);
}

static void test_pio_bad_size(void **state)
{
	struct fixture *f = *state;
	static const uint8_t bad[] = { 0, 3, 8, 255 };
	struct exit_verdict v;

	for (size_t i = 0; i < sizeof(bad); i++) {
		pio_exit(f->run, KVM_EXIT_IO_OUT, DEV_PORT, bad[i], 1, PIO_OFF);
		decode(f, &v);
		assert_stopped_with_error(&v, "port I/O exit");
	}
	assert_int_equal(f->nlog, 0);
}

static void test_pio_count_zero(void **state)
{
	struct fixture *f = *state;
	struct exit_verdict v;

	pio_exit(f->run, KVM_EXIT_IO_OUT, DEV_PORT, 1, 0, PIO_OFF);
	decode(f, &v);
	assert_int_equal(v.action, EXIT_CONTINUE);
	assert_int_equal(f->nlog, 0);
}

static void mmio_exit(struct kvm_run *run, uint64_t addr, uint32_t len, bool write)
{
	run->exit_reason = KVM_EXIT_MMIO;
	run->mmio.phys_addr = addr;
	run->mmio.len = len;
	run->mmio.is_write = write;
}

static void test_mmio_read_write(void **state)
{
	struct fixture *f = *state;
	uint64_t val = 0x0102030405060708ull, got = 0;
	struct exit_verdict v;

	mmio_exit(f->run, DEV_MMIO + 0x10, 8, true);
	memcpy(f->run->mmio.data, &val, 8);
	decode(f, &v);
	assert_int_equal(v.action, EXIT_CONTINUE);
	assert_int_equal(f->nlog, 1);
	assert_true(f->log[0].write);
	assert_int_equal(f->log[0].off, 0x10);
	assert_int_equal(f->log[0].value, val);

	mmio_exit(f->run, DEV_MMIO + 0x20, 2, false);
	memset(f->run->mmio.data, 0xff, 8);
	decode(f, &v);
	assert_int_equal(v.action, EXIT_CONTINUE);
	memcpy(&got, f->run->mmio.data, 8);
	/* Two bytes of the device's value; the rest of data[] untouched. */
	assert_int_equal(got, 0xffffffffffff0000ull | (0x11223344u & 0xffff));
	assert_int_equal(f->stats.mmio_write, 1);
	assert_int_equal(f->stats.mmio_read, 1);
}

static void test_mmio_bad_length(void **state)
{
	struct fixture *f = *state;
	static const uint32_t bad[] = { 0, 9, 16, UINT32_MAX };
	struct exit_verdict v;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		mmio_exit(f->run, DEV_MMIO, bad[i], i & 1);
		decode(f, &v);
		assert_stopped_with_error(&v, "MMIO exit");
	}
	assert_int_equal(f->nlog, 0);
}

static void test_fail_entry(void **state)
{
	struct fixture *f = *state;
	struct exit_verdict v;

	f->run->exit_reason = KVM_EXIT_FAIL_ENTRY;
	f->run->fail_entry.hardware_entry_failure_reason = 0x80000021;
	f->run->fail_entry.cpu = 3;
	decode(f, &v);
	assert_stopped_with_error(&v, "VM entry failed");
	assert_non_null(strstr(v.msg, "0x80000021"));
	assert_non_null(strstr(v.msg, "CPU 3"));
}

static void test_internal_error(void **state)
{
	struct fixture *f = *state;
	struct exit_verdict v;

	f->run->exit_reason = KVM_EXIT_INTERNAL_ERROR;
	f->run->internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
	f->run->internal.ndata = 2;
	f->run->internal.data[0] = 0xabc;
	f->run->internal.data[1] = 0xdef;
	decode(f, &v);
	assert_stopped_with_error(&v, "emulation failed");
	assert_non_null(strstr(v.msg, "0xabc 0xdef"));
	assert_non_null(strstr(v.msg, "no hardware virtualization"));

	/* With hardware virtualization the hint about this host is left out. */
	f->env.hw_virt = true;
	decode(f, &v);
	assert_null(strstr(v.msg, "no hardware virtualization"));

	/* An ndata beyond data[] reads only data[]. */
	f->run->internal.suberror = 77;
	f->run->internal.ndata = UINT32_MAX;
	decode(f, &v);
	assert_stopped_with_error(&v, "unknown suberror");
}

/* A triple fault is a reset (Linux's reboot=t), not an error. */
static void test_shutdown_is_reset(void **state)
{
	struct fixture *f = *state;
	struct exit_verdict v;

	f->run->exit_reason = KVM_EXIT_SHUTDOWN;
	decode(f, &v);
	assert_int_equal(v.action, EXIT_STOP);
	assert_int_equal(v.reason, VM_STOP_RESET);
	assert_int_equal(v.status, 0);
	assert_true(v.dump);                         /* registers, for a guest that died */
	assert_non_null(strstr(v.msg, "triple fault"));
}

static void test_system_events(void **state)
{
	struct fixture *f = *state;
	struct exit_verdict v;

	f->run->exit_reason = KVM_EXIT_SYSTEM_EVENT;
	f->run->system_event.type = KVM_SYSTEM_EVENT_SHUTDOWN;
	decode(f, &v);
	assert_int_equal(v.action, EXIT_STOP);
	assert_int_equal(v.reason, VM_STOP_POWEROFF);
	assert_int_equal(v.status, 0);
	assert_false(v.dump);

	f->run->system_event.type = KVM_SYSTEM_EVENT_RESET;
	decode(f, &v);
	assert_int_equal(v.action, EXIT_STOP);
	assert_int_equal(v.reason, VM_STOP_RESET);
	assert_int_equal(v.status, 0);

	f->run->system_event.type = KVM_SYSTEM_EVENT_CRASH;
	decode(f, &v);
	assert_stopped_with_error(&v, "crash");

	/* Anything else is ignored and the vCPU runs on (it used to end the thread alone). */
	f->run->system_event.type = 0x7777;
	decode(f, &v);
	assert_int_equal(v.action, EXIT_CONTINUE);
}

static void test_hlt_and_benign(void **state)
{
	struct fixture *f = *state;
	static const uint32_t benign[] = { KVM_EXIT_INTR, KVM_EXIT_IRQ_WINDOW_OPEN, KVM_EXIT_IOAPIC_EOI };
	struct exit_verdict v;

	f->run->exit_reason = KVM_EXIT_HLT;
	decode(f, &v);
	assert_int_equal(v.action, EXIT_HALTED);
	for (size_t i = 0; i < sizeof(benign) / sizeof(benign[0]); i++) {
		f->run->exit_reason = benign[i];
		decode(f, &v);
		assert_int_equal(v.action, EXIT_CONTINUE);
		assert_string_equal(v.msg, "");
	}
	assert_int_equal(f->stats.exits[KVM_EXIT_HLT], 1);
	assert_int_equal(f->stats.exits[KVM_EXIT_INTR], 1);
}

/* Known reasons kestrel does not handle and numbers past the table are errors, counted in slot 0. */
static void test_unknown_reasons(void **state)
{
	struct fixture *f = *state;
	static const uint32_t reasons[] = { KVM_EXIT_DEBUG, KVM_EXIT_HYPERCALL, 0xffff, UINT32_MAX };
	struct exit_verdict v;

	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
		f->run->exit_reason = reasons[i];
		decode(f, &v);
		assert_stopped_with_error(&v, "unhandled exit reason");
	}
	assert_int_equal(f->stats.exits[0], 2);
	assert_int_equal(f->stats.exits[KVM_EXIT_DEBUG], 1);
}

static void test_no_stats(void **state)
{
	struct fixture *f = *state;
	uint8_t b = 0x5a;
	struct exit_verdict v;

	f->env.stats = NULL;
	pio_exit(f->run, KVM_EXIT_IO_OUT, DEV_PORT, 1, 1, PIO_OFF);
	memcpy((uint8_t *)f->run + PIO_OFF, &b, 1);
	decode(f, &v);
	assert_int_equal(v.action, EXIT_CONTINUE);
	assert_int_equal(f->log[0].value, 0x5a);
}

static void count_reset(void *opaque, enum sysevent ev, int status)
{
	struct fixture *f = opaque;

	if (ev == SYSEVENT_RESET && status == 0)
		f->resets++;
}

/* Linux's ACPI reset: outb(reset_value, reset_reg) as the FADT declares it reaches the PCI host. */
static void test_acpi_reset_write_resets(void **state)
{
	struct fixture *f = *state;
	struct sysevent_sink sink = { count_reset, f };
	struct pci_host h;
	struct exit_verdict v;
	uint8_t val = ACPI_RESET_VALUE;

	assert_int_equal(pci_host_init(&h, &f->pio, &f->mmio, &sink), 0);
	assert_int_equal(pci_host_register(&h, 0xe0000000ull), 0);
	pio_exit(f->run, KVM_EXIT_IO_OUT, ACPI_RESET_PORT, 1, 1, PIO_OFF);
	memcpy((uint8_t *)f->run + PIO_OFF, &val, 1);
	decode(f, &v);
	assert_int_equal(v.action, EXIT_CONTINUE);   /* the stop comes from the device's system event */
	assert_int_equal(f->resets, 1);
	pci_host_exit(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pio_string_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pio_string_in, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pio_data_at_end_of_mapping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pio_data_offset_outside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pio_bad_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pio_count_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mmio_read_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mmio_bad_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fail_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_internal_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_is_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_system_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hlt_and_benign, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_reasons, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acpi_reset_write_resets, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

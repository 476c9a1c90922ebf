#include "machine.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "backends/chardev.h"
#include "boot/acpi.h"
#include "boot/boot.h"
#include "core/kvm.h"
#include "core/vm.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/uart.h"
#include "pci/pci.h"
#include "loop/loop.h"
#include "mem/layout.h"
#include "util/log.h"
#include "machine_priv.h"
#include "metrics.h"

static void machine_sysevent(void *opaque, enum sysevent ev, int status)
{
	struct machine *m = opaque;

	switch (ev) {
	case SYSEVENT_RESET:
		vm_request_stop(&m->vm, VM_STOP_RESET, 0);
		break;
	case SYSEVENT_POWEROFF:
		vm_request_stop(&m->vm, VM_STOP_POWEROFF, 0);
		break;
	case SYSEVENT_EXIT:
		vm_request_stop(&m->vm, VM_STOP_DEBUG_EXIT, status);
		break;
	}
}

static size_t machine_uart_rx(void *opaque, const uint8_t *buf, size_t len)
{
	return uart_receive(opaque, buf, len);
}

static size_t machine_vcon_rx(void *opaque, const uint8_t *buf, size_t len)
{
	return vcon_receive(opaque, buf, len);
}

static int machine_add_devices(struct machine *m, const struct machine_config *cfg, char *err, size_t errlen)
{
	int e;

	m->sink = (struct sysevent_sink){ .fire = machine_sysevent, .opaque = m };
	e = machine_legacy_init(m, err, errlen);
	return e < 0 ? e : machine_add_virtio_devices(m, cfg, err, errlen);
}

/* --- console --------------------------------------------------------- */

static void machine_console_quit(void *opaque)
{
	struct machine *m = opaque;

	fprintf(stderr, "\r\nkestrel: terminated by Ctrl-A x\r\n");
	vm_request_stop(&m->vm, VM_STOP_USER, 0);
}

/* Console input goes to virtio-console when the guest has one, to COM1 otherwise. */
static int machine_setup_loop(struct machine *m)
{
	struct chardev_input in = { .quit = machine_console_quit, .quit_opaque = m };

	if (m->vcon) {
		in.rx = machine_vcon_rx;
		in.rx_opaque = m->vcon;
		m->vcon->rx_drained = chardev_rx_drained;
		m->vcon->rx_opaque = &m->console;
	} else {
		in.rx = machine_uart_rx;
		in.rx_opaque = &m->com1;
	}
	m->com1.rx_drained = chardev_rx_drained;
	m->com1.rx_opaque = &m->console;
	return chardev_attach(&m->console, m->loop, &in);
}

/* --- start-up report (bench/) -------------------------------------- */

/*
 * With KESTREL_STARTUP_T0=<CLOCK_MONOTONIC ns at exec>, print how long it
 * took from exec to the first KVM_RUN, the CPU time spent, and the resident
 * memory that is not guest RAM (guest pages counted with mincore()).
 */
static void machine_startup_report(struct vm *vm, void *opaque)
{
	const char *t0s = getenv("KESTREL_STARTUP_T0");
	struct timespec now;
	struct rusage ru;
	unsigned long long t0, rss_pages = 0, guest_pages = 0;
	long page = sysconf(_SC_PAGESIZE);
	unsigned char *vec;
	size_t npages;
	FILE *f;

	if (!t0s)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	getrusage(RUSAGE_SELF, &ru);
	t0 = strtoull(t0s, NULL, 10);
	f = fopen("/proc/self/statm", "re");
	if (f) {
		if (fscanf(f, "%*u %llu", &rss_pages) != 1)
			rss_pages = 0;
		fclose(f);
	}
	npages = (vm->gm.mapping_size + (size_t)page - 1) / (size_t)page;
	vec = malloc(npages);
	if (vec && mincore(vm->gm.mapping, vm->gm.mapping_size, vec) == 0)
		for (size_t i = 0; i < npages; i++)
			guest_pages += vec[i] & 1;
	free(vec);
	fprintf(stderr, "kestrel: startup: wall_ms=%.3f cpu_ms=%.3f rss_kib=%llu guest_rss_kib=%llu "
		"overhead_kib=%llu\n",
		((double)now.tv_sec * 1e9 + (double)now.tv_nsec - (double)t0) / 1e6,
		(double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
			(double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3,
		rss_pages * (unsigned long long)page / 1024, guest_pages * (unsigned long long)page / 1024,
		(rss_pages - (guest_pages < rss_pages ? guest_pages : rss_pages)) *
			(unsigned long long)page / 1024);
}

/* --- boot ------------------------------------------------------------ */

static int machine_host_check(const struct machine *m, const struct machine_config *cfg,
			      const struct boot_entry *entry, char *err, size_t errlen)
{
	if (m->kvm.hw_virt || cfg->ignore_host_check || entry->kind != BOOT_KERNEL_BZIMAGE)
		return 0;
	snprintf(err, errlen,
		 "%s has no hardware virtualization (KVM module %s, no vmx/svm in the CPU "
		 "flags): guest kernel code would run in KVM's instruction emulator, and a stock Linux "
		 "kernel cannot boot that way (it crawls, then hits xsave/cmpxchg16b). Boot it in the "
		 "nested test bed instead (`make run` does; see testbed/README.md), or pass "
		 "--ignore-host-check to try anyway.",
		 cfg->kvm_path, m->kvm.module);
	return -ENOTSUP;
}

static int machine_boot(struct machine *m, const struct machine_config *cfg, char *err, size_t errlen)
{
	struct acpi_config acfg = { .ncpus = cfg->cpus, .pci = 1 };
	struct boot_config bcfg = { .kernel_path = cfg->kernel, .initrd_path = cfg->initrd,
				    .cmdline = m->cmdline ? m->cmdline : cfg->cmdline };
	struct boot_entry entry;
	int e;

	e = acpi_build(&m->vm.gm, &acfg, &bcfg.rsdp_gpa);
	if (e < 0) {
		snprintf(err, errlen, "building ACPI tables: %s", strerror(-e));
		return e;
	}
	err[0] = '\0';
	e = boot_load(&m->vm.gm, &bcfg, &entry, err, errlen);
	if (e < 0) {
		if (!err[0])
			snprintf(err, errlen, "%s", strerror(-e));
		return e;
	}
	e = machine_host_check(m, cfg, &entry, err, errlen);
	if (e < 0)
		return e;
	return vm_setup_vcpus(&m->vm, &entry, err, errlen);
}

struct machine *machine_new(const struct machine_config *cfg, struct loop *loop, const char *mem_file,
			    char *err, size_t errlen)
{
	struct machine *m = calloc(1, sizeof(*m));
	int e;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->cfg = *cfg;
	/* A NIC without a MAC gets its derived one here, so a snapshot keeps it
	 * even when a restore moves the NIC to another TAP device. */
	for (unsigned i = 0; i < m->cfg.nnets; i++) {
		if (!m->cfg.nets[i].mac_set) {
			machine_net_default_mac(&m->cfg.nets[i], m->cfg.nets[i].mac);
			m->cfg.nets[i].mac_set = true;
		}
	}
	cfg = &m->cfg;
	m->loop = loop;
	m->metrics_fd = -1;
	e = chardev_open(&m->console, cfg->console, err, errlen);
	if (e < 0)
		goto err_free;
	m->console_open = true;
	if (cfg->console_limit && m->console.limit)   /* only a regular file has a limit */
		m->console.limit = cfg->console_limit == UINT64_MAX ? 0 : cfg->console_limit;
	e = kvm_open(&m->kvm, cfg->kvm_path, err, errlen);
	if (e < 0)
		goto err_free;
	m->kvm_open = true;
	e = vm_create(&m->vm, &m->kvm, cfg->mem_size, cfg->cpus, (cfg->hugepages ? GM_HUGEPAGES : 0) |
		      (cfg->mem_overcommit ? GM_OVERCOMMIT : 0),
		      mem_file, err, errlen);
	if (e < 0)
		goto err_free;
	m->vm_created = true;
	m->restored = mem_file != NULL;
	e = machine_add_devices(m, cfg, err, errlen);
	if (e < 0)
		goto err_free;
	if (!mem_file) {
		e = machine_boot(m, cfg, err, errlen);
		if (e < 0)
			goto err_free;
	}
	e = machine_setup_loop(m);
	if (e < 0) {
		snprintf(err, errlen, "event loop: %s", strerror(-e));
		goto err_free;
	}
	if (cfg->metrics_path) {
		e = metrics_start(m, cfg->metrics_path, cfg->metrics_interval, err, errlen);
		if (e < 0)
			goto err_free;
	}
	if (cfg->track_dirty_pages) {
		e = machine_track_dirty(m, true);
		if (e < 0) {
			snprintf(err, errlen, "dirty page tracking: %s", strerror(-e));
			goto err_free;
		}
	}
	for (unsigned i = 0; i < cfg->cpus && cfg->n_vcpu_cpus; i++)
		m->vm.vcpus[i].cpu = cfg->vcpu_cpus[i % cfg->n_vcpu_cpus];
	return m;

err_free:
	machine_free(m);
	return NULL;
}

int machine_start(struct machine *m, char *err, size_t errlen)
{
	int e = machine_start_iothreads(m);

	if (e < 0) {
		snprintf(err, errlen, "starting I/O threads: %s", strerror(-e));
		return e;
	}
	chardev_tty_raw(&m->console);
	m->vm.on_first_run = machine_startup_report;
	e = vm_start(&m->vm);
	if (e < 0) {
		snprintf(err, errlen, "starting vCPUs: %s", strerror(-e));
		return e;
	}
	return 0;
}

int machine_pause(struct machine *m)
{
	vm_pause(&m->vm);
	machine_virtio_pause(m);
	return 0;
}

int machine_resume(struct machine *m, char *err, size_t errlen)
{
	int e = machine_virtio_resume(m);

	if (e < 0) {
		snprintf(err, errlen, "restarting I/O threads: %s", strerror(-e));
		return e;
	}
	vm_resume(&m->vm);
	return 0;
}

int machine_stop_fd(const struct machine *m)
{
	return m->vm.stop_eventfd;
}

void machine_request_stop(struct machine *m, int status)
{
	vm_request_stop(&m->vm, VM_STOP_USER, status);
}

int machine_finish(struct machine *m)
{
	int status = vm_wait(&m->vm);

	chardev_tty_restore(&m->console);
	metrics_stop(m);
	if (m->cfg.stats) {
		vm_print_stats(&m->vm, stderr);
		machine_print_virtio_stats(m, stderr);
		fprintf(stderr, "console: %llu bytes written, %llu dropped\n",
			(unsigned long long)m->console.bytes_out, (unsigned long long)m->console.bytes_dropped);
	}
	log_info("main", "VM stopped (reason %d), exit status %d", m->vm.stop_reason, status);
	return status;
}

void machine_free(struct machine *m)
{
	if (!m)
		return;
	if (m->console_open) {
		chardev_detach(&m->console);
		chardev_tty_restore(&m->console);
	}
	metrics_stop(m);
	/* Devices come down in the reverse order of machine_add_devices(), before the buses go. */
	machine_free_virtio_devices(m);
	machine_legacy_exit(m);
	if (m->vm_created)
		vm_destroy(&m->vm);
	if (m->kvm_open)
		kvm_close(&m->kvm);
	if (m->console_open)
		chardev_close(&m->console);
	free(m->cmdline);
	free(m);
}

int machine_ctrl_alt_del(struct machine *m)
{
	/* Set 1 make codes Ctrl, Alt, Delete (E0 53), then their breaks. */
	static const uint8_t seq[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };

	return i8042_kbd_input(&m->kbd, seq, sizeof(seq)) == sizeof(seq) ? 0 : -ENOBUFS;
}

int machine_set_metrics(struct machine *m, const char *path, char *err, size_t errlen)
{
	metrics_stop(m);
	return metrics_start(m, path, m->cfg.metrics_interval ? m->cfg.metrics_interval : 60, err, errlen);
}

int machine_flush_metrics(struct machine *m, char *err, size_t errlen)
{
	if (m->metrics_fd < 0) {
		snprintf(err, errlen, "no metrics destination: PUT /metrics first");
		return -EINVAL;
	}
	metrics_flush(m);
	return 0;
}

/* --- signals ------------------------------------------------------- */

int machine_signalfd(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

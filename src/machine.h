/*
 * A whole virtual machine as the user asked for it: memory, vCPUs, the
 * kernel, the legacy devices and the PCI host, wired onto the buses.
 */
#ifndef KESTREL_MACHINE_H
#define KESTREL_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

#define MACHINE_MAX_DISKS 8
#define MACHINE_MAX_NETS 4

struct machine_config {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	unsigned cpus;
	uint64_t mem_size;
	const char *console;        /* stdio | file:PATH | none */
	bool hugepages;
	bool stats;
	const char *metrics_path;   /* --metrics PATH */
	unsigned metrics_interval;  /* seconds */
	bool ignore_host_check;     /* try a stock kernel even on a software KVM */
	const char *kvm_path;

	/* Paravirtual devices */
	bool rng;                   /* --rng */
	bool virtio_console;        /* --console virtio: stdio on hvc0 instead of COM1 */
	bool transport_mmio;        /* --transport mmio */
	const char *disks[MACHINE_MAX_DISKS];
	unsigned ndisks;
	const char *nets[MACHINE_MAX_NETS];
	unsigned nnets;

	/* --pin vcpu=LIST,io=LIST: host CPUs for vCPU threads and I/O threads (round robin) */
	int vcpu_cpus[64];
	unsigned n_vcpu_cpus;
	int io_cpus[64];
	unsigned n_io_cpus;
};

#define MACHINE_DEFAULT_CPUS 1
#define MACHINE_DEFAULT_MEM  (256ull << 20)
#define MACHINE_MIN_MEM      (8ull << 20)

/* Build, boot and run the VM to its end; returns kestrel's exit status. */
int machine_run(const struct machine_config *cfg);

#endif

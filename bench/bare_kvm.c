/*
 * bare_kvm: the physical limit for exit cost on this host. It sets up the
 * VM exactly as kestrel does (same memory, irqchip, CPUID, boot), then runs
 * vCPU 0 in a loop that does no dispatch at all: it answers the UART's
 * line-status reads so the guest can print, ends on the debug-exit port, and
 * drops every other PIO/MMIO exit on the floor.
 *
 *   bare_kvm KERNEL.elf "CMDLINE"
 */
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "boot/acpi.h"
#include "boot/boot.h"
#include "core/kvm.h"
#include "core/vm.h"
#include "mem/layout.h"

int main(int argc, char **argv)
{
	struct acpi_config acfg = { .ncpus = 1, .pci = 1 };
	struct boot_config bcfg = { 0 };
	struct boot_entry entry;
	static struct kvm kvm;
	static struct vm vm;
	struct kvm_run *run;
	char err[512];
	unsigned long long exits = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: bare_kvm KERNEL [CMDLINE]\n");
		return 2;
	}
	bcfg.kernel_path = argv[1];
	bcfg.cmdline = argc > 2 ? argv[2] : "";
	if (kvm_open(&kvm, "/dev/kvm", err, sizeof(err)) < 0 ||
	    vm_create(&vm, &kvm, 256ull << 20, 1, 0, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "bare_kvm: %s\n", err);
		return 1;
	}
	if (acpi_build(&vm.gm, &acfg, &bcfg.rsdp_gpa) < 0 ||
	    boot_load(&vm.gm, &bcfg, &entry, err, sizeof(err)) < 0 ||
	    vm_setup_vcpus(&vm, &entry, err, sizeof(err)) < 0) {
		fprintf(stderr, "bare_kvm: %s\n", err);
		return 1;
	}
	run = vm.vcpus[0].run;
	for (;;) {
		if (ioctl(vm.vcpus[0].fd, KVM_RUN, 0) < 0) {
			perror("KVM_RUN");
			return 1;
		}
		exits++;
		if (run->exit_reason == KVM_EXIT_IO) {
			uint8_t *data = (uint8_t *)run + run->io.data_offset;

			if (run->io.port == LAYOUT_PORT_DEBUG_EXIT && run->io.direction == KVM_EXIT_IO_OUT) {
				fprintf(stderr, "bare_kvm: %llu exits\n", exits);
				return data[0];
			}
			if (run->io.direction == KVM_EXIT_IO_IN)
				memset(data, run->io.port == LAYOUT_PORT_COM1 + 5 ? 0x60 : 0xff, run->io.size);
		} else if (run->exit_reason == KVM_EXIT_MMIO) {
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
		} else if (run->exit_reason != KVM_EXIT_INTR) {
			fprintf(stderr, "bare_kvm: exit reason %u\n", run->exit_reason);
			return 1;
		}
	}
}

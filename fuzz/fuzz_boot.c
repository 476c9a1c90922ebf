/*
 * Fuzz the kernel loaders: every input goes to both the bzImage and the ELF
 * loader, on fake guest memory. Besides the sanitizers, the harness checks
 * what a caller relies on: a failure always comes with a NUL-terminated
 * message, and a success points the vCPU at guest RAM.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "boot/boot.h"
#include "mem/gm.h"
#include "mem/layout.h"
#include "mem/gm_test.h"

#define FUZZ_RAM (64ull << 20)

static uint8_t *ram;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Guest RAM is only ever written by the loaders, so it is never reset. */
	ram = mmap(NULL, FUZZ_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	if (ram == MAP_FAILED)
		abort();
	return 0;
}

static void check(const struct guest_mem *gm, int rc, const struct boot_entry *out,
		  const char *err, size_t errlen)
{
	if (rc < 0) {
		if (!memchr(err, '\0', errlen) || err[0] == '\0')
			abort();   /* an error without a message */
		return;
	}
	if (rc != 0 || !gm_is_ram(gm, out->rip, 1))
		abort();
	if (out->initrd_size && !gm_is_ram(gm, out->initrd_gpa, out->initrd_size))
		abort();
	if (out->mode != BOOT_MODE_PVH32 && out->cr3 != LAYOUT_PML4_ADDR)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t initrd[5000] = { 0x1f, 0x8b };
	struct boot_config cfg = {
		.cmdline = "console=ttyS0 root=/dev/vda",
		.rsdp_gpa = LAYOUT_ACPI_ADDR,
	};
	struct boot_entry out;
	struct guest_mem gm;
	char err[256];
	int rc;

	/* The input's length picks the RAM size and whether there is an initrd. */
	gm_init_fake(&gm, 0, ram, (size & 1) ? FUZZ_RAM : (18ull << 20));
	if (size & 2) {
		cfg.initrd_data = initrd;
		cfg.initrd_size = sizeof(initrd);
	}

	memset(err, 'X', sizeof(err));
	rc = boot_load_bzimage(&gm, data, size, &cfg, &out, err, sizeof(err));
	check(&gm, rc, &out, err, sizeof(err));

	memset(err, 'X', sizeof(err));
	rc = boot_load_elf(&gm, data, size, &cfg, &out, err, sizeof(err));
	check(&gm, rc, &out, err, sizeof(err));
	return 0;
}

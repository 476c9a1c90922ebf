/*
 * Seed corpora for the fuzz targets: small valid inputs, so the fuzzer
 * starts past the magic checks. Usage: fuzz_seedgen TARGET DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot_images.h"
#include "snapshot/snap.h"   /* tests/unit: synthetic bzImage and ELF builders */

static int put(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		return -1;
	}
	return 0;
}

static int seeds_boot(const char *dir)
{
	struct ti_bz o = ti_bz_default();
	struct ti_seg segs[2] = {
		{ 0xffffffff81000000ull, 0x1000000, 0x100, 0x400 },
		{ 0xffffffff81100000ull, 0x1100000, 0x80, 0x80 },
	};
	uint8_t *img;
	size_t len = 0;
	int rc = 0;

	o.pm_len = 1024;
	o.init_size = 1u << 20;      /* fits the harness's 18 MiB RAM as well */
	img = ti_bz_build(&o, &len);
	rc |= !img || put(dir, "bzimage", img, len);
	free(img);

	o.initrd_addr_max = 0x11fffff;
	o.setup_sects = 0;
	img = ti_bz_build(&o, &len);
	rc |= !img || put(dir, "bzimage-lowmax", img, len);
	free(img);

	img = ti_elf_build(0xffffffff81000000ull, segs, 2, 1, 0x1000010, &len);
	rc |= !img || put(dir, "elf-pvh", img, len);
	free(img);

	img = ti_elf_build(0xffffffff81100010ull, segs, 2, 0, 0, &len);
	rc |= !img || put(dir, "elf64", img, len);
	free(img);
	return rc ? -1 : 0;
}

static int seeds_snap(const char *dir)
{
	struct snap_writer w;
	char path[4096], err[256];
	int rc;

	snap_writer_init(&w);
	snap_begin(&w, "machine", 1);
	snap_put_u32(&w, 2);
	snap_put_u64(&w, 256ull << 20);
	snap_put_str(&w, "disk.img,ro");
	snap_put_str(&w, NULL);
	snap_end(&w);
	snap_begin(&w, "uart.com1", 1);
	snap_put_u8(&w, 0x0f);
	snap_put_bool(&w, true);
	snap_end(&w);
	/* The memory section (snapshot/memfile.c): RAM, kind, complete, generation, SHA-256, pages. */
	snap_begin(&w, "memory", 2);
	snap_put_u64(&w, 256ull << 20);
	snap_put_u32(&w, 1);
	snap_put_bool(&w, true);
	for (unsigned i = 0; i < 16 + 32; i++)
		snap_put_u8(&w, (uint8_t)(i * 37));
	snap_put_u64(&w, 100);
	snap_end(&w);
	snprintf(path, sizeof(path), "%s/state", dir);
	rc = snap_writer_save(&w, path, err, sizeof(err));
	if (rc)
		fprintf(stderr, "%s\n", err);
	snap_writer_free(&w);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s TARGET DIR\n", argv[0]);
		return 2;
	}
	if (strcmp(argv[1], "boot") == 0)
		return seeds_boot(argv[2]) ? 1 : 0;
	if (strcmp(argv[1], "snap") == 0)
		return seeds_snap(argv[2]) ? 1 : 0;
	/* A target without generated seeds starts from fuzz/corpus/<name> or nothing. */
	return 0;
}

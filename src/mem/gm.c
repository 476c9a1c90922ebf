#include "mem/gm.h"
#include "mem/gm_test.h"   /* gm_init_fake is defined here, for tests only */
#include "mem/layout.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

static void gm_add(struct guest_mem *gm, uint64_t gpa, uint64_t size, uint8_t *host, uint64_t off)
{
	struct gm_region *r = &gm->regions[gm->nr_regions++];

	r->gpa = gpa;
	r->size = size;
	r->host = host;
	r->fd_offset = off;
}

/*
 * memfd RAM is shmem: it only gets transparent huge pages when the host
 * allows THP for shmem. Say so once, since it halves large direct I/O.
 */
static void gm_check_shmem_thp(void)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");

	if (!f)
		return;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	if (strstr(buf, "[never]") || strstr(buf, "[deny]"))
		log_info("mem", "this host disables THP for shared memory (shmem_enabled %s); guest RAM uses "
			 "small pages - use --hugepages, or set shmem_enabled to advise",
			 strstr(buf, "[never]") ? "never" : "deny");
}

int gm_init(struct guest_mem *gm, uint64_t ram_size, unsigned flags)
{
	unsigned mfd_flags = MFD_CLOEXEC;
	uint64_t low, high;
	void *map;
	int fd, err;

	memset(gm, 0, sizeof(*gm));
	gm->memfd = -1;
	if (ram_size == 0 || ram_size > GiB(1024))
		return -EINVAL;
	if (flags & GM_HUGEPAGES) {
		mfd_flags |= MFD_HUGETLB;
		if (ram_size % MiB(2))
			return -EINVAL;
	}
	fd = memfd_create("kestrel-ram", mfd_flags);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)ram_size) < 0) {
		err = -errno;
		goto err_close;
	}
	map = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (map == MAP_FAILED) {
		err = -errno;
		goto err_close;
	}
	if (!(flags & (GM_HUGEPAGES | GM_NO_THP))) {
		(void)madvise(map, ram_size, MADV_HUGEPAGE); /* best effort: THP */
		gm_check_shmem_thp();
	}

	low = ram_size < LAYOUT_MMIO32_START ? ram_size : LAYOUT_MMIO32_START;
	high = ram_size - low;
	gm_add(gm, 0, low, map, 0);
	if (high)
		gm_add(gm, LAYOUT_HIGH_RAM_START, high, (uint8_t *)map + low, low);
	gm->ram_size = ram_size;
	gm->memfd = fd;
	gm->mapping = map;
	gm->mapping_size = ram_size;
	gm->owns_mapping = true;
	return 0;

err_close:
	close(fd);
	return err;
}

int gm_init_file(struct guest_mem *gm, uint64_t ram_size, const char *path, char *err, size_t errlen)
{
	struct stat st;
	uint64_t low, high;
	void *map;
	int fd, e;

	memset(gm, 0, sizeof(*gm));
	gm->memfd = -1;
	if (ram_size == 0 || ram_size > GiB(1024)) {
		snprintf(err, errlen, "memory file %s: bad RAM size", path);
		return -EINVAL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		e = -errno;
		snprintf(err, errlen, "memory file %s: %s", path, strerror(-e));
		return e;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "memory file %s: not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size != ram_size) {
		snprintf(err, errlen, "memory file %s is %llu bytes; the snapshot's guest has %llu bytes of RAM",
			 path, (unsigned long long)st.st_size, (unsigned long long)ram_size);
		close(fd);
		return -EINVAL;
	}
	/* Private and writable: the guest's writes go to anonymous copies, never the file. */
	map = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	if (map == MAP_FAILED) {
		e = -errno;
		snprintf(err, errlen, "memory file %s: mmap: %s", path, strerror(-e));
		close(fd);
		return e;
	}
	low = ram_size < LAYOUT_MMIO32_START ? ram_size : LAYOUT_MMIO32_START;
	high = ram_size - low;
	gm_add(gm, 0, low, map, 0);
	if (high)
		gm_add(gm, LAYOUT_HIGH_RAM_START, high, (uint8_t *)map + low, low);
	gm->ram_size = ram_size;
	gm->memfd = fd;
	gm->mapping = map;
	gm->mapping_size = ram_size;
	gm->owns_mapping = true;
	return 0;
}

void gm_exit(struct guest_mem *gm)
{
	free(gm->dirty);
	if (gm->owns_mapping && gm->mapping)
		munmap(gm->mapping, gm->mapping_size);
	if (gm->memfd >= 0)
		close(gm->memfd);
	memset(gm, 0, sizeof(*gm));
	gm->memfd = -1;
}

void gm_init_fake(struct guest_mem *gm, uint64_t gpa, void *host, uint64_t size)
{
	memset(gm, 0, sizeof(*gm));
	gm->memfd = -1;
	gm_add(gm, gpa, size, host, 0);
	gm->ram_size = size;
}

void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	uint64_t last;

	if (len == 0)
		len = 1;
	if (__builtin_add_overflow(gpa, len - 1, &last))
		return NULL;
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		const struct gm_region *r = &gm->regions[i];

		if (gpa >= r->gpa && last <= r->gpa + (r->size - 1))
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, size_t len)
{
	const void *p = gm_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, size_t len)
{
	void *p = gm_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	gm_mark_dirty(gm, gpa, len);
	return 0;
}

uint64_t gm_file_offset(const struct guest_mem *gm, uint64_t gpa)
{
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		const struct gm_region *r = &gm->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return r->fd_offset + (gpa - r->gpa);
	}
	return UINT64_MAX;
}

void gm_mark_dirty(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	uint64_t *bm = __atomic_load_n(&gm->dirty, __ATOMIC_ACQUIRE);

	if (!bm || len == 0)
		return;
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		const struct gm_region *r = &gm->regions[i];
		uint64_t s, e;

		if (gpa >= r->gpa + r->size || gpa + len <= r->gpa || gpa + len < gpa)
			continue;
		s = (gpa > r->gpa ? gpa : r->gpa) - r->gpa + r->fd_offset;
		e = (gpa + len < r->gpa + r->size ? gpa + len : r->gpa + r->size) - r->gpa + r->fd_offset;
		for (uint64_t pg = s >> 12; pg <= (e - 1) >> 12 && pg / 64 < gm->dirty_words; pg++)
			__atomic_fetch_or(&bm[pg / 64], 1ull << (pg % 64), __ATOMIC_RELAXED);
	}
}

int gm_dirty_track(struct guest_mem *gm, bool on)
{
	if (!on) {
		uint64_t *bm = gm->dirty;

		__atomic_store_n(&gm->dirty, NULL, __ATOMIC_RELEASE);
		free(bm);
		gm->dirty_words = 0;
		return 0;
	}
	if (gm->dirty)
		return 0;
	gm->dirty_words = (gm->ram_size / 4096 + 63) / 64;
	uint64_t *bm = calloc(gm->dirty_words ? gm->dirty_words : 1, sizeof(uint64_t));
	if (!bm)
		return -ENOMEM;
	__atomic_store_n(&gm->dirty, bm, __ATOMIC_RELEASE);
	return 0;
}

bool gm_is_ram(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	return gm_ptr(gm, gpa, len) != NULL;
}

uint64_t gm_low_ram_end(const struct guest_mem *gm)
{
	return gm->nr_regions ? gm->regions[0].gpa + gm->regions[0].size : 0;
}

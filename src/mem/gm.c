#include "mem/gm.h"
#include "mem/gm_test.h"   /* gm_init_fake is defined here, for tests only */
#include "mem/layout.h"
#include "util/file.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
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

/* Read a cgroup memory limit file; 0 when it says "max" or v1's near-2^63 "unlimited". */
static uint64_t gm_read_limit(const char *path)
{
	unsigned long long v = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return 0;
	if (fscanf(f, "%llu", &v) != 1 || v >= (1ull << 60))
		v = 0;
	fclose(f);
	return v;
}

/*
 * The memory limit of kestrel's own cgroup (v2 memory.max, v1
 * memory.limit_in_bytes); 0: none found. In a container the cgroup mount
 * often shows only the tail of the path /proc/self/cgroup gives, so the
 * path's leading components are dropped one by one until a file is found.
 */
static uint64_t gm_cgroup_limit(void)
{
	char line[512], path[768];
	FILE *f = fopen("/proc/self/cgroup", "re");
	uint64_t limit = 0;

	if (!f)
		return 0;
	while (!limit && fgets(line, sizeof(line), f)) {
		const char *rel = NULL, *file = NULL, *base = NULL;
		char *nl = strchr(line, '\n');

		if (nl)
			*nl = '\0';
		if (!strncmp(line, "0::", 3)) {
			rel = line + 3, file = "memory.max", base = "/sys/fs/cgroup";
		} else if (strstr(line, ":memory:")) {
			rel = strstr(line, ":memory:") + 8, file = "memory.limit_in_bytes";
			base = "/sys/fs/cgroup/memory";
		}
		/* rel is "/a/b": try base/a/b, base/b, then base itself. */
		for (const char *r = rel; r;) {
			snprintf(path, sizeof(path), "%s%s/%s", base, r, file);
			if (access(path, R_OK) == 0) {
				limit = gm_read_limit(path);
				break;   /* the nearest group found decides */
			}
			if (!*r)
				break;
			r = strchr(r + 1, '/');
			if (!r)
				r = "";
		}
	}
	fclose(f);
	return limit;
}

int gm_check_host(uint64_t ram_size, unsigned flags, char *err, size_t errlen)
{
	struct sysinfo si;
	uint64_t host, cg;

	if (sysinfo(&si) == 0) {
		host = ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
		if (ram_size > host && !(flags & GM_OVERCOMMIT)) {
			snprintf(err, errlen,
				 "guest RAM of %llu MiB exceeds this host's memory plus swap (%llu MiB); the guest "
				 "would be killed when it uses it (--mem-overcommit starts it anyway)",
				 (unsigned long long)(ram_size >> 20), (unsigned long long)(host >> 20));
			return -ENOMEM;
		}
	}
	cg = gm_cgroup_limit();
	if (cg && ram_size > cg)
		log_warn("mem", "guest RAM of %llu MiB exceeds the memory limit of kestrel's cgroup (%llu MiB): "
			 "if the guest uses it all, the kernel OOM-kills kestrel (exit by SIGKILL, status 137)",
			 (unsigned long long)(ram_size >> 20), (unsigned long long)(cg >> 20));
	return 0;
}

int gm_hugepages_free(uint64_t *free_pages, uint64_t *page_kib)
{
	char line[128];
	unsigned long long v;
	int found = 0;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "HugePages_Free: %llu", &v) == 1) {
			*free_pages = v;
			found |= 1;
		} else if (sscanf(line, "Hugepagesize: %llu kB", &v) == 1) {
			*page_kib = v;
			found |= 2;
		}
	}
	fclose(f);
	return found == 3 ? 0 : -ENOENT;
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
	/*
	 * hugetlb pages come from a fixed host pool: without MAP_NORESERVE the
	 * mmap reserves them all now and fails with ENOMEM when the pool is short,
	 * instead of a SIGBUS at the guest's first touch of a page that is not
	 * there. Small pages stay lazily allocated (memory overcommit applies).
	 */
	map = mmap(NULL, ram_size, PROT_READ | PROT_WRITE,
		   MAP_SHARED | ((flags & GM_HUGEPAGES) ? 0 : MAP_NORESERVE), fd, 0);
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
	fd = file_open(path, O_RDONLY, 0, FILE_REG, "memory file", &st, err, errlen);
	if (fd < 0)
		return fd;
	/* RAM from offset 0; a snapshot memory file has its identity trailer after it
	 * (snapshot/memfile.h checks that before the file gets here). */
	if ((uint64_t)st.st_size < ram_size) {
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

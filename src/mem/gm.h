/*
 * Guest memory: regions of guest-physical address space backed by host
 * memory. Every access takes a length and is checked for overflow and
 * bounds; devices hold guest addresses, never host pointers.
 */
#ifndef KESTREL_GM_H
#define KESTREL_GM_H

#include "util/compiler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GM_MAX_REGIONS 4

struct gm_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
	uint64_t fd_offset;   /* offset of this region in the memfd */
};

struct guest_mem {
	struct gm_region regions[GM_MAX_REGIONS];
	unsigned nr_regions;
	uint64_t ram_size;    /* total bytes of RAM */
	int memfd;            /* -1 for test memory */
	void *mapping;        /* one host mapping of the whole memfd */
	size_t mapping_size;
	bool owns_mapping;
	/*
	 * Pages written by the VMM itself (device DMA), one bit per 4 KiB page of
	 * the memfd/memory file offset space; KVM's dirty log only sees the
	 * guest's own writes. NULL unless dirty tracking is on.
	 */
	uint64_t *dirty;
	size_t dirty_words;
};

enum gm_flags {
	GM_HUGEPAGES = 1u << 0,  /* back with hugetlbfs pages instead of THP */
	GM_NO_THP    = 1u << 1,
	GM_OVERCOMMIT = 1u << 2, /* accept more RAM than the host has (memory plus swap) */
};

/*
 * Allocate `ram_size` bytes of memfd-backed RAM, split around the 32-bit
 * hole at LAYOUT_MMIO32_START. Returns 0 or -errno.
 */
KESTREL_MUST_CHECK int gm_init(struct guest_mem *gm, uint64_t ram_size, unsigned flags);
/*
 * Guest RAM is allocated lazily, so an impossible size would only show when
 * the guest touches it, as an OOM kill. Refuse (-ENOMEM, reason in err) RAM
 * beyond the host's memory plus swap unless flags has GM_OVERCOMMIT; warn
 * when it exceeds the memory limit of kestrel's cgroup.
 */
KESTREL_MUST_CHECK int gm_check_host(uint64_t ram_size, unsigned flags, char *err, size_t errlen);
/* The host's free hugetlb pages of the default size, from /proc/meminfo. 0 or -errno. */
int gm_hugepages_free(uint64_t *free_pages, uint64_t *page_kib);
void gm_exit(struct guest_mem *gm);

/*
 * Restore: map guest RAM from a snapshot memory file, MAP_PRIVATE so pages
 * load lazily on first touch and guest writes never reach the file. The file
 * must hold exactly `ram_size` bytes (low RAM, then RAM above 4 GiB).
 * 0, or -errno with a one-line reason.
 */
KESTREL_MUST_CHECK int gm_init_file(struct guest_mem *gm, uint64_t ram_size, const char *path, char *err,
		size_t errlen);

/*
 * Host pointer for [gpa, gpa+len), or NULL if the range overflows or is not
 * entirely inside one RAM region. len 0 is treated as 1.
 */
KESTREL_MUST_CHECK void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Copy in/out; the range may span adjacent regions. 0 or -EFAULT. */
KESTREL_MUST_CHECK int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, size_t len);
KESTREL_MUST_CHECK int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, size_t len);

/* Device writes: record [gpa, gpa+len) as dirty when tracking is on (thread-safe, cheap when off). */
void gm_mark_dirty(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
KESTREL_MUST_CHECK int gm_dirty_track(struct guest_mem *gm, bool on);
/* Offset of a RAM gpa in the memfd / memory file, or UINT64_MAX if not RAM. */
uint64_t gm_file_offset(const struct guest_mem *gm, uint64_t gpa);

bool gm_is_ram(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* RAM below the hole (what fits in 32-bit addressing). */
uint64_t gm_low_ram_end(const struct guest_mem *gm);

#endif

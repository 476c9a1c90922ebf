/*
 * Snapshots of a whole machine: the state file (machine configuration,
 * KVM state, every device) and the memory file (guest RAM in memfd order:
 * RAM below the 32-bit hole, then RAM above 4 GiB).
 *
 * Full snapshots write only the RAM pages the guest ever touched (the
 * memfd's data extents; for a restored VM, the pages written since the restore
 * plus the memory file's data extents) into a sparse file, via PATH.tmp and
 * rename. Diff snapshots write the pages dirtied since the previous snapshot
 * (KVM's dirty log plus the VMM's own device writes) into the memory file in
 * place: point it at the base snapshot's memory file to layer the diff onto
 * it, or at a new file to get a sparse diff.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine_priv.h"
#include "snapshot/snap.h"
#include "util/file.h"
#include "util/log.h"

#define PAGE 4096ull

#define MEM_SNAP_VERSION 1

enum { MEM_FULL = 0, MEM_DIFF = 1 };   /* the memory section: what the memory file holds */

/* --- guest memory ----------------------------------------------------- */

static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	static const uint8_t zero[PAGE];

	return memcmp(p, zero, PAGE) == 0;
}

/* Write [off, off+len) of RAM, skipping zero pages (they stay holes in a fresh file). */
static int mem_write_range(int fd, const uint8_t *ram, uint64_t off, uint64_t len, bool skip_zero)
{
	uint64_t end = off + len, run = off;
	int e;

	if (!skip_zero)
		return pwrite_all(fd, ram + off, len, (off_t)off);
	while (run < end) {
		uint64_t a = run, b;

		while (a < end && page_is_zero(ram + a))
			a += PAGE;
		b = a;
		while (b < end && !page_is_zero(ram + b))
			b += PAGE;
		if (b > a) {
			e = pwrite_all(fd, ram + a, b - a, (off_t)a);
			if (e)
				return e;
		}
		run = b;
	}
	return 0;
}

static void bm_set_range(uint64_t *bm, uint64_t first, uint64_t end)
{
	for (uint64_t p = first; p < end; p++)
		bm[p / 64] |= 1ull << (p % 64);
}

static bool bm_test(const uint64_t *bm, uint64_t p)
{
	return bm[p / 64] & (1ull << (p % 64));
}

/* Set the pages of [0, size) where the file `fd` has data (not holes). */
static int mem_file_data(int fd, uint64_t size, uint64_t *bm)
{
	off_t data, hole;

	for (data = 0; (uint64_t)data < size; data = hole) {
		data = lseek(fd, data, SEEK_DATA);
		if (data < 0)
			return errno == ENXIO ? 0 : -errno;
		if ((uint64_t)data >= size)
			return 0;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > size)
			hole = (off_t)size;
		bm_set_range(bm, (uint64_t)data / PAGE, ((uint64_t)hole + PAGE - 1) / PAGE);
	}
	return 0;
}

/* /proc/PID/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst) */
#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_SWAP    (1ull << 62)
#define PAGEMAP_FILE    (1ull << 61)   /* file page or shared anonymous */

/* Set the pages of the private RAM mapping that are anonymous copies (written since the restore). */
static int mem_anon_pages(const uint8_t *ram, uint64_t npages, uint64_t *bm)
{
	uint64_t ent[512];
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (pm < 0)
		return -errno;
	for (uint64_t p = 0; p < npages;) {
		uint64_t n = npages - p < 512 ? npages - p : 512;
		off_t off = (off_t)(((uintptr_t)ram / PAGE + p) * sizeof(uint64_t));
		ssize_t r = pread(pm, ent, n * sizeof(uint64_t), off);

		if (r <= 0 || r % (ssize_t)sizeof(uint64_t)) {
			int e = r < 0 ? -errno : -EIO;

			close(pm);
			return e;
		}
		n = (uint64_t)r / sizeof(uint64_t);
		for (uint64_t i = 0; i < n; i++)
			if ((ent[i] & PAGEMAP_SWAP) || ((ent[i] & PAGEMAP_PRESENT) && !(ent[i] & PAGEMAP_FILE)))
				bm[(p + i) / 64] |= 1ull << ((p + i) % 64);
		p += n;
	}
	close(pm);
	return 0;
}

/* Copy [off, off+len) of file `in` to the same offset of `out` without mapping it. */
static int mem_copy_file(int in, int out, uint64_t off, uint64_t len)
{
	off_t ioff = (off_t)off, ooff = (off_t)off;

	while (len) {
		ssize_t n = copy_file_range(in, &ioff, out, &ooff, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		len -= (uint64_t)n;
	}
	return 0;
}

/*
 * A restored VM's RAM is a private map of its memory file. A page holds data
 * where the guest (or the VMM) wrote it since the restore — an anonymous copy,
 * which /proc/self/pagemap reports without touching the page — or where the
 * file has data; everything else reads as zero. Copies are written from RAM,
 * file data is copied file to file, so a snapshot of a large, lazily restored
 * VM neither reads its holes nor faults its RAM in. Where pagemap cannot be
 * read, every page is read and the zero ones skipped.
 */
static int mem_write_restored(struct machine *m, int fd)
{
	struct guest_mem *gm = &m->vm.gm;
	const uint8_t *ram = gm->mapping;
	uint64_t npages = gm->ram_size / PAGE, words = (npages + 63) / 64;
	uint64_t *anon = calloc(words ? words : 1, sizeof(uint64_t));
	uint64_t *data = calloc(words ? words : 1, sizeof(uint64_t));
	int e;

	if (!anon || !data) {
		e = -ENOMEM;
		goto out;
	}
	e = mem_file_data(gm->memfd, gm->ram_size, data);
	e = e ?: mem_anon_pages(ram, npages, anon);
	if (e) {
		log_info("snapshot", "cannot tell which RAM pages were written since the restore (%s): "
			 "reading all of RAM", strerror(-e));
		e = mem_write_range(fd, ram, 0, gm->ram_size, true);
		goto out;
	}
	for (uint64_t p = 0; p < npages && !e;) {
		bool a = bm_test(anon, p), d = bm_test(data, p);
		uint64_t q = p + 1;

		if (!a && !d) {
			p++;
			continue;
		}
		while (q < npages && bm_test(anon, q) == a && (a || bm_test(data, q)))
			q++;
		if (!a) {
			e = mem_copy_file(gm->memfd, fd, p * PAGE, (q - p) * PAGE);
			if (e == -EXDEV || e == -EINVAL || e == -ENOSYS || e == -EOPNOTSUPP || e == -EIO)
				e = mem_write_range(fd, ram, p * PAGE, (q - p) * PAGE, true);
		} else {
			e = mem_write_range(fd, ram, p * PAGE, (q - p) * PAGE, true);
		}
		p = q;
	}
out:
	free(anon);
	free(data);
	return e;
}

static int mem_write_full(struct machine *m, int fd)
{
	struct guest_mem *gm = &m->vm.gm;
	const uint8_t *ram = gm->mapping;
	uint64_t size = gm->ram_size;
	off_t data, hole;
	int e;

	if (m->restored)
		return mem_write_restored(m, fd);
	/* A memfd: only its allocated extents were ever touched. */
	for (data = 0; (uint64_t)data < size; data = hole) {
		data = lseek(gm->memfd, data, SEEK_DATA);
		if (data < 0)
			return errno == ENXIO ? 0 : mem_write_range(fd, ram, 0, size, true);
		hole = lseek(gm->memfd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > size)
			hole = (off_t)size;
		e = pwrite_all(fd, ram + data, (size_t)(hole - data), data);
		if (e)
			return e;
	}
	return 0;
}

/* Collect the pages dirtied since the last call (and clear the logs). NULL: out of memory. */
static uint64_t *mem_dirty_collect(struct machine *m, int *errp)
{
	struct guest_mem *gm = &m->vm.gm;
	size_t words = (gm->ram_size / PAGE + 63) / 64;
	uint64_t *bm = calloc(words ? words : 1, sizeof(uint64_t));

	*errp = 0;
	if (!bm) {
		*errp = -ENOMEM;
		return NULL;
	}
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		int e = vm_dirty_log_fetch(&m->vm, i, bm + gm->regions[i].fd_offset / PAGE / 64);

		if (e < 0) {
			free(bm);
			*errp = e;
			return NULL;
		}
	}
	if (gm->dirty)
		for (size_t w = 0; w < words && w < gm->dirty_words; w++)
			bm[w] |= __atomic_exchange_n(&gm->dirty[w], 0, __ATOMIC_RELAXED);
	return bm;
}

static int mem_write_diff(struct machine *m, int fd, const uint64_t *bm, uint64_t *pages)
{
	const uint8_t *ram = m->vm.gm.mapping;
	uint64_t npages = m->vm.gm.ram_size / PAGE;
	int e;

	*pages = 0;
	for (uint64_t p = 0; p < npages;) {
		uint64_t q;

		if (!(bm[p / 64] & (1ull << (p % 64)))) {
			p++;
			continue;
		}
		for (q = p; q < npages && (bm[q / 64] & (1ull << (q % 64))); q++)
			;
		e = pwrite_all(fd, ram + p * PAGE, (q - p) * PAGE, (off_t)(p * PAGE));
		if (e)
			return e;
		*pages += q - p;
		p = q;
	}
	return 0;
}

/*
 * A snapshot that fails after the dirty logs were read must not lose those
 * pages: put them back into the VMM's own dirty bitmap, so the next Diff
 * snapshot writes them.
 */
static void mem_dirty_putback(struct machine *m, const uint64_t *bm)
{
	struct guest_mem *gm = &m->vm.gm;

	if (!bm || !gm->dirty)
		return;
	for (size_t w = 0; w < gm->dirty_words; w++)
		if (bm[w])
			__atomic_fetch_or(&gm->dirty[w], bm[w], __ATOMIC_RELAXED);
}

/* Diff: the dirty pages, in place into `path` (the base snapshot's memory file, or a new one). */
static int mem_write_diff_file(struct machine *m, const char *path, const uint64_t *bm, char *err,
			       size_t errlen)
{
	uint64_t pages = 0;
	int fd, e = 0;

	fd = file_open(path, O_WRONLY | O_CREAT, 0600, FILE_REG, "memory file", NULL, err, errlen);
	if (fd < 0)
		return fd;
	if (ftruncate(fd, (off_t)m->vm.gm.ram_size) < 0)
		e = -errno;
	e = e ?: mem_write_diff(m, fd, bm, &pages);
	if (!e && fdatasync(fd) < 0)
		e = -errno;
	close(fd);
	if (e)
		snprintf(err, errlen, "memory file %s: %s", path, strerror(-e));
	else
		log_info("snapshot", "diff: %llu dirty pages written", (unsigned long long)pages);
	return e;
}

/* Full: all of RAM into `tmp` (PATH.tmp); the caller renames it once the state file is written. */
static int mem_write_full_file(struct machine *m, const char *tmp, char *err, size_t errlen)
{
	int fd, e = 0;

	fd = file_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600, FILE_REG, "memory file", NULL,
		       err, errlen);
	if (fd < 0)
		return fd;
	if (ftruncate(fd, (off_t)m->vm.gm.ram_size) < 0)
		e = -errno;
	e = e ?: mem_write_full(m, fd);
	if (!e && fdatasync(fd) < 0)
		e = -errno;
	close(fd);
	if (e) {
		unlink(tmp);
		snprintf(err, errlen, "memory file %s: %s", tmp, strerror(-e));
	}
	return e;
}

int machine_track_dirty(struct machine *m, bool on)
{
	int e = gm_dirty_track(&m->vm.gm, on);

	return e ?: vm_dirty_log_enable(&m->vm, on);
}

/* --- the machine ------------------------------------------------------ */

static void machine_save_legacy(struct machine *m, struct snap_writer *w)
{
	snap_begin(w, "uart.com1", UART_SNAP_VERSION);
	uart_save(&m->com1, w);
	snap_end(w);
	snap_begin(w, "i8042", I8042_SNAP_VERSION);
	i8042_save(&m->kbd, w);
	snap_end(w);
	snap_begin(w, "rtc", RTC_SNAP_VERSION);
	rtc_save(&m->rtc, w);
	snap_end(w);
	snap_begin(w, "acpi_pm", ACPI_PM_SNAP_VERSION);
	acpi_pm_save(&m->pm, w);
	snap_end(w);
	snap_begin(w, "pci.host", PCI_HOST_SNAP_VERSION);
	pci_host_save(&m->pci, w);
	snap_end(w);
}

int machine_snapshot(struct machine *m, bool diff, const char *state_path, const char *mem_path,
		     char *err, size_t errlen)
{
	struct snap_writer w;
	uint64_t *bm = NULL;
	char tmp[4096];
	int e;

	if (diff && !vm_dirty_log_enabled(&m->vm)) {
		snprintf(err, errlen, "diff snapshots need dirty page tracking (track_dirty_pages)");
		return -EINVAL;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", mem_path) >= sizeof(tmp)) {
		snprintf(err, errlen, "memory file path too long");
		return -ENAMETOOLONG;
	}
	snap_writer_init(&w);
	machine_config_save(&m->cfg, &w);
	snap_begin(&w, "memory", MEM_SNAP_VERSION);
	snap_put_u64(&w, m->vm.gm.ram_size);
	snap_put_u32(&w, diff ? MEM_DIFF : MEM_FULL);
	snap_end(&w);
	e = vm_save_state(&m->vm, &w, err, errlen);
	if (e < 0)
		goto out;
	machine_save_legacy(m, &w);
	machine_virtio_save(m, &w);
	/*
	 * The dirty logs: a Diff writes what they hold; a Full resets them, so
	 * the next Diff is relative to it. On failure they are put back.
	 */
	if (vm_dirty_log_enabled(&m->vm)) {
		bm = mem_dirty_collect(m, &e);
		if (!bm) {
			snprintf(err, errlen, "reading the dirty page log: %s", strerror(-e));
			goto out;
		}
	}
	/*
	 * Never leave a state file next to a memory file from another moment:
	 * a Full memory file waits as PATH.tmp until the state file is written
	 * (and the state file goes if the rename fails). The rename also makes
	 * a Full snapshot onto the memory file a restored VM runs from safe:
	 * its private mapping keeps the old file.
	 */
	e = diff ? mem_write_diff_file(m, mem_path, bm, err, errlen) : mem_write_full_file(m, tmp, err, errlen);
	if (e < 0)
		goto out;
	e = snap_writer_save(&w, state_path, err, errlen);
	if (e < 0) {
		if (!diff)
			unlink(tmp);
		goto out;
	}
	if (!diff && rename(tmp, mem_path) < 0) {
		e = -errno;
		snprintf(err, errlen, "memory file %s: %s", mem_path, strerror(-e));
		unlink(tmp);
		unlink(state_path);
	}
out:
	if (e < 0)
		mem_dirty_putback(m, bm);
	free(bm);
	snap_writer_free(&w);
	return e;
}

/* Find a section, check its version, load it with fn, check it was consumed exactly. */
#define MACHINE_LOAD_SEC(r, name, ver, fn, dev, err, errlen)                                        \
	({                                                                                           \
		struct snap_sec _s;                                                                  \
		int _e = snap_find(r, name, &_s);                                                    \
		if (_e < 0)                                                                          \
			snprintf(err, errlen, "snapshot has no '%s' section", name);                \
		else if (_s.version != (ver)) {                                              \
			snprintf(err, errlen, "snapshot section '%s' has version %u; this kestrel reads %u", \
				 name, _s.version, (unsigned)(ver));                                \
			_e = -EINVAL;                                                                \
		} else if ((_e = fn(dev, &_s)) < 0 || (_e = snap_sec_end(&_s)) < 0) {                \
			snprintf(err, errlen, "snapshot section '%s' is invalid for this machine", name); \
			_e = -EINVAL;                                                                \
		}                                                                                    \
		_e;                                                                                  \
	})

int machine_load(struct machine *m, const struct snap_reader *r, char *err, size_t errlen)
{
	struct snap_sec s;
	uint64_t ram;
	uint32_t kind;
	int e;

	if (snap_find(r, "memory", &s) < 0) {
		snprintf(err, errlen, "snapshot has no memory section");
		return -EINVAL;
	}
	ram = snap_get_u64(&s);
	kind = snap_get_u32(&s);
	if (snap_sec_end(&s) < 0 || s.version != MEM_SNAP_VERSION || ram != m->vm.gm.ram_size ||
	    (kind != MEM_FULL && kind != MEM_DIFF)) {
		snprintf(err, errlen, "snapshot memory section does not match the machine");
		return -EINVAL;
	}
	m->restored = true;
	e = MACHINE_LOAD_SEC(r, "uart.com1", UART_SNAP_VERSION, uart_load, &m->com1, err, errlen);
	if (e < 0)
		return e;
	e = MACHINE_LOAD_SEC(r, "i8042", I8042_SNAP_VERSION, i8042_load, &m->kbd, err, errlen);
	if (e < 0)
		return e;
	e = MACHINE_LOAD_SEC(r, "rtc", RTC_SNAP_VERSION, rtc_load, &m->rtc, err, errlen);
	if (e < 0)
		return e;
	e = MACHINE_LOAD_SEC(r, "acpi_pm", ACPI_PM_SNAP_VERSION, acpi_pm_load, &m->pm, err, errlen);
	if (e < 0)
		return e;
	e = MACHINE_LOAD_SEC(r, "pci.host", PCI_HOST_SNAP_VERSION, pci_host_load, &m->pci, err, errlen);
	if (e < 0)
		return e;
	e = machine_virtio_load(m, r, err, errlen);
	if (e < 0)
		return e;
	return vm_load_state(&m->vm, r, err, errlen);
}

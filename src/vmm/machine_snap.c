/*
 * Snapshots of a whole machine: the state file (machine configuration,
 * KVM state, every device) and the memory file (guest RAM in memfd order).
 * The memory file itself — writing it, its identity trailer, the commit of
 * the pair and the checks on load — is src/snapshot/memfile.c; this file
 * decides what goes in (every page for a Full, the dirty pages layered onto
 * the previous snapshot's memory for a Diff) and keeps the generations that
 * bind this VM to its last snapshot.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine_priv.h"
#include "snapshot/memfile.h"
#include "snapshot/snap.h"
#include "util/file.h"
#include "util/log.h"

#define PAGE 4096ull

/* --- guest memory ----------------------------------------------------- */

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

int machine_track_dirty(struct machine *m, bool on)
{
	int e = gm_dirty_track(&m->vm.gm, on);

	return e ?: vm_dirty_log_enable(&m->vm, on);
}

/* --- the machine ------------------------------------------------------ */

/*
 * A restored VM copies the pages it never wrote from the memory file it maps:
 * that file must still be the one it was restored from. Truncated, its pages
 * would be missing from the new snapshot; rewritten in place (cp onto it),
 * they would come from another snapshot.
 */
static int machine_snap_source_check(struct machine *m, char *err, size_t errlen)
{
	struct memfile_id id;
	uint64_t size = 0;
	int e;

	if (!m->restored)
		return 0;
	e = memfile_trailer_read(m->vm.gm.memfd, m->vm.gm.ram_size, &id, &size);
	if (e == -EFBIG) {
		snprintf(err, errlen, "the memory file this VM was restored from is now %llu bytes, not %llu: it was "
			 "truncated or rewritten underneath the VM, so no snapshot can be taken from it",
			 (unsigned long long)size, (unsigned long long)(m->vm.gm.ram_size + MEMFILE_TRAILER_LEN));
		return -EIO;
	}
	if (!e && memcmp(id.gen, m->mem_gen, MEMFILE_GEN_LEN))
		e = -EBADMSG;
	if (e) {
		snprintf(err, errlen, "the memory file this VM was restored from was changed underneath the VM (%s), "
			 "so no snapshot can be taken from it",
			 e == -EBADMSG ? "its identity trailer is another one" : strerror(-e));
		return -EIO;
	}
	return 0;
}

/*
 * A Diff's base: the memory file of this VM's last snapshot (taken or
 * restored), copied into the new memory file, which then gets the dirty pages
 * on top. The old file stays as it was until the commit. A memory file that
 * does not exist yet gives a file holding only the diff (not loadable).
 */
static int machine_snap_diff_base(struct machine *m, const struct memfile_paths *p, int out, bool *complete,
				  char *err, size_t errlen)
{
	struct memfile_id id;
	char g[17] = "none";
	int in, e;

	*complete = false;
	in = file_open(p->mem, O_RDONLY, 0, FILE_REG, "memory file", NULL, err, errlen);
	if (in == -ENOENT)
		return 0;
	if (in < 0)
		return in;
	e = memfile_trailer_read(in, m->vm.gm.ram_size, &id, NULL);
	if (e || !m->have_last_gen || memcmp(id.gen, m->last_gen, MEMFILE_GEN_LEN)) {
		if (m->have_last_gen)
			memfile_gen_str(m->last_gen, g);
		snprintf(err, errlen, "memory file %s is not the memory file of this VM's last snapshot (generation "
			 "%s): a Diff adds the pages changed since that snapshot to it", p->mem, g);
		close(in);
		return -EINVAL;
	}
	e = memfile_copy_data(in, out, m->vm.gm.ram_size);
	close(in);
	if (e) {
		snprintf(err, errlen, "memory file %s: copying it: %s", p->mem, strerror(-e));
		return e;
	}
	*complete = m->last_complete;
	return 0;
}

/* The new memory file as MEM.tmp, with its identity (mi) filled in. */
static int machine_snap_write_mem(struct machine *m, const struct memfile_paths *p, const uint64_t *bm,
				  struct memfile_info *mi, char *err, size_t errlen)
{
	const struct memfile_src src = { .ram = m->vm.gm.mapping, .ram_size = m->vm.gm.ram_size,
					 .fd = m->vm.gm.memfd, .restored = m->restored };
	uint64_t pages = 0;
	int fd, e = 0;

	/* A FIFO or a symlink planted at MEM.tmp must not block or redirect the write. */
	fd = file_open(p->mem_tmp, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600, FILE_REG, "memory file",
		       NULL, err, errlen);
	if (fd < 0)
		return fd;
	if (ftruncate(fd, (off_t)src.ram_size) < 0)
		e = -errno;
	if (!e && mi->kind == MEMFILE_DIFF) {
		e = machine_snap_diff_base(m, p, fd, &mi->complete, err, errlen);
		if (e)
			goto out;
		e = memfile_write_pages(&src, fd, bm, &pages);
	} else if (!e) {
		e = memfile_write_full(&src, fd);
	}
	if (!e)
		memfile_fault("snapshot-memory-written");
	/* The digest is of what the file holds, read back: it vouches for the file, not for RAM. */
	e = e ?: memfile_digest(fd, src.ram_size, mi->id.digest, &mi->id.data_pages);
	e = e ?: memfile_new_gen(mi->id.gen);
	mi->id.ram_size = src.ram_size;
	e = e ?: memfile_trailer_write(fd, &mi->id);
	if (!e && fsync(fd) < 0)
		e = -errno;
	if (e)
		snprintf(err, errlen, "memory file %s: %s", p->mem_tmp, strerror(-e));
	else if (mi->kind == MEMFILE_DIFF)
		log_info("snapshot", "diff: %llu dirty pages written%s", (unsigned long long)pages,
			 mi->complete ? "" : " (a new file: the diff only)");
out:
	close(fd);
	return e;
}

int machine_snapshot(struct machine *m, bool diff, const char *state_path, const char *mem_path,
		     char *err, size_t errlen)
{
	struct memfile_info mi = { .kind = diff ? MEMFILE_DIFF : MEMFILE_FULL, .complete = true };
	struct memfile_paths *p;
	struct snap_writer w;
	uint64_t *bm = NULL;
	bool committed = false;
	int e;

	/* A back-end's rings and in-flight requests are not in the state (docs/vhost-user.md). */
	for (unsigned i = 0; i < m->nvdevs; i++)
		if (m->vdevs[i].vdev && m->vdevs[i].vdev->vhost_user) {
			snprintf(err, errlen, "snapshots of a VM with a vhost-user device (%s) are not supported yet",
				 m->vdevs[i].vdev->name);
			return -EOPNOTSUPP;
		}
	if (diff && !vm_dirty_log_enabled(&m->vm)) {
		snprintf(err, errlen, "diff snapshots need dirty page tracking (track_dirty_pages)");
		return -EINVAL;
	}
	p = malloc(sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* Before anything is written: the paths, a previous interrupted create, the source. */
	e = memfile_paths_init(p, state_path, mem_path, err, errlen);
	e = e ?: memfile_prepare(p, err, errlen);
	e = e ?: machine_snap_source_check(m, err, errlen);
	if (e) {
		free(p);
		return e;
	}
	snap_writer_init(&w);
	machine_config_save(&m->cfg, &w);
	e = vm_save_state(&m->vm, &w, err, errlen);
	if (e < 0)
		goto out;
	machine_legacy_save(m, &w);
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
	 * The order (memfile.h): MEM.tmp, STATE.tmp, both fsynced, then the
	 * renames with the state file's as the commit. Until then the previous
	 * pair stays as it was; a restored VM's private mapping keeps the old
	 * memory file even when the new one replaces it.
	 */
	e = machine_snap_write_mem(m, p, bm, &mi, err, errlen);
	if (e < 0)
		goto out;
	memfile_section_save(&w, &mi);
	e = snap_writer_write(&w, p->state_tmp, err, errlen);
	if (e < 0)
		goto out;
	e = memfile_commit(p, &committed, err, errlen);
	if (committed) {
		memcpy(m->last_gen, mi.id.gen, MEMFILE_GEN_LEN);
		m->have_last_gen = true;
		m->last_complete = mi.complete;
	}
out:
	if (e < 0 && !committed) {
		memfile_abort(p);
		mem_dirty_putback(m, bm);
	}
	free(bm);
	free(p);
	snap_writer_free(&w);
	return e;
}

int machine_load(struct machine *m, const struct snap_reader *r, char *err, size_t errlen)
{
	struct memfile_info mi;
	struct memfile_id id;
	int e;

	e = memfile_section_load(r, &mi, err, errlen);
	if (e < 0)
		return e;
	if (mi.id.ram_size != m->vm.gm.ram_size) {
		snprintf(err, errlen, "snapshot memory section does not match the machine");
		return -EINVAL;
	}
	/* The file mapped is the one memfile_check() accepted, not one renamed over it since. */
	if (memfile_trailer_read(m->vm.gm.memfd, m->vm.gm.ram_size, &id, NULL) < 0 ||
	    memcmp(id.gen, mi.id.gen, MEMFILE_GEN_LEN)) {
		snprintf(err, errlen, "the memory file was replaced while the snapshot was being loaded");
		return -EINVAL;
	}
	memcpy(m->mem_gen, id.gen, MEMFILE_GEN_LEN);
	memcpy(m->last_gen, id.gen, MEMFILE_GEN_LEN);
	m->have_last_gen = true;
	m->last_complete = true;
	m->restored = true;
	e = machine_legacy_load(m, r, err, errlen);
	if (e < 0)
		return e;
	e = machine_virtio_load(m, r, err, errlen);
	if (e < 0)
		return e;
	return vm_load_state(&m->vm, r, err, errlen);
}

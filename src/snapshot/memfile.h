/*
 * The snapshot memory file and its binding to the state file.
 *
 * Layout: guest RAM in memfd order (RAM below the 32-bit hole, then RAM above
 * 4 GiB), ram_size bytes from offset 0, so a restore maps it directly; then
 * one MEMFILE_TRAILER_LEN trailer page (never mapped) holding the file's
 * identity:
 *
 *   "KESTRLMF" | u32 version (1) | u32 flags (0) | u64 ram_size |
 *   u8 generation[16] | u8 sha256[32] | u64 data pages | u32 CRC-32 of the above
 *
 * The state file's "memory" section records the same generation, size and
 * digest. The generation (16 random bytes, new for every snapshot) is checked
 * on every load and is cheap; the digest is SHA-256 over the RAM's non-zero
 * pages (le64 ram_size, then le64 page index + the page, for each), so holes
 * and written zero pages hash alike, and is checked on request (it reads the
 * whole file).
 *
 * A snapshot is committed by the rename of its state file: the memory file is
 * written as MEM.tmp, the state file as STATE.tmp, both fsynced, then STATE.tmp
 * → STATE (the commit), then MEM.tmp → MEM. A state file whose memory still
 * sits in MEM.tmp (a crash between the two renames) is finished by the next
 * load or create of that state file (memfile_check, memfile_prepare); any
 * other temporary is garbage.
 */
#ifndef KESTREL_MEMFILE_H
#define KESTREL_MEMFILE_H

#include "util/compiler.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct snap_writer;
struct snap_reader;

#define MEMFILE_PAGE        4096ull
#define MEMFILE_TRAILER_LEN 4096ull
#define MEMFILE_GEN_LEN     16
#define MEMFILE_DIGEST_LEN  32
#define MEMFILE_SEC_VERSION 2      /* the state file's "memory" section */

enum { MEMFILE_FULL = 0, MEMFILE_DIFF = 1 };

/* A memory file's identity (its trailer, and the state file's memory section). */
struct memfile_id {
	uint64_t ram_size;
	uint8_t gen[MEMFILE_GEN_LEN];
	uint8_t digest[MEMFILE_DIGEST_LEN];
	uint64_t data_pages;           /* non-zero pages: informational */
};

/* The state file's memory section. */
struct memfile_info {
	uint32_t kind;                 /* MEMFILE_FULL / MEMFILE_DIFF */
	bool complete;                 /* false: a Diff onto a new file, only the changed pages */
	struct memfile_id id;
};

void memfile_section_save(struct snap_writer *w, const struct memfile_info *mi);
/* 0, or -EINVAL with a one-line reason. */
KESTREL_MUST_CHECK int memfile_section_load(const struct snap_reader *r, struct memfile_info *mi, char *err,
		size_t errlen);

/* --- the trailer and the digest --------------------------------------- */

KESTREL_MUST_CHECK int memfile_new_gen(uint8_t gen[MEMFILE_GEN_LEN]);
/* Writes the trailer at id->ram_size and sizes the file to ram_size + MEMFILE_TRAILER_LEN. */
KESTREL_MUST_CHECK int memfile_trailer_write(int fd, const struct memfile_id *id);
/*
 * Reads and checks the trailer of a file that must be ram_size +
 * MEMFILE_TRAILER_LEN bytes. -EFBIG: wrong size (*size_out says what it is);
 * -EBADMSG: no valid trailer; -errno on I/O.
 */
KESTREL_MUST_CHECK int memfile_trailer_read(int fd, uint64_t ram_size, struct memfile_id *id, uint64_t *size_out);
/* SHA-256 over the non-zero pages of [0, ram_size) of fd (see above); reads data extents only. */
KESTREL_MUST_CHECK int memfile_digest(int fd, uint64_t ram_size, uint8_t digest[MEMFILE_DIGEST_LEN], uint64_t *pages);
/* The first 8 bytes of a generation as 16 hex digits, for messages. */
void memfile_gen_str(const uint8_t gen[MEMFILE_GEN_LEN], char out[17]);

/* --- writing RAM -------------------------------------------------------- */

/* Where guest RAM is read from. */
struct memfile_src {
	const uint8_t *ram;            /* the whole of RAM, memfd order */
	uint64_t ram_size;
	int fd;                        /* the memfd, or the memory file `ram` privately maps */
	bool restored;                 /* ram is a MAP_PRIVATE map of fd */
};

/* Every page the guest ever touched into `out` (same offsets); holes stay holes. */
KESTREL_MUST_CHECK int memfile_write_full(const struct memfile_src *s, int out);
/* The pages set in `bm` (bit per page) into `out`; *pages counts them. */
KESTREL_MUST_CHECK int memfile_write_pages(const struct memfile_src *s, int out, const uint64_t *bm, uint64_t *pages);
/* The data extents of [0, size) of `in` to the same offsets of `out` (a Diff's base). */
KESTREL_MUST_CHECK int memfile_copy_data(int in, int out, uint64_t size);

/* --- the two-file commit ------------------------------------------------ */

struct memfile_paths {
	char state[PATH_MAX], state_tmp[PATH_MAX + 4], state_dir[PATH_MAX];
	char mem[PATH_MAX], mem_tmp[PATH_MAX + 4], mem_dir[PATH_MAX];
};

/*
 * Canonical paths for a snapshot's two files and their temporaries, refusing
 * a pair that names one file twice (./x and x, a hard link, a symlinked
 * directory) or where one is the other's temporary.
 */
KESTREL_MUST_CHECK int memfile_paths_init(struct memfile_paths *p, const char *state, const char *mem,
		char *err, size_t errlen);
/*
 * Before a create: finish a commit of p->state that a crash interrupted
 * between its renames, then remove stale temporaries.
 */
KESTREL_MUST_CHECK int memfile_prepare(const struct memfile_paths *p, char *err, size_t errlen);
/*
 * Both temporaries written and fsynced: commit (renames, directory fsyncs).
 * *committed: the state file was renamed into place, so the new pair stands
 * even where an error follows (its memory file then still waits as MEM.tmp).
 */
KESTREL_MUST_CHECK int memfile_commit(const struct memfile_paths *p, bool *committed, char *err, size_t errlen);
/* A failed create: remove its temporaries. */
void memfile_abort(const struct memfile_paths *p);

/* --- loading and verifying ------------------------------------------------ */

enum {
	MEMFILE_CHECK_DIGEST = 1 << 0,     /* read the whole file and compare its digest */
	MEMFILE_CHECK_RECOVER = 1 << 1,    /* finish an interrupted commit (rename MEM.tmp) */
};

/*
 * Check that `mem` is the memory file `r` (read from `state`) was written with:
 * size, trailer, generation, completeness, and with MEMFILE_CHECK_DIGEST the
 * content. 0, or -errno with a one-line reason.
 */
KESTREL_MUST_CHECK int memfile_check(const struct snap_reader *r, const char *state, const char *mem, unsigned flags,
		  struct memfile_info *mi, char *err, size_t errlen);
/* `kestrel snapshot verify`: the state file in full, then memfile_check with the digest. */
KESTREL_MUST_CHECK int memfile_verify(const char *state, const char *mem, char *msg, size_t msglen);

/* Fault injection for the crash tests: KESTREL_FAULT=POINT ends the process at POINT. */
void memfile_fault(const char *point);

#endif

/*
 * The snapshot state file: a header and named, versioned sections, each
 * with its own CRC-32. Guest RAM goes into a separate memory file.
 *
 *   header  : "KESTRLSN" | u32 format version | u32 section count |
 *             u64 file length | u32 CRC of the preceding header bytes
 *   section : char name[24] (NUL-padded) | u32 version | u32 flags (0) |
 *             u64 payload length | u32 CRC of name..length and the payload | payload
 *
 * Everything is little-endian. The reader loads the whole file and checks
 * every length and CRC before any section is handed out, so a truncated or
 * corrupted file is refused before anything is restored. Section contents are
 * written and read field by field through the helpers below; a reader that
 * runs past a section's end sets the section's error flag instead of reading
 * garbage, and snap_sec_end() turns that (or leftover bytes) into -EINVAL.
 */
#ifndef KESTREL_SNAP_H
#define KESTREL_SNAP_H

#include "util/compiler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_MAGIC          "KESTRLSN"
#define SNAP_FORMAT_VERSION 1
#define SNAP_NAME_LEN       24
#define SNAP_MAX_SECTIONS   256
#define SNAP_MAX_FILE       (256u << 20)   /* state files are small; refuse absurd ones */

struct snap_writer {
	uint8_t *buf;
	size_t len, cap;
	size_t sec_start;       /* offset of the open section's header, or SIZE_MAX */
	unsigned nsections;
	bool oom;
};

void snap_writer_init(struct snap_writer *w);
void snap_writer_free(struct snap_writer *w);
/* Open a section; `name` must be unique in the file and shorter than SNAP_NAME_LEN. */
void snap_begin(struct snap_writer *w, const char *name, uint32_t version);
void snap_put(struct snap_writer *w, const void *p, size_t n);
void snap_put_u8(struct snap_writer *w, uint8_t v);
void snap_put_u16(struct snap_writer *w, uint16_t v);
void snap_put_u32(struct snap_writer *w, uint32_t v);
void snap_put_u64(struct snap_writer *w, uint64_t v);
void snap_put_bool(struct snap_writer *w, bool v);
/* A string as u32 length + bytes (NULL is written as length 0xffffffff). */
void snap_put_str(struct snap_writer *w, const char *s);
void snap_end(struct snap_writer *w);
/* Write the file at PATH and fsync it. 0 or -errno with a one-line reason. */
KESTREL_MUST_CHECK int snap_writer_write(struct snap_writer *w, const char *path, char *err, size_t errlen);
/* The same through PATH.tmp and a rename (a state file alone; with a memory file: memfile.h). */
KESTREL_MUST_CHECK int snap_writer_save(struct snap_writer *w, const char *path, char *err, size_t errlen);

struct snap_sec {
	const char *name;
	uint32_t version;
	const uint8_t *p;
	size_t len, off;
	bool err;               /* a read ran past the end, or a value was refused */
};

struct snap_reader {
	uint8_t *buf;
	size_t len;
	unsigned nsections;
	struct {
		char name[SNAP_NAME_LEN];
		uint32_t version;
		size_t off, len;
	} sec[SNAP_MAX_SECTIONS];
};

/* Load and verify the whole file. 0, or -EINVAL / -errno with a one-line reason. */
KESTREL_MUST_CHECK int snap_reader_open(struct snap_reader *r, const char *path, char *err, size_t errlen);
/* Same, over a caller's buffer (copied); for tests and fuzzers. */
KESTREL_MUST_CHECK int snap_reader_open_mem(struct snap_reader *r, const void *buf, size_t len, char *err,
		size_t errlen);
void snap_reader_free(struct snap_reader *r);
/* Find a section by name. 0 or -ENOENT. */
KESTREL_MUST_CHECK int snap_find(const struct snap_reader *r, const char *name, struct snap_sec *s);

int snap_get(struct snap_sec *s, void *dst, size_t n);    /* 0 or -EINVAL (dst zeroed) */
uint8_t snap_get_u8(struct snap_sec *s);
uint16_t snap_get_u16(struct snap_sec *s);
uint32_t snap_get_u32(struct snap_sec *s);
uint64_t snap_get_u64(struct snap_sec *s);
bool snap_get_bool(struct snap_sec *s);     /* anything but 0/1 is an error */
/* A string written by snap_put_str into dst (size dstlen, NUL-terminated). NULL → *is_null. */
int snap_get_str(struct snap_sec *s, char *dst, size_t dstlen, bool *is_null);
/* Mark the section bad (a value out of range); loaders use it for their own checks. */
void snap_sec_fail(struct snap_sec *s);
/* 0 when every byte was consumed without error, else -EINVAL. */
KESTREL_MUST_CHECK int snap_sec_end(const struct snap_sec *s);

#endif

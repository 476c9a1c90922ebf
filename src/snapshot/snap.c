#include "snapshot/snap.h"
#include "util/bytes.h"
#include "util/crc32.h"
#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAP_HDR_LEN (8 + 4 + 4 + 8 + 4)
#define SNAP_SEC_HDR_LEN (SNAP_NAME_LEN + 4 + 4 + 8 + 4)

/* --- writer --------------------------------------------------------- */

void snap_writer_init(struct snap_writer *w)
{
	memset(w, 0, sizeof(*w));
	w->sec_start = SIZE_MAX;
	w->len = SNAP_HDR_LEN;  /* the header is filled in by save */
	w->cap = 4096;
	w->buf = calloc(1, w->cap);
	if (!w->buf)
		w->oom = true;
}

void snap_writer_free(struct snap_writer *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
}

static uint8_t *snap_reserve(struct snap_writer *w, size_t n)
{
	if (w->oom)
		return NULL;
	if (w->len + n > w->cap) {
		size_t cap = w->cap;
		uint8_t *b;

		while (w->len + n > cap)
			cap *= 2;
		b = realloc(w->buf, cap);
		if (!b) {
			w->oom = true;
			return NULL;
		}
		w->buf = b;
		w->cap = cap;
	}
	w->len += n;
	return w->buf + w->len - n;
}

void snap_begin(struct snap_writer *w, const char *name, uint32_t version)
{
	uint8_t *h;

	if (w->sec_start != SIZE_MAX)
		snap_end(w);
	h = snap_reserve(w, SNAP_SEC_HDR_LEN);
	if (!h)
		return;
	memset(h, 0, SNAP_SEC_HDR_LEN);
	snprintf((char *)h, SNAP_NAME_LEN, "%s", name);
	stnle(h + SNAP_NAME_LEN, version, 4);
	w->sec_start = (size_t)(h - w->buf);
}

void snap_put(struct snap_writer *w, const void *p, size_t n)
{
	uint8_t *d = snap_reserve(w, n);

	if (d && n)
		memcpy(d, p, n);
}

static void snap_put_le(struct snap_writer *w, uint64_t v, unsigned n)
{
	uint8_t *d = snap_reserve(w, n);

	if (d)
		stnle(d, v, n);
}

void snap_put_u8(struct snap_writer *w, uint8_t v) { snap_put_le(w, v, 1); }
void snap_put_u16(struct snap_writer *w, uint16_t v) { snap_put_le(w, v, 2); }
void snap_put_u32(struct snap_writer *w, uint32_t v) { snap_put_le(w, v, 4); }
void snap_put_u64(struct snap_writer *w, uint64_t v) { snap_put_le(w, v, 8); }
void snap_put_bool(struct snap_writer *w, bool v) { snap_put_le(w, v ? 1 : 0, 1); }

void snap_put_str(struct snap_writer *w, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	snap_put_u32(w, s ? (uint32_t)n : 0xffffffffu);
	snap_put(w, s, n);
}

void snap_end(struct snap_writer *w)
{
	uint8_t *h;
	uint64_t plen;
	uint32_t crc;

	if (w->sec_start == SIZE_MAX || w->oom) {
		w->sec_start = SIZE_MAX;
		return;
	}
	h = w->buf + w->sec_start;
	plen = w->len - w->sec_start - SNAP_SEC_HDR_LEN;
	stnle(h + SNAP_NAME_LEN + 8, plen, 8);
	crc = crc32_update(0, h, SNAP_SEC_HDR_LEN - 4);
	crc = crc32_update(crc, h + SNAP_SEC_HDR_LEN, plen);
	stnle(h + SNAP_SEC_HDR_LEN - 4, crc, 4);
	w->nsections++;
	w->sec_start = SIZE_MAX;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t r = write(fd, p, n);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

int snap_writer_write(struct snap_writer *w, const char *path, char *err, size_t errlen)
{
	int fd, e;

	if (w->sec_start != SIZE_MAX)
		snap_end(w);
	if (w->oom) {
		snprintf(err, errlen, "snapshot %s: out of memory while building the state", path);
		return -ENOMEM;
	}
	memcpy(w->buf, SNAP_MAGIC, 8);
	stnle(w->buf + 8, SNAP_FORMAT_VERSION, 4);
	stnle(w->buf + 12, w->nsections, 4);
	stnle(w->buf + 16, w->len, 8);
	stnle(w->buf + 24, crc32_update(0, w->buf, 24), 4);

	/* A FIFO or a symlink planted at the path must not block or redirect the write. */
	fd = file_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600, FILE_REG, "snapshot", NULL,
		       err, errlen);
	if (fd < 0)
		return fd;
	e = write_all(fd, w->buf, w->len);
	if (!e && fsync(fd) < 0)
		e = -errno;
	close(fd);
	if (e) {
		unlink(path);
		snprintf(err, errlen, "snapshot %s: %s", path, strerror(-e));
	}
	return e;
}

int snap_writer_save(struct snap_writer *w, const char *path, char *err, size_t errlen)
{
	char tmp[4096];
	int e;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		snprintf(err, errlen, "snapshot path too long");
		return -ENAMETOOLONG;
	}
	e = snap_writer_write(w, tmp, err, errlen);
	if (e)
		return e;
	if (rename(tmp, path) < 0) {
		e = -errno;
		unlink(tmp);
		snprintf(err, errlen, "snapshot %s: %s", path, strerror(-e));
	}
	return e;
}

/* --- reader --------------------------------------------------------- */

/* Names go into error messages: visible ASCII only. */
static bool snap_name_ok(const char *name)
{
	for (const char *c = name; *c; c++)
		if (*c < 0x21 || *c > 0x7e)
			return false;
	return true;
}

static int snap_parse(struct snap_reader *r, char *err, size_t errlen)
{
	const uint8_t *b = r->buf;
	uint64_t flen;
	uint32_t ver, n;
	size_t off;

	if (r->len < SNAP_HDR_LEN || memcmp(b, SNAP_MAGIC, 8) != 0) {
		snprintf(err, errlen, "not a kestrel snapshot (bad magic)");
		return -EINVAL;
	}
	if ((uint32_t)ldnle(b + 24, 4) != crc32_update(0, b, 24)) {
		snprintf(err, errlen, "snapshot header is corrupted (CRC mismatch)");
		return -EINVAL;
	}
	ver = (uint32_t)ldnle(b + 8, 4);
	if (ver != SNAP_FORMAT_VERSION) {
		snprintf(err, errlen, "snapshot format version %u; this kestrel reads version %u", ver,
			 SNAP_FORMAT_VERSION);
		return -EINVAL;
	}
	n = (uint32_t)ldnle(b + 12, 4);
	flen = ldnle(b + 16, 8);
	if (flen != r->len) {
		snprintf(err, errlen, "snapshot is %s: %zu bytes, header says %llu",
			 flen > r->len ? "truncated" : "longer than recorded", r->len,
			 (unsigned long long)flen);
		return -EINVAL;
	}
	if (n > SNAP_MAX_SECTIONS) {
		snprintf(err, errlen, "snapshot has %u sections (at most %u)", n, SNAP_MAX_SECTIONS);
		return -EINVAL;
	}
	off = SNAP_HDR_LEN;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *h = b + off;
		uint64_t plen;
		char name[SNAP_NAME_LEN];

		if (r->len - off < SNAP_SEC_HDR_LEN) {
			snprintf(err, errlen, "snapshot is truncated in section %u's header", i);
			return -EINVAL;
		}
		memcpy(name, h, SNAP_NAME_LEN);
		if (name[SNAP_NAME_LEN - 1] != '\0' || name[0] == '\0' || !snap_name_ok(name)) {
			snprintf(err, errlen, "snapshot section %u has a bad name", i);
			return -EINVAL;
		}
		plen = ldnle(h + SNAP_NAME_LEN + 8, 8);
		if (plen > r->len - off - SNAP_SEC_HDR_LEN) {
			snprintf(err, errlen, "snapshot is truncated in section '%s'", name);
			return -EINVAL;
		}
		if ((uint32_t)ldnle(h + SNAP_SEC_HDR_LEN - 4, 4) !=
		    crc32_update(crc32_update(0, h, SNAP_SEC_HDR_LEN - 4), h + SNAP_SEC_HDR_LEN, plen)) {
			snprintf(err, errlen, "snapshot section '%s' is corrupted (CRC mismatch)", name);
			return -EINVAL;
		}
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(r->sec[j].name, name) == 0) {
				snprintf(err, errlen, "snapshot has section '%s' twice", name);
				return -EINVAL;
			}
		memcpy(r->sec[i].name, name, SNAP_NAME_LEN);
		r->sec[i].version = (uint32_t)ldnle(h + SNAP_NAME_LEN, 4);
		r->sec[i].off = off + SNAP_SEC_HDR_LEN;
		r->sec[i].len = plen;
		off += SNAP_SEC_HDR_LEN + plen;
	}
	if (off != r->len) {
		snprintf(err, errlen, "snapshot has %zu bytes after its last section", r->len - off);
		return -EINVAL;
	}
	r->nsections = n;
	return 0;
}

int snap_reader_open_mem(struct snap_reader *r, const void *buf, size_t len, char *err, size_t errlen)
{
	int e;

	memset(r, 0, sizeof(*r));
	r->buf = malloc(len ? len : 1);
	if (!r->buf) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memcpy(r->buf, buf, len);
	r->len = len;
	e = snap_parse(r, err, errlen);
	if (e)
		snap_reader_free(r);
	return e;
}

int snap_reader_open(struct snap_reader *r, const char *path, char *err, size_t errlen)
{
	struct stat st;
	size_t got = 0;
	int fd, e;
	char why[256];

	memset(r, 0, sizeof(*r));
	fd = file_open(path, O_RDONLY, 0, FILE_REG, "snapshot", &st, err, errlen);
	if (fd == -EISDIR) {
		snprintf(err, errlen, "snapshot %s: is a directory, not a regular file", path);
		return -EINVAL;
	}
	if (fd < 0)
		return fd;
	if ((uint64_t)st.st_size > SNAP_MAX_FILE) {
		snprintf(err, errlen, "snapshot %s: %lld bytes is too large for a state file", path,
			 (long long)st.st_size);
		close(fd);
		return -EINVAL;
	}
	r->len = (size_t)st.st_size;
	r->buf = malloc(r->len ? r->len : 1);
	if (!r->buf) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	while (got < r->len) {
		ssize_t n = read(fd, r->buf + got, r->len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			e = n < 0 ? -errno : -EIO;
			snprintf(err, errlen, "snapshot %s: read: %s", path, strerror(-e));
			close(fd);
			snap_reader_free(r);
			return e;
		}
		got += (size_t)n;
	}
	close(fd);
	e = snap_parse(r, why, sizeof(why));
	if (e) {
		snprintf(err, errlen, "%s: %s", path, why);
		snap_reader_free(r);
	}
	return e;
}

void snap_reader_free(struct snap_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->len = 0;
	r->nsections = 0;
}

int snap_find(const struct snap_reader *r, const char *name, struct snap_sec *s)
{
	for (unsigned i = 0; i < r->nsections; i++)
		if (strcmp(r->sec[i].name, name) == 0) {
			*s = (struct snap_sec){ .name = r->sec[i].name, .version = r->sec[i].version,
						.p = r->buf + r->sec[i].off, .len = r->sec[i].len };
			return 0;
		}
	return -ENOENT;
}

int snap_get(struct snap_sec *s, void *dst, size_t n)
{
	if (s->err || n > s->len - s->off) {
		s->err = true;
		if (n)
			memset(dst, 0, n);
		return -EINVAL;
	}
	if (n)
		memcpy(dst, s->p + s->off, n);
	s->off += n;
	return 0;
}

static uint64_t snap_get_le(struct snap_sec *s, unsigned n)
{
	uint8_t b[8];

	if (snap_get(s, b, n) < 0)
		return 0;
	return ldnle(b, n);
}

uint8_t snap_get_u8(struct snap_sec *s) { return (uint8_t)snap_get_le(s, 1); }
uint16_t snap_get_u16(struct snap_sec *s) { return (uint16_t)snap_get_le(s, 2); }
uint32_t snap_get_u32(struct snap_sec *s) { return (uint32_t)snap_get_le(s, 4); }
uint64_t snap_get_u64(struct snap_sec *s) { return snap_get_le(s, 8); }

bool snap_get_bool(struct snap_sec *s)
{
	uint8_t v = snap_get_u8(s);

	if (v > 1)
		s->err = true;
	return v == 1;
}

int snap_get_str(struct snap_sec *s, char *dst, size_t dstlen, bool *is_null)
{
	uint32_t n = snap_get_u32(s);

	if (is_null)
		*is_null = false;
	if (dstlen)
		dst[0] = '\0';
	if (s->err)
		return -EINVAL;
	if (n == 0xffffffffu) {
		if (is_null)
			*is_null = true;
		return 0;
	}
	if (n >= dstlen || n > s->len - s->off) {
		s->err = true;
		return -EINVAL;
	}
	memcpy(dst, s->p + s->off, n);
	dst[n] = '\0';
	s->off += n;
	if (memchr(dst, '\0', n)) {
		s->err = true;
		return -EINVAL;
	}
	return 0;
}

void snap_sec_fail(struct snap_sec *s)
{
	s->err = true;
}

int snap_sec_end(const struct snap_sec *s)
{
	return (s->err || s->off != s->len) ? -EINVAL : 0;
}

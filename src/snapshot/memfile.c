/*
 * The snapshot memory file: writing guest RAM into it (sparse), its identity
 * trailer and digest, the crash-safe commit of a state file and memory file
 * as a pair, and the checks a load and `kestrel snapshot verify` make.
 * Layout and commit order: memfile.h.
 */
#include "snapshot/memfile.h"
#include "snapshot/snap.h"
#include "util/bytes.h"
#include "util/crc32.h"
#include "util/file.h"
#include "util/log.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE MEMFILE_PAGE
#define TRAILER_MAGIC   "KESTRLMF"
#define TRAILER_VERSION 1
#define TRAILER_BODY    (8 + 4 + 4 + 8 + MEMFILE_GEN_LEN + MEMFILE_DIGEST_LEN + 8)
#define DIGEST_CHUNK    (1u << 20)

void memfile_fault(const char *point)
{
	const char *f = getenv("KESTREL_FAULT");

	if (f && !strcmp(f, point)) {
		log_err("snapshot", "KESTREL_FAULT=%s: exiting here", point);
		_exit(86);
	}
}

/* --- the state file's memory section ------------------------------------ */

void memfile_section_save(struct snap_writer *w, const struct memfile_info *mi)
{
	snap_begin(w, "memory", MEMFILE_SEC_VERSION);
	snap_put_u64(w, mi->id.ram_size);
	snap_put_u32(w, mi->kind);
	snap_put_bool(w, mi->complete);
	snap_put(w, mi->id.gen, MEMFILE_GEN_LEN);
	snap_put(w, mi->id.digest, MEMFILE_DIGEST_LEN);
	snap_put_u64(w, mi->id.data_pages);
	snap_end(w);
}

int memfile_section_load(const struct snap_reader *r, struct memfile_info *mi, char *err, size_t errlen)
{
	struct snap_sec s;

	memset(mi, 0, sizeof(*mi));
	if (snap_find(r, "memory", &s) < 0) {
		snprintf(err, errlen, "snapshot has no memory section");
		return -EINVAL;
	}
	if (s.version != MEMFILE_SEC_VERSION) {
		snprintf(err, errlen, "snapshot memory section has version %u%s; this kestrel reads %u", s.version,
			 s.version == 1 ? " (its memory file is not bound to it: take the snapshot again)" : "",
			 MEMFILE_SEC_VERSION);
		return -EINVAL;
	}
	mi->id.ram_size = snap_get_u64(&s);
	mi->kind = snap_get_u32(&s);
	mi->complete = snap_get_bool(&s);
	snap_get(&s, mi->id.gen, MEMFILE_GEN_LEN);
	snap_get(&s, mi->id.digest, MEMFILE_DIGEST_LEN);
	mi->id.data_pages = snap_get_u64(&s);
	if (snap_sec_end(&s) < 0 || (mi->kind != MEMFILE_FULL && mi->kind != MEMFILE_DIFF) ||
	    !mi->id.ram_size || mi->id.ram_size % PAGE || mi->id.data_pages > mi->id.ram_size / PAGE ||
	    (mi->kind == MEMFILE_FULL && !mi->complete)) {
		snprintf(err, errlen, "snapshot memory section is malformed");
		return -EINVAL;
	}
	return 0;
}

/* --- trailer and digest -------------------------------------------------- */

int memfile_new_gen(uint8_t gen[MEMFILE_GEN_LEN])
{
	ssize_t n = getrandom(gen, MEMFILE_GEN_LEN, 0);

	return n == MEMFILE_GEN_LEN ? 0 : n < 0 ? -errno : -EIO;
}

void memfile_gen_str(const uint8_t gen[MEMFILE_GEN_LEN], char out[17])
{
	for (unsigned i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", gen[i]);
}

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

static int pread_all(int fd, uint8_t *p, size_t n, off_t off)
{
	while (n) {
		ssize_t r = pread(fd, p, n, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

int memfile_trailer_write(int fd, const struct memfile_id *id)
{
	uint8_t t[TRAILER_BODY + 4];

	memcpy(t, TRAILER_MAGIC, 8);
	stnle(t + 8, TRAILER_VERSION, 4);
	stnle(t + 12, 0, 4);
	stnle(t + 16, id->ram_size, 8);
	memcpy(t + 24, id->gen, MEMFILE_GEN_LEN);
	memcpy(t + 24 + MEMFILE_GEN_LEN, id->digest, MEMFILE_DIGEST_LEN);
	stnle(t + 24 + MEMFILE_GEN_LEN + MEMFILE_DIGEST_LEN, id->data_pages, 8);
	stnle(t + TRAILER_BODY, crc32_update(0, t, TRAILER_BODY), 4);
	if (ftruncate(fd, (off_t)(id->ram_size + MEMFILE_TRAILER_LEN)) < 0)
		return -errno;
	return pwrite_all(fd, t, sizeof(t), (off_t)id->ram_size);
}

int memfile_trailer_read(int fd, uint64_t ram_size, struct memfile_id *id, uint64_t *size_out)
{
	uint8_t t[TRAILER_BODY + 4];
	struct stat st;
	int e;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (size_out)
		*size_out = (uint64_t)st.st_size;
	if ((uint64_t)st.st_size != ram_size + MEMFILE_TRAILER_LEN)
		return -EFBIG;
	e = pread_all(fd, t, sizeof(t), (off_t)ram_size);
	if (e)
		return e;
	if (memcmp(t, TRAILER_MAGIC, 8) || ldnle(t + 8, 4) != TRAILER_VERSION ||
	    ldnle(t + TRAILER_BODY, 4) != crc32_update(0, t, TRAILER_BODY) || ldnle(t + 16, 8) != ram_size)
		return -EBADMSG;
	id->ram_size = ram_size;
	memcpy(id->gen, t + 24, MEMFILE_GEN_LEN);
	memcpy(id->digest, t + 24 + MEMFILE_GEN_LEN, MEMFILE_DIGEST_LEN);
	id->data_pages = ldnle(t + 24 + MEMFILE_GEN_LEN + MEMFILE_DIGEST_LEN, 8);
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	static const uint8_t zero[PAGE];

	return memcmp(p, zero, PAGE) == 0;
}

/*
 * SHA-256 comes from libcrypto, opened on first use rather than linked: only
 * a process that writes or checks a snapshot needs it, and linking it cost
 * every kestrel process 1.3 MiB more RSS at start (4.5 MiB → 5.8 MiB for an
 * idle --api-sock, measured). Written once under pthread_once.
 */
static struct {
	bool ok;
	__typeof__(EVP_MD_CTX_new) *ctx_new;
	__typeof__(EVP_MD_CTX_free) *ctx_free;
	__typeof__(EVP_sha256) *sha256;
	__typeof__(EVP_DigestInit_ex) *init;
	__typeof__(EVP_DigestUpdate) *update;
	__typeof__(EVP_DigestFinal_ex) *final;
} crypto;
static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;

static void memfile_crypto_load(void)
{
	void *h = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
	struct { const char *name; void **slot; } syms[] = {
		{ "EVP_MD_CTX_new", (void **)&crypto.ctx_new },
		{ "EVP_MD_CTX_free", (void **)&crypto.ctx_free },
		{ "EVP_sha256", (void **)&crypto.sha256 },
		{ "EVP_DigestInit_ex", (void **)&crypto.init },
		{ "EVP_DigestUpdate", (void **)&crypto.update },
		{ "EVP_DigestFinal_ex", (void **)&crypto.final },
	};

	if (!h) {
		log_err("snapshot", "cannot load libcrypto.so.3 for memory file digests (Debian: apt-get install "
			"libssl3): %s", dlerror());
		return;
	}
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		*syms[i].slot = dlsym(h, syms[i].name);
		if (!*syms[i].slot) {
			log_err("snapshot", "libcrypto.so.3 lacks %s", syms[i].name);
			return;
		}
	}
	/* The handle stays open for the life of the process. */
	crypto.ok = true;
}

int memfile_digest(int fd, uint64_t ram_size, uint8_t digest[MEMFILE_DIGEST_LEN], uint64_t *pages)
{
	EVP_MD_CTX *ctx;
	uint8_t *buf, le[8];
	uint64_t next = 0, n = 0;   /* the first byte not yet hashed; pages hashed */
	unsigned dlen = 0;
	int e = 0;

	pthread_once(&crypto_once, memfile_crypto_load);
	if (!crypto.ok)
		return -ELIBACC;
	ctx = crypto.ctx_new();
	buf = malloc(DIGEST_CHUNK);
	if (!ctx || !buf || !crypto.init(ctx, crypto.sha256(), NULL)) {
		e = -ENOMEM;
		goto out;
	}
	stnle(le, ram_size, 8);
	crypto.update(ctx, le, 8);
	while (next < ram_size) {
		off_t data = lseek(fd, (off_t)next, SEEK_DATA), hole;
		uint64_t a, b;

		if (data < 0) {
			if (errno == ENXIO)
				break;
			e = -errno;
			goto out;
		}
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0) {
			e = -errno;
			goto out;
		}
		/* Whole pages, each once: extents may start or end inside one. */
		a = (uint64_t)data / PAGE * PAGE;
		a = a < next ? next : a;
		b = ((uint64_t)hole + PAGE - 1) / PAGE * PAGE;
		b = b > ram_size ? ram_size : b;
		if (a >= ram_size)
			break;
		while (a < b) {
			size_t len = b - a < DIGEST_CHUNK ? (size_t)(b - a) : DIGEST_CHUNK;

			e = pread_all(fd, buf, len, (off_t)a);
			if (e)
				goto out;
			for (size_t o = 0; o < len; o += PAGE) {
				if (page_is_zero(buf + o))
					continue;
				stnle(le, (a + o) / PAGE, 8);
				crypto.update(ctx, le, 8);
				crypto.update(ctx, buf + o, PAGE);
				n++;
			}
			a += len;
		}
		next = b;
	}
	if (!crypto.final(ctx, digest, &dlen) || dlen != MEMFILE_DIGEST_LEN)
		e = -EIO;
	if (pages)
		*pages = n;
out:
	crypto.ctx_free(ctx);
	free(buf);
	return e;
}

/* --- writing RAM ---------------------------------------------------------- */

/* Write [off, off+len) of RAM, skipping zero pages (they stay holes in a fresh file). */
static int mem_write_range(int fd, const uint8_t *ram, uint64_t off, uint64_t len)
{
	uint64_t end = off + len, run = off;
	int e;

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

/* The same through a buffer, where copy_file_range cannot (another file system, old kernel). */
static int mem_copy_read(int in, int out, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(DIGEST_CHUNK);
	int e = buf ? 0 : -ENOMEM;

	while (!e && len) {
		size_t n = len < DIGEST_CHUNK ? (size_t)len : DIGEST_CHUNK;

		e = pread_all(in, buf, n, (off_t)off);
		if (!e) {
			for (size_t o = 0; o < n && !e; o += PAGE)
				if (!page_is_zero(buf + o))
					e = pwrite_all(out, buf + o, n - o < PAGE ? n - o : PAGE, (off_t)(off + o));
		}
		off += n;
		len -= n;
	}
	free(buf);
	return e;
}

static int mem_copy(int in, int out, uint64_t off, uint64_t len)
{
	int e = mem_copy_file(in, out, off, len);

	if (e == -EXDEV || e == -EINVAL || e == -ENOSYS || e == -EOPNOTSUPP)
		e = mem_copy_read(in, out, off, len);
	return e;
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
static int mem_write_restored(const struct memfile_src *s, int fd)
{
	uint64_t npages = s->ram_size / PAGE, words = (npages + 63) / 64;
	uint64_t *anon = calloc(words ? words : 1, sizeof(uint64_t));
	uint64_t *data = calloc(words ? words : 1, sizeof(uint64_t));
	int e;

	if (!anon || !data) {
		e = -ENOMEM;
		goto out;
	}
	e = mem_file_data(s->fd, s->ram_size, data);
	e = e ?: mem_anon_pages(s->ram, npages, anon);
	if (e) {
		log_info("snapshot", "cannot tell which RAM pages were written since the restore (%s): "
			 "reading all of RAM", strerror(-e));
		e = mem_write_range(fd, s->ram, 0, s->ram_size);
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
			e = mem_copy_file(s->fd, fd, p * PAGE, (q - p) * PAGE);
			if (e == -EXDEV || e == -EINVAL || e == -ENOSYS || e == -EOPNOTSUPP || e == -EIO)
				e = mem_write_range(fd, s->ram, p * PAGE, (q - p) * PAGE);
		} else {
			e = mem_write_range(fd, s->ram, p * PAGE, (q - p) * PAGE);
		}
		p = q;
	}
out:
	free(anon);
	free(data);
	return e;
}

int memfile_write_full(const struct memfile_src *s, int fd)
{
	off_t data, hole;
	int e;

	if (s->restored)
		return mem_write_restored(s, fd);
	/* A memfd: only its allocated extents were ever touched. */
	for (data = 0; (uint64_t)data < s->ram_size; data = hole) {
		data = lseek(s->fd, data, SEEK_DATA);
		if (data < 0)
			return errno == ENXIO ? 0 : mem_write_range(fd, s->ram, 0, s->ram_size);
		hole = lseek(s->fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > s->ram_size)
			hole = (off_t)s->ram_size;
		e = pwrite_all(fd, s->ram + data, (size_t)(hole - data), data);
		if (e)
			return e;
	}
	return 0;
}

int memfile_write_pages(const struct memfile_src *s, int fd, const uint64_t *bm, uint64_t *pages)
{
	uint64_t npages = s->ram_size / PAGE;
	int e;

	*pages = 0;
	for (uint64_t p = 0; p < npages;) {
		uint64_t q;

		if (!bm_test(bm, p)) {
			p++;
			continue;
		}
		for (q = p; q < npages && bm_test(bm, q); q++)
			;
		e = pwrite_all(fd, s->ram + p * PAGE, (q - p) * PAGE, (off_t)(p * PAGE));
		if (e)
			return e;
		*pages += q - p;
		p = q;
	}
	return 0;
}

int memfile_copy_data(int in, int out, uint64_t size)
{
	off_t data, hole;
	int e;

	for (data = 0; (uint64_t)data < size; data = hole) {
		data = lseek(in, data, SEEK_DATA);
		if (data < 0)
			return errno == ENXIO ? 0 : -errno;
		if ((uint64_t)data >= size)
			return 0;
		hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > size)
			hole = (off_t)size;
		e = mem_copy(in, out, (uint64_t)data, (uint64_t)(hole - data));
		if (e)
			return e;
	}
	return 0;
}

/* --- paths and the commit ------------------------------------------------ */

/*
 * The directory entry a path names, as rename() sees it: the real path of its
 * directory plus its last component (the file itself need not exist yet).
 */
static int memfile_canon(const char *path, char *out, size_t outlen, char *dir, size_t dirlen)
{
	char d[PATH_MAX], real[PATH_MAX];
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;

	if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
		return -EISDIR;
	if (!slash)
		snprintf(d, sizeof(d), ".");
	else if (slash == path)
		snprintf(d, sizeof(d), "/");
	else if ((size_t)(slash - path) >= sizeof(d))
		return -ENAMETOOLONG;
	else
		snprintf(d, sizeof(d), "%.*s", (int)(slash - path), path);
	if (!realpath(d, real))
		return -errno;
	if ((size_t)snprintf(out, outlen, "%s/%s", strcmp(real, "/") ? real : "", base) >= outlen ||
	    (size_t)snprintf(dir, dirlen, "%s", real) >= dirlen)
		return -ENAMETOOLONG;
	return 0;
}

int memfile_paths_init(struct memfile_paths *p, const char *state, const char *mem, char *err, size_t errlen)
{
	struct stat a, b;
	int e;

	e = memfile_canon(state, p->state, sizeof(p->state), p->state_dir, sizeof(p->state_dir));
	if (e) {
		snprintf(err, errlen, "snapshot %s: %s", state, strerror(-e));
		return e;
	}
	e = memfile_canon(mem, p->mem, sizeof(p->mem), p->mem_dir, sizeof(p->mem_dir));
	if (e) {
		snprintf(err, errlen, "memory file %s: %s", mem, strerror(-e));
		return e;
	}
	snprintf(p->state_tmp, sizeof(p->state_tmp), "%s.tmp", p->state);
	snprintf(p->mem_tmp, sizeof(p->mem_tmp), "%s.tmp", p->mem);
	if (!strcmp(p->state, p->mem) ||
	    (!stat(p->state, &a) && !stat(p->mem, &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino)) {
		snprintf(err, errlen, "snapshot_path %s and mem_file_path %s are the same file", state, mem);
		return -EINVAL;
	}
	if (!strcmp(p->state_tmp, p->mem) || !strcmp(p->mem_tmp, p->state)) {
		snprintf(err, errlen, "snapshot_path %s and mem_file_path %s: one is the other's temporary file "
			 "(NAME.tmp)", state, mem);
		return -EINVAL;
	}
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), e = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0 && errno != EINVAL)
		e = -errno;
	close(fd);
	return e;
}

static bool gen_eq(const uint8_t *a, const uint8_t *b)
{
	return memcmp(a, b, MEMFILE_GEN_LEN) == 0;
}

/* The identity of the memory file at `path`: 0, -ENOENT, -EFBIG (size), -EBADMSG (no trailer). */
static int memfile_id_of(const char *path, uint64_t ram_size, struct memfile_id *id, uint64_t *size)
{
	char why[16];
	int fd = file_open(path, O_RDONLY, 0, FILE_REG, "memory file", NULL, why, sizeof(why)), e;

	if (fd == -ENOENT)
		return fd;
	if (fd < 0)
		return -EISDIR;
	e = memfile_trailer_read(fd, ram_size, id, size);
	close(fd);
	return e;
}

/*
 * Is `state` committed with its memory still in `mem_tmp`? 1 yes, 0 no. That
 * is: the state file reads, and MEM.tmp (not MEM) carries its generation.
 */
static int memfile_interrupted(const char *state, const char *mem, const char *mem_tmp)
{
	struct snap_reader r;
	struct memfile_info mi;
	struct memfile_id id;
	char why[256];
	int yes = 0;

	if (access(mem_tmp, F_OK) < 0 || snap_reader_open(&r, state, why, sizeof(why)) < 0)
		return 0;
	if (!memfile_section_load(&r, &mi, why, sizeof(why)) &&
	    !memfile_id_of(mem_tmp, mi.id.ram_size, &id, NULL) && gen_eq(id.gen, mi.id.gen))
		yes = !(memfile_id_of(mem, mi.id.ram_size, &id, NULL) == 0 && gen_eq(id.gen, mi.id.gen));
	snap_reader_free(&r);
	return yes;
}

/* Finish an interrupted commit: MEM.tmp → MEM. */
static int memfile_roll_forward(const char *mem, const char *mem_tmp, const char *mem_dir, char *err,
				size_t errlen)
{
	int e = 0;

	if (rename(mem_tmp, mem) < 0)
		e = -errno;
	e = e ?: fsync_dir(mem_dir);
	if (e) {
		snprintf(err, errlen, "memory file %s: finishing an interrupted snapshot (renaming %s): %s", mem,
			 mem_tmp, strerror(-e));
		return e;
	}
	log_info("snapshot", "finished an interrupted snapshot: %s renamed to %s", mem_tmp, mem);
	return 0;
}

int memfile_prepare(const struct memfile_paths *p, char *err, size_t errlen)
{
	int e;

	if (memfile_interrupted(p->state, p->mem, p->mem_tmp)) {
		e = memfile_roll_forward(p->mem, p->mem_tmp, p->mem_dir, err, errlen);
		if (e)
			return e;
	}
	/* Anything else called NAME.tmp is what an interrupted create left behind. */
	if (unlink(p->mem_tmp) == 0)
		log_info("snapshot", "removed a stale %s", p->mem_tmp);
	if (unlink(p->state_tmp) == 0)
		log_info("snapshot", "removed a stale %s", p->state_tmp);
	return 0;
}

int memfile_commit(const struct memfile_paths *p, bool *committed, char *err, size_t errlen)
{
	int e;

	*committed = false;
	/* MEM.tmp's entry must be durable before the state file that needs it is. */
	e = fsync_dir(p->mem_dir);
	if (e) {
		snprintf(err, errlen, "memory file %s: fsync of its directory: %s", p->mem, strerror(-e));
		return e;
	}
	if (rename(p->state_tmp, p->state) < 0) {
		e = -errno;
		snprintf(err, errlen, "snapshot %s: %s", p->state, strerror(-e));
		return e;
	}
	/* Committed: from here on, a crash leaves the new pair (a load or create finishes it). */
	*committed = true;
	e = fsync_dir(p->state_dir);
	memfile_fault("snapshot-after-state-rename");
	if (!e && rename(p->mem_tmp, p->mem) < 0)
		e = -errno;
	e = e ?: fsync_dir(p->mem_dir);
	if (e)
		snprintf(err, errlen, "snapshot %s is written, but its memory file is still %s (%s): loading the "
			 "snapshot finishes it", p->state, p->mem_tmp, strerror(-e));
	return e;
}

void memfile_abort(const struct memfile_paths *p)
{
	unlink(p->mem_tmp);
	unlink(p->state_tmp);
}

/* --- loading and verifying ------------------------------------------------ */

static void memfile_digest_str(const uint8_t d[MEMFILE_DIGEST_LEN], char out[2 * MEMFILE_DIGEST_LEN + 1])
{
	for (unsigned i = 0; i < MEMFILE_DIGEST_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int memfile_check_fd(int fd, const char *mem, const char *state, const struct memfile_info *mi,
			    unsigned flags, char *err, size_t errlen)
{
	struct memfile_id id;
	uint64_t size = 0;
	uint8_t d[MEMFILE_DIGEST_LEN];
	char g1[17], g2[17];
	int e = memfile_trailer_read(fd, mi->id.ram_size, &id, &size);

	if (e == -EFBIG) {
		snprintf(err, errlen, "memory file %s is %llu bytes; the snapshot's guest has %llu bytes of RAM "
			 "(a memory file of %llu bytes)", mem, (unsigned long long)size,
			 (unsigned long long)mi->id.ram_size, (unsigned long long)(mi->id.ram_size + MEMFILE_TRAILER_LEN));
		return -EINVAL;
	}
	if (e == -EBADMSG) {
		snprintf(err, errlen, "memory file %s has no valid kestrel trailer (not a kestrel memory file, "
			 "or damaged)", mem);
		return -EINVAL;
	}
	if (e) {
		snprintf(err, errlen, "memory file %s: %s", mem, strerror(-e));
		return e;
	}
	if (!gen_eq(id.gen, mi->id.gen)) {
		memfile_gen_str(id.gen, g1);
		memfile_gen_str(mi->id.gen, g2);
		snprintf(err, errlen, "memory file %s belongs to another snapshot (generation %s; %s was written "
			 "with %s)", mem, g1, state, g2);
		return -ESTALE;
	}
	if (memcmp(id.digest, mi->id.digest, MEMFILE_DIGEST_LEN)) {
		snprintf(err, errlen, "memory file %s: its trailer's digest differs from %s's", mem, state);
		return -EINVAL;
	}
	if (!(flags & MEMFILE_CHECK_DIGEST))
		return 0;
	e = memfile_digest(fd, mi->id.ram_size, d, NULL);
	if (e) {
		snprintf(err, errlen, "memory file %s: reading it: %s", mem, strerror(-e));
		return e;
	}
	if (memcmp(d, mi->id.digest, MEMFILE_DIGEST_LEN)) {
		snprintf(err, errlen, "memory file %s does not hold what %s was written with: its content digest "
			 "differs (the file was changed after the snapshot)", mem, state);
		return -EINVAL;
	}
	return 0;
}

static int memfile_check_path(const char *path, const char *shown, const char *state,
			      const struct memfile_info *mi, unsigned flags, char *err, size_t errlen)
{
	int fd = file_open(path, O_RDONLY, 0, FILE_REG, "memory file", NULL, err, errlen), e;

	if (fd < 0)
		return fd;
	e = memfile_check_fd(fd, shown, state, mi, flags, err, errlen);
	close(fd);
	return e;
}

int memfile_check(const struct snap_reader *r, const char *state, const char *mem, unsigned flags,
		  struct memfile_info *mi, char *err, size_t errlen)
{
	char tmp[PATH_MAX + 4], why[512];
	int e;

	e = memfile_section_load(r, mi, err, errlen);
	if (e)
		return e;
	e = memfile_check_path(mem, mem, state, mi, flags & ~MEMFILE_CHECK_DIGEST, err, errlen);
	if (e && (size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", mem) < sizeof(tmp) &&
	    !memfile_check_path(tmp, tmp, state, mi, 0, why, sizeof(why))) {
		/* A crash between the commit's two renames: the state file's memory is MEM.tmp. */
		char dir[PATH_MAX], canon[PATH_MAX];

		if (!(flags & MEMFILE_CHECK_RECOVER)) {
			snprintf(err, errlen, "memory file %s is not %s's: a snapshot was interrupted after its state "
				 "file was written, and its memory file is still %s (loading it finishes the rename)",
				 mem, state, tmp);
			return -ESTALE;
		}
		e = memfile_canon(mem, canon, sizeof(canon), dir, sizeof(dir));
		if (e) {
			snprintf(err, errlen, "memory file %s: %s", mem, strerror(-e));
			return e;
		}
		e = memfile_roll_forward(mem, tmp, dir, err, errlen);
		if (e)
			return e;
		e = memfile_check_path(mem, mem, state, mi, flags & ~MEMFILE_CHECK_DIGEST, err, errlen);
	}
	if (e)
		return e;
	if (!mi->complete) {
		snprintf(err, errlen, "%s is a Diff snapshot written onto a new memory file: %s holds only the pages "
			 "changed since the previous snapshot and cannot be loaded", state, mem);
		return -EINVAL;
	}
	if (flags & MEMFILE_CHECK_DIGEST)
		e = memfile_check_path(mem, mem, state, mi, flags, err, errlen);
	return e;
}

int memfile_verify(const char *state, const char *mem, char *msg, size_t msglen)
{
	struct snap_reader r;
	struct memfile_info mi;
	char g[17], d[2 * MEMFILE_DIGEST_LEN + 1];
	int e;

	e = snap_reader_open(&r, state, msg, msglen);
	if (e)
		return e;
	e = memfile_check(&r, state, mem, MEMFILE_CHECK_DIGEST, &mi, msg, msglen);
	snap_reader_free(&r);
	if (e)
		return e;
	memfile_gen_str(mi.id.gen, g);
	memfile_digest_str(mi.id.digest, d);
	snprintf(msg, msglen, "%s and %s match: %s snapshot, generation %s, %llu MiB of RAM, %llu non-zero pages, "
		 "sha256 %s", state, mem, mi.kind == MEMFILE_DIFF ? "Diff" : "Full", g,
		 (unsigned long long)(mi.id.ram_size >> 20), (unsigned long long)mi.id.data_pages, d);
	return 0;
}

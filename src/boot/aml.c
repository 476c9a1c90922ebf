/* AML byte builder; encodings from the ACPI specification, chapter 20 (AML). */
#include "boot/aml.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define AML_MAX_SIZE (1u << 24)   /* far beyond any DSDT we build */

void aml_init(struct aml *a)
{
	memset(a, 0, sizeof(*a));
}

void aml_free(struct aml *a)
{
	free(a->buf);
	memset(a, 0, sizeof(*a));
}

static void aml_fail(struct aml *a, int err)
{
	if (!a->err)
		a->err = err;
}

static bool aml_reserve(struct aml *a, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (a->err)
		return false;
	if (n > AML_MAX_SIZE - a->len) {
		aml_fail(a, -E2BIG);
		return false;
	}
	if (a->len + n <= a->cap)
		return true;
	cap = a->cap ? a->cap : 256;
	while (cap < a->len + n)
		cap *= 2;
	p = realloc(a->buf, cap);
	if (!p) {
		aml_fail(a, -ENOMEM);
		return false;
	}
	a->buf = p;
	a->cap = cap;
	return true;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (!aml_reserve(a, n))
		return;
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

void aml_u16(struct aml *a, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	aml_bytes(a, b, sizeof(b));
}

void aml_u32(struct aml *a, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	aml_bytes(a, b, sizeof(b));
}

static void aml_u64(struct aml *a, uint64_t v)
{
	aml_u32(a, (uint32_t)v);
	aml_u32(a, (uint32_t)(v >> 32));
}

/* ---- names --------------------------------------------------------------- */

static bool lead_char(char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

static bool name_char(char c)
{
	return lead_char(c) || (c >= '0' && c <= '9');
}

/* One NameSeg from s[0..n): 1-4 characters, '_'-padded. */
static bool aml_nameseg(struct aml *a, const char *s, size_t n)
{
	char seg[4] = { '_', '_', '_', '_' };

	if (n == 0 || n > 4 || !lead_char(s[0]))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!name_char(s[i]))
			return false;
		seg[i] = s[i];
	}
	aml_bytes(a, seg, 4);
	return true;
}

void aml_namestring(struct aml *a, const char *path)
{
	const char *p = path, *dot;
	unsigned nsegs = 1;

	if (!path) {
		aml_fail(a, -EINVAL);
		return;
	}
	if (*p == '\\') {
		aml_byte(a, AML_ROOT_CHAR);
		p++;
	} else {
		while (*p == '^') {
			aml_byte(a, AML_PARENT_CHAR);
			p++;
		}
	}
	if (*p == '\0') {
		aml_byte(a, 0x00);   /* NullName */
		return;
	}
	for (const char *q = p; *q; q++)
		nsegs += *q == '.';
	if (nsegs > 255) {
		aml_fail(a, -EINVAL);
		return;
	}
	if (nsegs == 2) {
		aml_byte(a, AML_DUAL_NAME_PREFIX);
	} else if (nsegs > 2) {
		aml_byte(a, AML_MULTI_NAME_PREFIX);
		aml_byte(a, (uint8_t)nsegs);
	}
	for (;;) {
		dot = strchr(p, '.');
		if (!aml_nameseg(a, p, dot ? (size_t)(dot - p) : strlen(p))) {
			aml_fail(a, -EINVAL);
			return;
		}
		if (!dot)
			break;
		p = dot + 1;
	}
}

/* ---- data ---------------------------------------------------------------- */

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		aml_byte(a, AML_ZERO_OP);
	} else if (v == 1) {
		aml_byte(a, AML_ONE_OP);
	} else if (v <= 0xff) {
		aml_byte(a, AML_BYTE_PREFIX);
		aml_byte(a, (uint8_t)v);
	} else if (v <= 0xffff) {
		aml_byte(a, AML_WORD_PREFIX);
		aml_u16(a, (uint16_t)v);
	} else if (v <= 0xffffffffu) {
		aml_byte(a, AML_DWORD_PREFIX);
		aml_u32(a, (uint32_t)v);
	} else {
		aml_byte(a, AML_QWORD_PREFIX);
		aml_u64(a, v);
	}
}

void aml_string(struct aml *a, const char *s)
{
	aml_byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, strlen(s) + 1);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Compressed EISA id: three letters of 5 bits each ('A' = 1) and four hex
 * digits, stored most significant byte first.
 */
void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = 0;

	if (!id || strlen(id) != 7) {
		aml_fail(a, -EINVAL);
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			aml_fail(a, -EINVAL);
			return;
		}
		v |= (uint32_t)(id[i] - 0x40) << (26 - 5 * i);
	}
	for (int i = 3; i < 7; i++) {
		int h = hexval(id[i]);

		if (h < 0) {
			aml_fail(a, -EINVAL);
			return;
		}
		v |= (uint32_t)h << (4 * (6 - i));
	}
	aml_byte(a, AML_DWORD_PREFIX);
	aml_byte(a, (uint8_t)(v >> 24));
	aml_byte(a, (uint8_t)(v >> 16));
	aml_byte(a, (uint8_t)(v >> 8));
	aml_byte(a, (uint8_t)v);
}

void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME_OP);
	aml_namestring(a, path);
}

void aml_return(struct aml *a)
{
	aml_byte(a, AML_RETURN_OP);
}

/* ---- nested objects and PkgLength ----------------------------------------- */

/*
 * PkgLength counts itself: one byte holds up to 63 in bits 0-5; longer
 * forms put the count of extra bytes (1-3) in bits 6-7, the low nibble in
 * bits 0-3 and the rest in the following bytes.
 */
unsigned aml_pkglen_size(size_t len)
{
	static const size_t max[] = { 0x3f, 0xfff, 0xfffff, 0xfffffff };

	for (unsigned n = 1; n <= 4; n++) {
		if (len + n <= max[n - 1])
			return n;
	}
	return 0;
}

void aml_close(struct aml *a, size_t mark)
{
	uint8_t enc[4];
	size_t body, total;
	unsigned n;

	if (a->err)
		return;
	if (mark > a->len) {
		aml_fail(a, -EINVAL);
		return;
	}
	body = a->len - mark;
	n = aml_pkglen_size(body);
	if (n == 0) {
		aml_fail(a, -E2BIG);
		return;
	}
	total = body + n;
	if (n == 1) {
		enc[0] = (uint8_t)total;
	} else {
		enc[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
		for (unsigned i = 1; i < n; i++)
			enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	if (!aml_reserve(a, n))
		return;
	memmove(a->buf + mark + n, a->buf + mark, body);
	memcpy(a->buf + mark, enc, n);
	a->len += n;
}

static size_t aml_open_named(struct aml *a, const char *path)
{
	size_t mark = a->len;

	aml_namestring(a, path);
	return mark;
}

size_t aml_scope(struct aml *a, const char *path)
{
	aml_byte(a, AML_SCOPE_OP);
	return aml_open_named(a, path);
}

size_t aml_device(struct aml *a, const char *path)
{
	aml_byte(a, AML_EXT_OP_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	return aml_open_named(a, path);
}

size_t aml_method(struct aml *a, const char *path, unsigned nargs, int serialized)
{
	size_t mark;

	if (nargs > 7)
		aml_fail(a, -EINVAL);
	aml_byte(a, AML_METHOD_OP);
	mark = aml_open_named(a, path);
	aml_byte(a, (uint8_t)((nargs & 7) | (serialized ? 0x08 : 0)));
	return mark;
}

size_t aml_package(struct aml *a, unsigned nelems)
{
	size_t mark;

	if (nelems > 255)
		aml_fail(a, -EINVAL);
	aml_byte(a, AML_PACKAGE_OP);
	mark = a->len;
	aml_byte(a, (uint8_t)nelems);
	return mark;
}

void aml_buffer(struct aml *a, const uint8_t *bytes, size_t n)
{
	size_t mark;

	aml_byte(a, AML_BUFFER_OP);
	mark = a->len;
	aml_integer(a, n);
	aml_bytes(a, bytes, n);
	aml_close(a, mark);
}

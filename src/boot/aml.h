/*
 * A tiny AML (ACPI Machine Language) byte builder for the DSDT: name
 * strings, integers, strings, packages, buffers, Scope/Device/Method and
 * the PkgLength encoding. Nested objects are opened, filled and closed; the
 * PkgLength is inserted on close, when the length is known.
 *
 * Errors are sticky: the first failure (allocation, bad name, oversize
 * object, unbalanced close) is kept in `err` and later calls do nothing.
 */
#ifndef KESTREL_AML_H
#define KESTREL_AML_H

#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *buf;
	size_t len, cap;
	int err;          /* 0 or the first -errno */
};

void aml_init(struct aml *a);
void aml_free(struct aml *a);

void aml_byte(struct aml *a, uint8_t b);
void aml_bytes(struct aml *a, const void *p, size_t n);
void aml_u16(struct aml *a, uint16_t v);   /* little-endian raw data */
void aml_u32(struct aml *a, uint32_t v);

/* NameString: "\\_SB_.PCI0", "_HID", "^FOO"; segments shorter than 4 are '_'-padded. */
void aml_namestring(struct aml *a, const char *path);
/* Integer with the shortest encoding: Zero/One ops, Byte/Word/DWord/QWord prefixes. */
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* EISAID("PNP0A03") as the 32-bit compressed id (DWordPrefix). */
void aml_eisaid(struct aml *a, const char *id);
/* Name(path, <next object>) */
void aml_name(struct aml *a, const char *path);
void aml_return(struct aml *a);

/* Open a nested object; returns a mark to pass to aml_close(). */
size_t aml_scope(struct aml *a, const char *path);
size_t aml_device(struct aml *a, const char *path);
size_t aml_method(struct aml *a, const char *path, unsigned nargs, int serialized);
size_t aml_package(struct aml *a, unsigned nelems);
void aml_close(struct aml *a, size_t mark);

/* Buffer(n) { bytes } as one object. */
void aml_buffer(struct aml *a, const uint8_t *bytes, size_t n);

/* Bytes the PkgLength encoding of a `len`-byte body takes (0: too long). */
unsigned aml_pkglen_size(size_t len);

#define AML_ZERO_OP      0x00
#define AML_ONE_OP       0x01
#define AML_NAME_OP      0x08
#define AML_BYTE_PREFIX  0x0a
#define AML_WORD_PREFIX  0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX 0x0e
#define AML_SCOPE_OP     0x10
#define AML_BUFFER_OP    0x11
#define AML_PACKAGE_OP   0x12
#define AML_METHOD_OP    0x14
#define AML_DUAL_NAME_PREFIX  0x2e
#define AML_MULTI_NAME_PREFIX 0x2f
#define AML_EXT_OP_PREFIX 0x5b
#define AML_DEVICE_OP    0x82   /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR    0x5c
#define AML_PARENT_CHAR  0x5e
#define AML_RETURN_OP    0xa4

#endif

/*
 * Loads and stores of fixed-endian integers at any alignment: guest
 * descriptors and registers (little-endian) and packet headers (big-endian,
 * network order) are byte arrays, never cast to wider types.
 */
#ifndef KESTREL_BYTES_H
#define KESTREL_BYTES_H

#include <stdint.h>

static inline uint16_t ld16le(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t ld32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t ld64le(const uint8_t *p)
{
	return (uint64_t)ld32le(p) | (uint64_t)ld32le(p + 4) << 32;
}

static inline void st16le(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void st32le(uint8_t *p, uint32_t v)
{
	st16le(p, (uint16_t)v);
	st16le(p + 2, (uint16_t)(v >> 16));
}

static inline void st64le(uint8_t *p, uint64_t v)
{
	st32le(p, (uint32_t)v);
	st32le(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t ld16be(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t ld32be(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void st16be(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void st32be(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Little-endian of a width chosen at run time (n bytes, 1..8): file formats' fields. */
static inline void stnle(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t ldnle(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

#endif

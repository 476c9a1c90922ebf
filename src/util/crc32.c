#include "util/crc32.h"

#include <pthread.h>

static uint32_t crc32_table[8][256];
static pthread_once_t crc32_once = PTHREAD_ONCE_INIT;

/* Slicing-by-8 tables: snapshots run multi-megabyte sections through this. */
static void crc32_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc32_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc32_table[t][i] = (crc32_table[t - 1][i] >> 8) ^
					    crc32_table[0][crc32_table[t - 1][i] & 0xff];
}

uint32_t crc32_update(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;

	pthread_once(&crc32_once, crc32_init);
	while (len >= 8) {
		uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
				   (uint32_t)p[3] << 24);
		uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
			      (uint32_t)p[7] << 24;

		c = crc32_table[7][lo & 0xff] ^ crc32_table[6][(lo >> 8) & 0xff] ^
		    crc32_table[5][(lo >> 16) & 0xff] ^ crc32_table[4][lo >> 24] ^
		    crc32_table[3][hi & 0xff] ^ crc32_table[2][(hi >> 8) & 0xff] ^
		    crc32_table[1][(hi >> 16) & 0xff] ^ crc32_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = crc32_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

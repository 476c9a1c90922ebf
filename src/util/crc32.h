/* CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): Ethernet FCS and snapshot sections. */
#ifndef KESTREL_CRC32_H
#define KESTREL_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc32_update(0, ...); the result is final (already inverted). */
uint32_t crc32_update(uint32_t crc, const void *buf, size_t len);

#endif

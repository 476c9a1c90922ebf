/* The Internet checksum (RFC 1071): IPv4 header, TCP and UDP checksums. */
#ifndef KESTREL_CSUM_H
#define KESTREL_CSUM_H

#include <stddef.h>
#include <stdint.h>

/*
 * Add p[0, len) to a running one's-complement sum as big-endian 16-bit
 * words, where p[0] sits at byte offset `pos` of the checksummed range (odd:
 * it is the low byte of a word), so a range can be summed in pieces.
 */
uint64_t csum_add(uint64_t sum, const uint8_t *p, size_t len, size_t pos);
/* Fold the carries: the 16-bit one's-complement sum (complement it to get the checksum). */
uint16_t csum_fold(uint64_t sum);

#endif

/*
 * Test-only entry points of the block backend: unit tests and fuzz
 * harnesses include this; production code never does.
 */
#ifndef KESTREL_BLOCK_TEST_H
#define KESTREL_BLOCK_TEST_H

#include "backends/block.h"

/*
 * Fault injection, for tests and fuzzers only. fail_count operations
 * complete with -fail_errno without touching the image (through the normal
 * completion path of the engine); max_xfer > 0 caps every read/write
 * syscall at that many bytes, so requests complete in several short
 * transfers; no_zero_range makes FALLOC_FL_ZERO_RANGE look unsupported.
 */
struct block_fault {
	int fail_errno;
	unsigned fail_count;
	uint64_t max_xfer;
	bool no_zero_range;
};
void block_set_fault(struct block_backend *b, const struct block_fault *f);

#endif

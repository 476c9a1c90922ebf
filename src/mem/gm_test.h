/*
 * Test-only entry points of mem/gm: unit tests and fuzz harnesses include
 * this; production code never does.
 */
#ifndef KESTREL_GM_TEST_H
#define KESTREL_GM_TEST_H

#include "mem/gm.h"

/* Describe caller-owned memory (a plain buffer) as one RAM region at `gpa`. */
void gm_init_fake(struct guest_mem *gm, uint64_t gpa, void *host, uint64_t size);

#endif

/*
 * Fuzz the snapshot state-file reader: the input is a (possibly damaged)
 * state file. Whatever it holds, opening it must either fail with a message
 * or yield sections whose bounds lie inside the file; reading every section
 * field by field (including strings) must stay inside its section. The
 * memory section's parser (snapshot/memfile.c) either refuses it with one line
 * or yields values the memory-file checks can rely on.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "snapshot/memfile.h"
#include "snapshot/snap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct snap_reader r;
	char err[256];

	if (snap_reader_open_mem(&r, data, size, err, sizeof(err)) < 0) {
		if (!err[0] || memchr(err, '\n', strlen(err)))
			__builtin_trap();
		return 0;
	}
	for (unsigned i = 0; i < r.nsections; i++) {
		struct snap_sec s;
		char str[64];

		if (r.sec[i].off + r.sec[i].len > r.len)
			__builtin_trap();
		if (snap_find(&r, r.sec[i].name, &s) < 0)
			__builtin_trap();
		/* Alternate typed reads and strings until the section runs out. */
		for (unsigned k = 0; !s.err && k < 64; k++) {
			switch (k % 4) {
			case 0: (void)snap_get_u64(&s); break;
			case 1: (void)snap_get_str(&s, str, sizeof(str), NULL); break;
			case 2: (void)snap_get_bool(&s); break;
			default: (void)snap_get_u16(&s); break;
			}
			if (s.off > s.len)
				__builtin_trap();
		}
		(void)snap_sec_end(&s);
	}
	struct memfile_info mi;

	err[0] = '\0';
	if (memfile_section_load(&r, &mi, err, sizeof(err)) < 0) {
		if (!err[0] || memchr(err, '\n', strlen(err)))
			__builtin_trap();
	} else if (!mi.id.ram_size || mi.id.ram_size % MEMFILE_PAGE || mi.id.data_pages > mi.id.ram_size / MEMFILE_PAGE ||
		   (mi.kind != MEMFILE_FULL && mi.kind != MEMFILE_DIFF) || (mi.kind == MEMFILE_FULL && !mi.complete)) {
		__builtin_trap();
	}
	snap_reader_free(&r);
	return 0;
}

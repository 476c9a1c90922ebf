/*
 * Opening host files named by the user or the API without ever blocking the
 * VMM. open() on a FIFO blocks until the other end opens it, and the main
 * thread takes SIGTERM through a signalfd on its loop: a blocked open() there
 * would hang the VMM for good. So every path is opened O_NONBLOCK, its type is
 * checked on the open descriptor (no check-then-use race), and O_NONBLOCK is
 * cleared again only for regular files and block devices.
 */
#ifndef KESTREL_FILE_H
#define KESTREL_FILE_H

#include "util/compiler.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* The kinds of file a caller accepts (bit mask). */
enum {
	FILE_REG  = 1u << 0,
	FILE_BLK  = 1u << 1,
	FILE_FIFO = 1u << 2,   /* kept non-blocking; a write-only FIFO opens without a reader */
	FILE_CHR  = 1u << 3,   /* kept non-blocking */
};

/*
 * Open `path` with `flags` (O_RDONLY, O_WRONLY | O_CREAT ..., O_NOFOLLOW where
 * a symlink makes no sense); O_NONBLOCK and O_CLOEXEC are added. Returns the
 * fd, or -errno with a one-line reason in err: "WHAT PATH: is a FIFO (named
 * pipe), not a regular file". st (may be NULL) gets the descriptor's fstat.
 */
KESTREL_MUST_CHECK int file_open(const char *path, int flags, mode_t mode, unsigned kinds, const char *what,
	      struct stat *st, char *err, size_t errlen);

/* "regular file", "directory", "FIFO (named pipe)", ... for messages. */
const char *file_kind_name(mode_t mode);

/*
 * Write to an output opened by file_open without blocking when it is a FIFO
 * or a terminal: returns the bytes written (short when the reader is slow;
 * the caller counts the rest as dropped). With `whole`, a record that does
 * not fit in the pipe's free space is not started at all, so a reader never
 * sees half a line.
 */
size_t file_write_nb(int fd, const void *buf, size_t len, bool whole);

#endif

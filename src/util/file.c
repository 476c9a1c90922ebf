#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

const char *file_kind_name(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:  return "regular file";
	case S_IFDIR:  return "directory";
	case S_IFIFO:  return "FIFO (named pipe)";
	case S_IFCHR:  return "character device";
	case S_IFBLK:  return "block device";
	case S_IFSOCK: return "socket";
	case S_IFLNK:  return "symbolic link";
	default:       return "special file";
	}
}

static bool file_kind_ok(mode_t mode, unsigned kinds)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return kinds & FILE_REG;
	case S_IFBLK: return kinds & FILE_BLK;
	case S_IFIFO: return kinds & FILE_FIFO;
	case S_IFCHR: return kinds & FILE_CHR;
	default:      return false;
	}
}

/* "a regular file or block device": what the caller would have accepted. */
static void file_kinds_str(unsigned kinds, char *buf, size_t len)
{
	static const char *const names[] = { "regular file", "block device", "FIFO", "character device" };
	size_t n = 0;
	unsigned count = 0, total = (unsigned)__builtin_popcount(kinds & 15u);

	buf[0] = '\0';
	for (unsigned i = 0; i < 4 && n < len; i++) {
		if (!(kinds & (1u << i)))
			continue;
		count++;
		n += (size_t)snprintf(buf + n, len - n, "%s%s%s", count == 1 ? "a " : "",
				      count == 1 ? "" : count == total ? " or " : ", ", names[i]);
	}
}

int file_open(const char *path, int flags, mode_t mode, unsigned kinds, const char *what,
	      struct stat *st, char *err, size_t errlen)
{
	struct stat sb;
	char want[96];
	int fd, e;

	if (!st)
		st = &sb;
	if (!err)
		errlen = 0;   /* snprintf(NULL, 0, ...) only measures */
	fd = open(path, flags | O_NONBLOCK | O_CLOEXEC, mode);
	/*
	 * A write-only FIFO without a reader refuses a non-blocking open (ENXIO).
	 * Opened read-write it never blocks and keeps what is written until a
	 * reader comes, as Firecracker does for its log and metrics FIFOs.
	 */
	if (fd < 0 && errno == ENXIO && (kinds & FILE_FIFO) && (flags & O_ACCMODE) == O_WRONLY)
		fd = open(path, (flags & ~(O_ACCMODE | O_CREAT | O_TRUNC)) | O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && errno == ENXIO) {
		/* A write-only FIFO without a reader (not accepted here): say what it is. */
		int pfd = open(path, O_PATH | O_CLOEXEC);

		if (pfd >= 0 && fstat(pfd, st) == 0 && !file_kind_ok(st->st_mode, kinds)) {
			file_kinds_str(kinds, want, sizeof(want));
			snprintf(err, errlen, "%s %s: is a %s, not %s", what, path, file_kind_name(st->st_mode),
				 want);
			close(pfd);
			return -EINVAL;
		}
		if (pfd >= 0)
			close(pfd);
		errno = ENXIO;
	}
	if (fd < 0) {
		e = -errno;
		if (e == -ELOOP && (flags & O_NOFOLLOW))
			snprintf(err, errlen, "%s %s: is a symbolic link, which is not accepted here", what, path);
		else
			snprintf(err, errlen, "%s %s: %s", what, path, strerror(-e));
		return e;
	}
	if (fstat(fd, st) < 0) {
		e = -errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(-e));
		goto err_close;
	}
	if (!file_kind_ok(st->st_mode, kinds)) {
		if (S_ISDIR(st->st_mode)) {
			snprintf(err, errlen, "%s %s: is a directory", what, path);
			e = -EISDIR;
		} else {
			file_kinds_str(kinds, want, sizeof(want));
			snprintf(err, errlen, "%s %s: is a %s, not %s", what, path, file_kind_name(st->st_mode),
				 want);
			e = -EINVAL;
		}
		goto err_close;
	}
	/*
	 * Hold a FIFO output read-write even when a reader was there at open: when
	 * that reader leaves, a write-only end would get EPIPE and SIGPIPE (which
	 * ends the process); read-write, the pipe just fills and writes are dropped.
	 * Reopened through /proc so that it is the same FIFO that was checked.
	 */
	if (S_ISFIFO(st->st_mode) && (flags & O_ACCMODE) == O_WRONLY) {
		char self[32];
		int rw;

		snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
		rw = open(self, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (rw >= 0) {
			close(fd);
			fd = rw;
		}
	}
	/* Files and disks do not block for long: give their readers plain blocking I/O. */
	if ((S_ISREG(st->st_mode) || S_ISBLK(st->st_mode)) &&
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		e = -errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(-e));
		goto err_close;
	}
	return fd;

err_close:
	close(fd);
	return e;
}

/* Room left in a pipe, or SIZE_MAX when fd is no pipe (or the kernel cannot say). */
static size_t file_pipe_room(int fd, size_t want)
{
	int cap = fcntl(fd, F_GETPIPE_SZ), queued = 0;

	if (cap < 0)
		return (size_t)-1;
	/* A record larger than the pipe could never fit: grow it once (best effort). */
	if ((size_t)cap < want) {
		int grown = fcntl(fd, F_SETPIPE_SZ, (int)(want < (1u << 20) ? want : (1u << 20)));

		if (grown > cap)
			cap = grown;
	}
	if (ioctl(fd, FIONREAD, &queued) < 0)
		return (size_t)-1;
	return queued >= cap ? 0 : (size_t)(cap - queued);
}

size_t file_write_nb(int fd, const void *buf, size_t len, bool whole)
{
	const char *p = buf;
	size_t done = 0;

	if (whole && len && file_pipe_room(fd, len) < len)
		return 0;
	while (done < len) {
		ssize_t n = write(fd, p + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;   /* EAGAIN: the reader is slow; EPIPE/EIO: it is gone */
		done += (size_t)n;
	}
	return done;
}

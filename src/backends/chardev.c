#include "backends/chardev.h"
#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Said once in the file when the limit cuts the guest's output off. */
static void chardev_limit_reached(struct chardev *cd)
{
	char line[128];
	int n = snprintf(line, sizeof(line),
			 "\n[kestrel: console output limit of %llu bytes reached; further output dropped]\n",
			 (unsigned long long)cd->limit);

	cd->limited = 1;
	(void)file_write_nb(cd->out_fd, line, (size_t)n, false);
}

static void chardev_fd_write(struct chardev *cd, const uint8_t *buf, size_t len)
{
	size_t room = len, n;

	if (cd->out_fd < 0)
		return;
	if (cd->limit) {
		room = cd->bytes_out >= cd->limit ? 0 :
		       cd->limit - cd->bytes_out < len ? (size_t)(cd->limit - cd->bytes_out) : len;
	}
	if (cd->nonblock) {
		/* A FIFO or terminal whose reader is slow or gone must not stop the guest. */
		n = file_write_nb(cd->out_fd, buf, room, false);
	} else {
		for (n = 0; n < room;) {
			ssize_t w = write(cd->out_fd, buf + n, room - n);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break; /* a closed pipe must not stop the guest */
			n += (size_t)w;
		}
	}
	/* Read by the metrics on the main thread while vCPUs write. */
	__atomic_fetch_add(&cd->bytes_out, (uint64_t)n, __ATOMIC_RELAXED);
	__atomic_fetch_add(&cd->bytes_dropped, (uint64_t)(len - n), __ATOMIC_RELAXED);
	if (room < len && !cd->limited)
		chardev_limit_reached(cd);
}

static const struct chardev_ops chardev_fd_ops = { .write = chardev_fd_write };

int chardev_open(struct chardev *cd, const char *spec, char *err, size_t errlen)
{
	memset(cd, 0, sizeof(*cd));
	cd->ops = &chardev_fd_ops;
	cd->out_fd = -1;
	cd->in_fd = -1;
	if (!strcmp(spec, "stdio")) {
		cd->out_fd = STDOUT_FILENO;
		cd->in_fd = STDIN_FILENO;
		return 0;
	}
	if (!strcmp(spec, "none"))
		return 0;
	if (!strncmp(spec, "file:", 5) && spec[5]) {
		struct stat st;

		/* A FIFO or terminal is written without blocking; only a file grows on disk. */
		cd->out_fd = file_open(spec + 5, O_WRONLY | O_CREAT | O_TRUNC, 0644,
				       FILE_REG | FILE_FIFO | FILE_CHR, "console file", &st, err, errlen);
		if (cd->out_fd < 0)
			return cd->out_fd;
		cd->owns_out = 1;
		cd->nonblock = !S_ISREG(st.st_mode);
		cd->limit = S_ISREG(st.st_mode) ? CHARDEV_DEFAULT_LIMIT : 0;
		return 0;
	}
	snprintf(err, errlen, "unknown console '%s' (expected stdio, file:PATH or none)", spec);
	return -EINVAL;
}

void chardev_close(struct chardev *cd)
{
	if (cd->owns_out && cd->out_fd >= 0)
		close(cd->out_fd);
	cd->out_fd = -1;
	cd->in_fd = -1;
}

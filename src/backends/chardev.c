#include "backends/chardev.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void chardev_fd_write(struct chardev *cd, const uint8_t *buf, size_t len)
{
	while (len && cd->out_fd >= 0) {
		ssize_t n = write(cd->out_fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* a closed pipe must not stop the guest */
		buf += n;
		len -= (size_t)n;
		cd->bytes_out += (uint64_t)n;
	}
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
		cd->out_fd = open(spec + 5, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (cd->out_fd < 0) {
			int e = -errno;

			snprintf(err, errlen, "console file %s: %s", spec + 5, strerror(errno));
			return e;
		}
		cd->owns_out = 1;
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

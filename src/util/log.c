#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

/* Read-mostly: written once before any thread starts. */
static enum log_level log_level = LOG_WARN;

void log_set_level(enum log_level lvl)
{
	__atomic_store_n(&log_level, lvl, __ATOMIC_RELAXED);
}

enum log_level log_get_level(void)
{
	return __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

void log_msg(enum log_level lvl, const char *tag, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	char line[1024];
	va_list ap;
	int n;

	if (lvl > __atomic_load_n(&log_level, __ATOMIC_RELAXED))
		return;
	n = snprintf(line, sizeof(line), "kestrel: %s: %s: ", names[lvl], tag);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One write per line so concurrent threads do not interleave. */
	fprintf(stderr, "%s\n", line);
}

static unsigned long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000ull;
}

bool log_ratelimit_ok(struct log_ratelimit *rl)
{
	unsigned long long now = now_ms();

	if (now - rl->window_start_ms >= rl->interval_ms) {
		if (rl->suppressed)
			log_msg(LOG_WARN, "log", "%llu similar messages suppressed", rl->suppressed);
		rl->window_start_ms = now;
		rl->printed = 0;
		rl->suppressed = 0;
	}
	if (rl->printed < rl->burst) {
		rl->printed++;
		return true;
	}
	rl->suppressed++;
	return false;
}

/* Logging: one entry point, a subsystem tag, quiet by default. */
#ifndef KESTREL_LOG_H
#define KESTREL_LOG_H

#include <stdbool.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Process-wide verbosity; set once from the command line before threads start. */
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);

void log_msg(enum log_level lvl, const char *tag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_err(tag, ...)   log_msg(LOG_ERROR, tag, __VA_ARGS__)
#define log_warn(tag, ...)  log_msg(LOG_WARN, tag, __VA_ARGS__)
#define log_info(tag, ...)  log_msg(LOG_INFO, tag, __VA_ARGS__)
#define log_debug(tag, ...) log_msg(LOG_DEBUG, tag, __VA_ARGS__)

/*
 * Rate limiting for messages a guest can trigger at will: at most `burst`
 * messages, then one per `interval_ms`. Embed one per call site/device.
 */
struct log_ratelimit {
	unsigned burst;
	unsigned interval_ms;
	unsigned printed;
	unsigned long long window_start_ms;
	unsigned long long suppressed;
};

#define LOG_RATELIMIT_INIT { .burst = 5, .interval_ms = 5000 }

bool log_ratelimit_ok(struct log_ratelimit *rl);

#define log_guest(rl, tag, ...)                                  \
	do {                                                       \
		if (log_ratelimit_ok(rl))                          \
			log_msg(LOG_WARN, tag, __VA_ARGS__);       \
	} while (0)

#endif

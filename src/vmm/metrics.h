#ifndef KESTREL_METRICS_H
#define KESTREL_METRICS_H

#include "util/compiler.h"

#include <stddef.h>
#include <stdio.h>

struct machine;

/* Open PATH and write a line every interval_s seconds from the main loop. */
KESTREL_MUST_CHECK int metrics_start(struct machine *m, const char *path, unsigned interval_s, char *err,
		size_t errlen);
/* Write the final line and close. */
void metrics_stop(struct machine *m);
/* Format one line of counters into out. */
void metrics_write(struct machine *m, FILE *out);
/* Write one line to the metrics file now (dropped and counted if a FIFO reader lags). */
void metrics_flush(struct machine *m);

#endif

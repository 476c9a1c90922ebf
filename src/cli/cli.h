#ifndef KESTREL_CLI_H
#define KESTREL_CLI_H

#include "util/compiler.h"

#include <stddef.h>
#include <stdint.h>

#include "vmm/machine.h"

/* Exit statuses: 0 guest ended normally, 1 error, 2 usage. */
#define CLI_EXIT_USAGE 2

int cli_main(int argc, char **argv);

/* "512M", "2G", "1024" (MiB), "65536K". 0 or -EINVAL/-ERANGE. */
KESTREL_MUST_CHECK int cli_parse_size(const char *s, uint64_t *out);
/* "0-3,6" into cpus (at most max); 0 or -EINVAL. */
KESTREL_MUST_CHECK int cli_parse_cpulist(const char *s, int *cpus, unsigned max, unsigned *n);
/* Parse `kestrel run` options into cfg; 0, or CLI_EXIT_USAGE with a message in err. */
KESTREL_MUST_CHECK int cli_parse_run(int argc, char **argv, struct machine_config *cfg, char *err, size_t errlen);

#endif

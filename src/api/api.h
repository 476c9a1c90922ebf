/*
 * The control API: Firecracker's HTTP/1.1 + JSON API on a Unix socket,
 * served by libmicrohttpd (loaded with dlopen when --api-sock is used).
 * Requests arrive on a thread per connection; each PUT/PATCH is handled on
 * the VMM thread through vmm_call(), so the configuration and the VM's state
 * change in one place, one request at a time. GETs are answered on their
 * connection's thread without waiting for the VMM thread (api.c says how).
 */
#ifndef KESTREL_API_API_H
#define KESTREL_API_API_H

#include "util/compiler.h"

#include <stddef.h>

#include "api/fc.h"

struct api;
struct vmm;

#define API_DEFAULT_ID "anonymous-instance"

/*
 * Listen on sock_path (a stale socket file there is replaced; any other file,
 * or a socket someone still serves on, is refused) and serve requests for v.
 * instance_id is GET /'s "id" (NULL: API_DEFAULT_ID). NULL with err on failure.
 */
KESTREL_MUST_CHECK struct api *api_new(struct vmm *v, const char *sock_path, const char *instance_id,
		char *err, size_t errlen);

/*
 * Boot the VM from a --config-file's config (on the VMM thread, before
 * vmm_run): the API takes the config over (*c is left empty), so that GET
 * /vm/config shows it and the API's rules know the VM started.
 */
KESTREL_MUST_CHECK int api_boot(struct api *a, struct fc_config *c, char *err, size_t errlen);

/* Stop serving (no request runs after it returns) and remove the socket file. */
void api_stop(struct api *a);
/* api_stop, then free everything, including the strings the VM used: call it
 * after vmm_free(). NULL is a no-op. */
void api_free(struct api *a);

/*
 * Build a machine_config from c into m and start the VM (on the VMM thread).
 * m's strings must outlive the VM. Applies the logger level. 0 / -errno + err.
 */
KESTREL_MUST_CHECK int api_vm_start(struct vmm *v, const struct fc_config *c, struct fc_machine *m, char *err,
		size_t errlen);

#endif

/* Opening a network backend by kind, for every NIC model (virtio-net, e1000). */
#include "backends/net.h"

#include <stdio.h>

int net_backend_open(struct net_backend **out, const struct net_backend_spec *spec, char *err, size_t errlen)
{
	*out = NULL;
	switch (spec->kind) {
	case NET_BACKEND_TAP:
		return net_tap_open(out, spec->ifname, err, errlen);
	case NET_BACKEND_USER:
		return net_slirp_open(out, spec->hostfwd, spec->nr_hostfwd, err, errlen);
	default:
		snprintf(err, errlen, "no network backend configured");
		return -EINVAL;
	}
}

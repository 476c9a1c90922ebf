/*
 * Fuzz the Firecracker JSON readers (src/api/fc.c): the first byte picks the
 * body (boot-source, machine-config, drive, network interface, metrics,
 * logger, serial, action, VM state, snapshot create / load, a whole config
 * file), the rest is the body. Each must accept it or refuse it with a
 * one-line message; whatever was accepted must build a machine config or
 * refuse that too, and print back as JSON.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/fc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_fc_check_err(int e, const char *err)
{
	if (e && (!err[0] || strchr(err, '\n')))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data + 1;
	struct fc_config c;
	struct fc_machine m;
	char err[512] = "";
	size_t len;
	int e = 0;

	if (size < 1)
		return 0;
	len = size - 1;
	fc_config_init(&c);
	switch (data[0] % 13) {
	case 0: e = fc_put(&c, FC_BOOT_SOURCE, NULL, body, len, err, sizeof(err)); break;
	case 1:
		e = fc_put(&c, data[0] & 0x80 ? FC_MACHINE_CONFIG_PATCH : FC_MACHINE_CONFIG, NULL, body, len, err,
			   sizeof(err));
		break;
	case 2: e = fc_put(&c, FC_DRIVE, "rootfs", body, len, err, sizeof(err)); break;
	case 3: e = fc_put(&c, FC_NET, "eth0", body, len, err, sizeof(err)); break;
	case 4: e = fc_put(&c, FC_METRICS, NULL, body, len, err, sizeof(err)); break;
	case 5: e = fc_put(&c, FC_LOGGER, NULL, body, len, err, sizeof(err)); break;
	case 6: e = fc_put(&c, FC_SERIAL, NULL, body, len, err, sizeof(err)); break;
	case 7: e = fc_put(&c, FC_ENTROPY, NULL, body, len, err, sizeof(err)); break;
	case 8: {
		enum fc_action a;

		e = fc_parse_action(body, len, &a, err, sizeof(err));
		break;
	}
	case 9: {
		bool pause;

		e = fc_parse_vm_state(body, len, &pause, err, sizeof(err));
		break;
	}
	case 10: {
		struct fc_snapshot_create s;

		e = fc_parse_snapshot_create(body, len, &s, err, sizeof(err));
		if (!e && (!s.p.state_path || !s.p.mem_path))
			__builtin_trap();
		fc_snapshot_create_exit(&s);
		break;
	}
	case 11: {
		struct fc_snapshot_load s;

		e = fc_parse_snapshot_load(body, len, &s, err, sizeof(err));
		if (!e && (!s.p.state_path || !s.p.mem_path || s.p.n_net_overrides > VMM_MAX_NET_OVERRIDES))
			__builtin_trap();
		fc_snapshot_load_exit(&s);
		break;
	}
	default: e = fc_config_load(&c, body, len, err, sizeof(err)); break;
	}
	fuzz_fc_check_err(e, err);
	if (!e) {
		char *j = fc_config_to_json(&c);

		free(j);
		err[0] = '\0';
		e = fc_machine_build(&c, &m, err, sizeof(err));
		fuzz_fc_check_err(e, err);
		if (!e) {
			if (!m.cfg.kernel || !m.cfg.cmdline || m.cfg.ndisks > MACHINE_MAX_DISKS ||
			    m.cfg.nnets > MACHINE_MAX_NETS || m.cfg.cpus < 1 || m.cfg.cpus > FC_MAX_VCPUS)
				__builtin_trap();
			fc_machine_exit(&m);
		}
	}
	fc_config_exit(&c);
	return 0;
}

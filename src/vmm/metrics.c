/*
 * --metrics PATH: one JSON object per line, in the spirit of Firecracker's
 * metrics file, written every interval and once more when the VM ends.
 * Counters are cumulative since start; a reader takes differences.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/e1000.h"
#include "machine_priv.h"
#include "metrics.h"
#include "util/file.h"

struct metrics_ctx {
	FILE *out;
	const struct machine *m;
	const char *bus;
	bool first;
};

static void metrics_range(const struct bus_range *r, void *arg)
{
	struct metrics_ctx *c = arg;

	fprintf(c->out, "%s\"%s@%#llx\":{\"bus\":\"%s\",\"reads\":%llu,\"writes\":%llu}", c->first ? "" : ",",
		r->name, (unsigned long long)r->base, c->bus,
		(unsigned long long)__atomic_load_n(&r->counters->reads, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&r->counters->writes, __ATOMIC_RELAXED));
	c->first = false;
}

void metrics_write(struct machine *m, FILE *out)
{
	struct metrics_ctx c = { .out = out, .m = m, .first = true };
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(out, "{\"utc_timestamp_ms\":%lld,\"vcpus\":[",
		(long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	for (unsigned i = 0; i < m->vm.ncpus; i++) {
		const struct vcpu_stats *s = &m->vm.vcpus[i].stats;
		bool first = true;

		fprintf(out, "%s{\"id\":%u,\"exits\":{", i ? "," : "", i);
		for (unsigned r = 0; r < KVM_EXIT_REASON_MAX; r++) {
			uint64_t n = __atomic_load_n(&s->exits[r], __ATOMIC_RELAXED);

			if (!n)
				continue;
			fprintf(out, "%s\"%s\":%llu", first ? "" : ",", kvm_exit_reason_name(r), (unsigned long long)n);
			first = false;
		}
		fprintf(out, "}}");
	}
	fprintf(out, "],\"devices\":{");
	c.bus = "pio";
	bus_for_each(&m->vm.pio, metrics_range, &c);
	c.bus = "mmio";
	bus_for_each(&m->vm.mmio, metrics_range, &c);
	fprintf(out, "},\"unmapped\":{\"pio_reads\":%llu,\"pio_writes\":%llu,\"mmio_reads\":%llu,\"mmio_writes\":%llu}",
		(unsigned long long)m->vm.pio.unmapped_reads, (unsigned long long)m->vm.pio.unmapped_writes,
		(unsigned long long)m->vm.mmio.unmapped_reads, (unsigned long long)m->vm.mmio.unmapped_writes);
	fprintf(out, ",\"virtio\":{");
	for (unsigned i = 0; i < m->nvdevs; i++) {
		const struct virtio_metrics *x = &m->vdevs[i].vdev->metrics;

		fprintf(out, "%s\"%s\":{\"type\":\"%s\",\"kicks\":%llu,\"interrupts\":%llu,\"suppressed\":%llu,"
			"\"requests\":%llu,\"rx_packets\":%llu,\"rx_bytes\":%llu,\"tx_packets\":%llu,\"tx_bytes\":%llu,"
			"\"errors\":%llu,\"throttled\":%llu}", i ? "," : "", m->vdevs[i].io.name + 3, m->vdevs[i].vdev->name,
			(unsigned long long)x->kicks, (unsigned long long)x->interrupts,
			(unsigned long long)x->suppressed, (unsigned long long)x->requests,
			(unsigned long long)x->rx_packets, (unsigned long long)x->rx_bytes,
			(unsigned long long)x->tx_packets, (unsigned long long)x->tx_bytes,
			(unsigned long long)x->errors, (unsigned long long)x->throttled);
	}
	fprintf(out, "},\"e1000\":{");
	for (unsigned i = 0; i < m->nnics; i++) {
		struct e1000_stats st;

		e1000_get_stats(m->nics[i].dev, &st);
		fprintf(out, "%s\"e1000-%u\":{\"mmio_exits\":%llu,\"pio_exits\":%llu,\"tdt_writes\":%llu,"
			"\"interrupts\":%llu,\"rx_packets\":%llu,\"rx_bytes\":%llu,\"tx_packets\":%llu,"
			"\"tx_bytes\":%llu,\"rx_dropped\":%llu,\"tx_dropped\":%llu}", i ? "," : "", i,
			(unsigned long long)st.mmio_exits, (unsigned long long)st.pio_exits,
			(unsigned long long)st.tdt_writes, (unsigned long long)st.irqs,
			(unsigned long long)st.rx_packets, (unsigned long long)st.rx_bytes,
			(unsigned long long)st.tx_packets, (unsigned long long)st.tx_bytes,
			(unsigned long long)st.rx_dropped, (unsigned long long)st.tx_dropped);
	}
	fprintf(out, "},\"console\":{\"bytes_out\":%llu,\"bytes_dropped\":%llu},\"metrics\":{\"lines_dropped\":%llu}}\n",
		(unsigned long long)__atomic_load_n(&m->console.bytes_out, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&m->console.bytes_dropped, __ATOMIC_RELAXED),
		(unsigned long long)m->metrics_dropped);
	fflush(out);
}

void metrics_flush(struct machine *m)
{
	char *line = NULL;
	size_t len = 0;
	FILE *f;

	if (m->metrics_fd < 0)
		return;
	/* One write per line: a FIFO reader gets whole lines or none. */
	f = open_memstream(&line, &len);
	if (!f) {
		m->metrics_dropped++;
		return;
	}
	metrics_write(m, f);
	if (fclose(f) != 0 || file_write_nb(m->metrics_fd, line, len, true) != len)
		m->metrics_dropped++;
	free(line);
}

static void metrics_tick(void *opaque)
{
	struct machine *m = opaque;

	metrics_flush(m);
}

int metrics_start(struct machine *m, const char *path, unsigned interval_s, char *err, size_t errlen)
{
	uint64_t period = (uint64_t)interval_s * 1000000000ull;
	int e;

	/* Firecracker's metrics may go to a FIFO: it is written without blocking, and lines a slow
	 * reader has no room for are dropped and counted (metrics.lines_dropped). */
	e = file_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644, FILE_REG | FILE_FIFO | FILE_CHR, "metrics file",
		      NULL, err, errlen);
	if (e < 0)
		return e;
	m->metrics_fd = e;
	m->metrics_dropped = 0;
	loop_timer_init(&m->metrics_timer, m->loop, metrics_tick, m);
	loop_timer_arm(&m->metrics_timer, period, period);
	return 0;
}

void metrics_stop(struct machine *m)
{
	if (m->metrics_fd >= 0) {
		metrics_flush(m);
		close(m->metrics_fd);
		m->metrics_fd = -1;
	}
	loop_timer_cancel(&m->metrics_timer);
}

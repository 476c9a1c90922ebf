#!/usr/bin/env bash
# e1000 vs virtio-net with kestrel, in the nested test bed (testbed/README.md):
# one test-bed boot; in L1 kestrel runs twice on the same TAP backend (ktap0),
# once with --net tap=ktap0,model=e1000 and once with --net tap=ktap0
# (virtio-net); each time L2 (Debian's generic kernel) runs
# `iperf3 -c 192.0.2.1 -t 10` to an `iperf3 -s` in L1 while kestrel writes
# --metrics every second. Prints a Markdown table next to the published
# figures of /work/shared/REFERENCE.md. Nothing here asserts a number.
#
# Exits and interrupts "during the transfer" are differences between two
# metrics lines: the last one before the NIC's tx_bytes starts to climb and
# the first one after it stops (L2 idles 2 s either side of iperf3 and prints
# nothing during it). Per-second rates divide by the time between those two
# lines (L1's clock), so they include up to ~2 s of idle; the steady-state
# rows use only lines strictly inside the transfer.
#
# Env: KESTREL (default build/kestrel), KESTREL_CACHE, NETPERF_TIMEOUT (600),
#      NETPERF_KEEP=DIR keeps the raw test-bed output there (testbed.out);
#      NETPERF_OUTPUT=FILE analyses such a kept output instead of booting.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kestrel=${KESTREL:-$root/build/kestrel}
case $kestrel in /*) ;; *) kestrel=$PWD/$kestrel ;; esac
timeout=${NETPERF_TIMEOUT:-600}
. "$root/testbed/lib.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/kestrel-netperf.XXXXXX")
trap 'rm -rf "$work"' EXIT
out=$work/testbed.out

[ -x "$kestrel" ] || { echo "netperf: $kestrel missing (build kestrel first)"; exit 1; }
tb_ensure_tools || { echo "netperf: test-bed host tools unavailable"; exit 1; }
if ! command -v jq >/dev/null; then
	[ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get -q -y install jq >&2 || true
	command -v jq >/dev/null || { echo "netperf: jq is needed (apt-get install jq)"; exit 1; }
fi
"$root/testbed/fetch.sh" --e1000 >/dev/null || { echo "netperf: cannot fetch the test-bed packages"; exit 1; }

# iperf3 from Debian, unpacked into the test-bed cache (tb_fetch_pkg), and
# staged with its libraries at the paths the dynamic loader searches.
tb_lock
ipdir=$(tb_fetch_pkg iperf3)
libdirs=
for p in libiperf0 libsctp1; do
	d=$(tb_fetch_pkg "$p")
	libdirs=$libdirs${libdirs:+:}$d/usr/lib/x86_64-linux-gnu
done
tb_unlock
stage=$work/stage
mkdir -p "$stage/usr/bin" "$stage/lib/x86_64-linux-gnu"
cp "$ipdir/usr/bin/iperf3" "$stage/usr/bin/iperf3"
files=(/usr/bin/iperf3)
while IFS= read -r line; do
	line=${line#"${line%%[![:space:]]*}"}
	case $line in
	*"=> not found"*) echo "netperf: iperf3 needs a library this host lacks: $line"; exit 1 ;;
	*"=> /"*) lib=${line#*=> }; lib=${lib%% (*}; dst=/lib/x86_64-linux-gnu/${lib##*/} ;;
	/*) lib=${line%% (*}; dst=$lib ;;    # the loader, at its own path
	*) continue ;;
	esac
	mkdir -p "$stage$(dirname "$dst")"
	cp -L "$lib" "$stage$dst"
	files+=("$dst")
done < <(LD_LIBRARY_PATH=$libdirs ldd "$ipdir/usr/bin/iperf3")
add=()
for f in "${files[@]}"; do add+=(--add "$stage$f:$f" --l2-add "$stage$f:$f"); done

cat >"$work/l2-init" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
testbed-load-modules
dev=$(ls /sys/class/net | grep -v lo | head -1)
drv=$(basename "$(readlink /sys/class/net/$dev/device/driver)")
ip link set lo up
ip link set "$dev" up
ip addr add 192.0.2.2/24 dev "$dev"
n=0; while [ "$(cat /sys/class/net/$dev/carrier 2>/dev/null)" != 1 ] && [ $n -lt 20 ]; do sleep 1; n=$((n + 1)); done
n=0; until ping -c 1 -W 2 192.0.2.1 >/dev/null 2>&1 || [ $n -ge 20 ]; do n=$((n + 1)); done
echo "NETPERF-L2 ready dev=$dev driver=$drv ping-tries=$n"
# Quiet on the console from here to the end marker: UART writes are exits too.
sleep 2
iperf3 -c 192.0.2.1 -t 10 -f m >/tmp/iperf3.txt 2>&1
rc=$?
sleep 2
echo "NETPERF-L2 iperf3-rc=$rc"
sed 's/^/NETPERF-L2 iperf3 /' /tmp/iperf3.txt
grep -e eth -e e1000 -e virtio /proc/interrupts | sed 's/^/NETPERF-L2 irq /'
reboot -f
EOF

if [ -n "${NETPERF_OUTPUT:-}" ]; then
	cp "$NETPERF_OUTPUT" "$out"    # analyse a kept test-bed output again
	wall=? tbrc=?
else
echo "netperf: one test-bed boot, kestrel twice in L1 (e1000, then virtio-net); about 1.5 minutes" >&2
start=$(date +%s) tbrc=0
"$root/testbed/testbed.sh" --vmm "$kestrel" --l2-init "$work/l2-init" \
	--l2-kernel generic --l2-modules e1000,virtio_pci,virtio_net --l1-modules tun \
	--add "$root/tests/e2e/l1-run-kestrel:/usr/bin/l1-run-kestrel" \
	--add "$root/bench/l1-netperf:/usr/bin/l1-netperf" "${add[@]}" \
	--timeout "$timeout" -- l1-netperf 240 </dev/null >"$out" 2>&1 || tbrc=$?
wall=$(($(date +%s) - start))
fi
if [ -n "${NETPERF_KEEP:-}" ]; then mkdir -p "$NETPERF_KEEP" && cp "$out" "$NETPERF_KEEP/testbed.out"; fi

# --- analysis --------------------------------------------------------------
# One metrics line -> "t_ms exits irqs tx_bytes doorbells" for the NIC of MODEL
# (doorbells: e1000 TDT writes, which are MMIO exits; virtio-net queue kicks,
# which arrive through ioeventfd and are no exit to kestrel).
sample() { # MODEL
	local sel
	if [ "$1" = e1000 ]; then sel='.["e1000"]["e1000-0"]'
	else sel='[.virtio[] | select(.type == "net" or .type == "virtio-net")][0]'; fi
	jq -r "[.utc_timestamp_ms, ([.vcpus[].exits[]] | add // 0),
		($sel.interrupts // 0), ($sel.tx_bytes // 0), ($sel.tdt_writes // $sel.kicks // 0)] | @tsv"
}

declare -A R
for m in e1000 virtio; do
	sed -n "s/^.*NETPERF-M $m //p" "$out" | tr -d '\r' | sample "$m" >"$work/$m.tsv" 2>/dev/null || true
	R[$m.rc]=$(sed -n "s/.*NETPERF-L1 kestrel-rc $m \([0-9]*\).*/\1/p" "$out" | tr -d '\r' | head -1 || true)
	# iperf3's summary lines of this run (the runs are in order e1000, virtio).
	idx=1; [ "$m" = virtio ] && idx=2
	R[$m.snd]=$(grep 'NETPERF-L2 iperf3 .* sender' "$out" | sed -n "${idx}p" | grep -o '[0-9.]* Mbits/sec' | cut -d' ' -f1 || true)
	R[$m.rcv]=$(grep 'NETPERF-L2 iperf3 .* receiver' "$out" | sed -n "${idx}p" | grep -o '[0-9.]* Mbits/sec' | cut -d' ' -f1 || true)
	R[$m.drv]=$(grep 'NETPERF-L2 ready' "$out" | sed -n "${idx}p" | grep -o 'driver=[^ ]*' | cut -d= -f2 | tr -d '\r' || true)
	# Window: k0 = last line before tx_bytes climbs (> 64 KiB in an interval),
	# k1 = first line after it stops; steady state: k0+1 .. k1-1.
	awk -v thr=65536 '
		{ t[NR] = $1; e[NR] = $2; i[NR] = $3; b[NR] = $4; d[NR] = $5 }
		END {
			for (k = 2; k <= NR; k++) if (b[k] - b[k-1] > thr) { if (!a) a = k - 1; z = k }
			if (!a) { print "none"; exit }
			s0 = a + 1; s1 = z - 1
			printf "%d %d %d %d %d %d %d %d %d %d %d\n", t[z]-t[a], e[z]-e[a], i[z]-i[a], b[z]-b[a],
				(s1 > s0 ? t[s1]-t[s0] : 0), e[s1]-e[s0], i[s1]-i[s0], b[s1]-b[s0], e[NR], NR, d[z]-d[a]
		}' "$work/$m.tsv" >"$work/$m.win"
	read -r R[$m.dt] R[$m.ex] R[$m.irq] R[$m.by] R[$m.sdt] R[$m.sex] R[$m.sirq] R[$m.sby] R[$m.extot] R[$m.n] R[$m.db] \
		<"$work/$m.win" || true
done

ok=1
for m in e1000 virtio; do
	if [ "${R[$m.rc]:-}" != 0 ] || [ -z "${R[$m.snd]:-}" ] || [ -z "${R[$m.dt]:-}" ] || [ "${R[$m.dt]}" = none ]; then
		echo "netperf: the $m run did not complete (test bed status $tbrc, kestrel status '${R[$m.rc]:-}', iperf3 '${R[$m.snd]:-}', metrics window '${R[$m.dt]:-}')"
		ok=0
	fi
done
if [ "$ok" = 0 ]; then
	echo "--- last lines of the test-bed console ---"
	grep -v '^NETPERF-M' "$out" | tail -n 40 | sed 's/^/  | /'
	exit 1
fi

calc() { awk "BEGIN { x = $1; printf \"$2\", x }"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == 0) print "-"; else if (b == 0) print "0"; else { r = b / a; if (r >= 1) printf "%.1fx\n", r; else printf "1/%.1fx\n", 1 / r } }'; }
row() { # LABEL E1000 VIRTIO REF_E1000 REF_VIRTIO REF_RATIO
	printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(ratio "$2" "$3")" "$4" "$5" "$6"
}
for m in e1000 virtio; do
	s=${R[$m.dt]} mb=$(calc "${R[$m.by]} / 1e6" %.3f)
	R[$m.eps]=$(calc "${R[$m.ex]} * 1000 / $s" %.0f)
	R[$m.ips]=$(calc "${R[$m.irq]} * 1000 / $s" %.0f)
	R[$m.epm]=$(calc "${R[$m.ex]} / $mb" %.1f)
	R[$m.ipm]=$(calc "${R[$m.irq]} / $mb" %.1f)
	R[$m.dps]=$(calc "${R[$m.db]} * 1000 / $s" %.0f)
	R[$m.dpm]=$(calc "${R[$m.db]} / $mb" %.1f)
	R[$m.wmbps]=$(calc "${R[$m.by]} * 8 / ($s * 1000)" %.1f)
	ss=${R[$m.sdt]}
	if [ "$ss" -gt 0 ]; then
		R[$m.seps]=$(calc "${R[$m.sex]} * 1000 / $ss" %.0f)
		R[$m.sips]=$(calc "${R[$m.sirq]} * 1000 / $ss" %.0f)
		R[$m.smbps]=$(calc "${R[$m.sby]} * 8 / ($ss * 1000)" %.1f)
	else R[$m.seps]=0 R[$m.sips]=0 R[$m.smbps]=0; fi
done

echo "### e1000 vs virtio-net: kestrel in the nested test bed vs the published measurement"
echo
echo "kestrel: $kestrel; L2: Debian generic kernel, 2 vCPUs, 512 MiB; TCP stream"
echo "L2 -> L1 over TAP (\`iperf3 -c 192.0.2.1 -t 10\`), drivers: ${R[e1000.drv]} / ${R[virtio.drv]}. Test-bed wall time: ${wall} s."
echo
echo "| metric | kestrel e1000 | kestrel virtio-net | ratio (virtio / e1000) | published e1000 | published virtio-net | published ratio |"
echo "|---|---|---|---|---|---|---|"
row "guest throughput, iperf3 sender (Mbit/s)" "${R[e1000.snd]}" "${R[virtio.snd]}" 239 "5,230" 22x
row "guest throughput, iperf3 receiver (Mbit/s)" "${R[e1000.rcv]}" "${R[virtio.rcv]}" - - -
row "exits per second" "${R[e1000.eps]}" "${R[virtio.eps]}" "33,783" "1,126" 1/30x
row "interrupts per second" "${R[e1000.ips]}" "${R[virtio.ips]}" "3,667" 257 1/14x
row "exits per MB sent" "${R[e1000.epm]}" "${R[virtio.epm]}" - - -
row "interrupts per MB sent" "${R[e1000.ipm]}" "${R[virtio.ipm]}" - - -
row "doorbells per second (e1000 TDT writes / virtio kicks)" "${R[e1000.dps]}" "${R[virtio.dps]}" - - -
row "doorbells per MB sent" "${R[e1000.dpm]}" "${R[virtio.dpm]}" - - -
row "steady state: exits per second" "${R[e1000.seps]}" "${R[virtio.seps]}" - - -
row "steady state: interrupts per second" "${R[e1000.sips]}" "${R[virtio.sips]}" - - -
echo
echo "Window (from --metrics, 1 s interval): e1000 $(calc "${R[e1000.dt]} / 1000" %.1f) s, ${R[e1000.ex]} exits, ${R[e1000.irq]} irqs, $(calc "${R[e1000.by]} / 1e6" %.1f) MB sent by the NIC ($(echo "${R[e1000.wmbps]}") Mbit/s);"
echo "virtio-net $(calc "${R[virtio.dt]} / 1000" %.1f) s, ${R[virtio.ex]} exits, ${R[virtio.irq]} irqs, $(calc "${R[virtio.by]} / 1e6" %.1f) MB ($(echo "${R[virtio.wmbps]}") Mbit/s)."
echo "Whole-run exits (boot included): e1000 ${R[e1000.extot]}, virtio-net ${R[virtio.extot]}."
echo
echo "Exits: every KVM_RUN return to kestrel on all vCPUs, summed over reasons, between the metrics"
echo "line before the transfer and the one after it (per second: over that span, so up to ~2 s of"
echo "idle dilutes it; steady state: lines strictly inside the transfer). Exits KVM handles in the"
echo "kernel (in-kernel LAPIC EOIs, ioeventfd kicks) are not counted, unlike the published figure."
echo "Interrupts: e1000 = the NIC's irqs counter; virtio-net = the device's interrupt counter (irqfd)."
echo "Doorbells: e1000 TDT writes are MMIO exits (part of the exits); virtio-net kicks hit an ioeventfd"
echo "and exit only into L1's KVM, not to kestrel - counted as exits in the published figure."
echo "MB = bytes the NIC transmitted in that window (frames incl. headers), 10^6 bytes."
echo
echo "What the test bed distorts: L1 runs under QEMU's TCG emulator and L2 under a nested KVM on"
echo "emulated SVM, so the guest runs one to two orders of magnitude slower than hardware, an exit costs"
echo "~80 us instead of ~1-2 us, and the L1 network stack and iperf3 server share the same 2 emulated"
echo "cores. Absolute throughputs and rates are not comparable with the published ones; the ratios and"
echo "the per-MB counts say more. The published setup is QEMU 2.2 + Linux 3.13 on a Xeon E5620."

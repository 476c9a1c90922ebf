#!/usr/bin/env bash
# kestrel benchmarks, side by side with QEMU in the same run. Prints Markdown
# tables; nothing here asserts a time.
# Usage: bench/run.sh [startup|exits|blk|net-pps|all|net|snapshot]
#   REPS (default 5) runs per cell, the median is reported.
#   startup: KESTREL_BASE (unset) another kestrel binary to report beside it (before/after).
#   EXIT_N (default 100000) writes per exit-cost run.
#   blk: BLK_N4K (40000) requests per 4 KiB run, BLK_NSEQ (4000) per 128 KiB run,
#        BLK_IMG (a 1 GiB image made in a temporary directory) the raw image to use.
#   net-pps (root): NET_N (200000) frames per run, NET_TAP (kbench0) the TAP device it
#        creates and deletes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$root/build}
K=$BUILD/kestrel
G=$BUILD/guests
L=$BUILD/bench/launch
BARE=$BUILD/bench/bare_kvm
REPS=${REPS:-5}
EXIT_N=${EXIT_N:-100000}
BLK_N4K=${BLK_N4K:-40000}
BLK_NSEQ=${BLK_NSEQ:-4000}
HOST_URING=$BUILD/bench/host_uring
QEMU=${QEMU:-qemu-system-x86_64}
NET_N=${NET_N:-200000}
NET_TAP=${NET_TAP:-kbench0}
what=${1:-all}
# net: e1000 vs virtio-net in the nested test bed (needs no /dev/kvm here).
# snapshot: pause/resume/snapshot/restore latency through the API vs QEMU's QMP.
case $what in
net) exec "$root/bench/netperf.sh" ;;
snapshot) exec python3 "$root/bench/snapshot.py" --reps "$REPS" "$K" "$G/guest-counter.elf" ;;
esac
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

[ -c /dev/kvm ] || { echo "bench: /dev/kvm is needed"; exit 1; }
for f in "$K" "$L" "$BARE" "$G/guest-hello.elf" "$G/guest-cpl3.elf"; do
	[ -e "$f" ] || { echo "bench: $f missing (run 'make' first)"; exit 1; }
done
if [ "$what" = blk ] || [ "$what" = all ]; then
	for f in "$G/guest-vblk.elf" "$HOST_URING"; do
		[ -e "$f" ] || { echo "bench: $f missing (run 'make' first)"; exit 1; }
	done
fi
if [ "$what" = net-pps ] || [ "$what" = all ]; then
	[ -e "$G/guest-vnet.elf" ] || { echo "bench: $G/guest-vnet.elf missing (run 'make' first)"; exit 1; }
	[ "$(id -u)" = 0 ] || { echo "bench: net-pps creates a TAP device: run as root"; exit 1; }
fi
command -v "$QEMU" >/dev/null || { echo "bench: $QEMU not found (apt-get install qemu-system-x86)"; exit 1; }

# QEMU microvm with the same guest, its UART on COM1 and a debug-exit port.
# (-cpu host fails on kvm_pvm hosts: QEMU cannot set MSR 0x10a there.)
qemu_args() { # KERNEL CMDLINE -> QARGS
	QARGS=("$QEMU" -M microvm -accel kvm -m 256 -smp 1 -nodefaults -no-user-config
	       -display none -serial null -device isa-debug-exit,iobase=0x501,iosize=1
	       -kernel "$1" -append "$2")
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

field() { # KEY FILE: value of KEY=... in the last matching line
	grep -o "$1=[0-9.]*" "$2" | tail -1 | cut -d= -f2
}

# measure WANT NAME CMD...: REPS runs under launch; leaves per-run files $T/NAME.N.
# A run that does not end with exit status WANT makes the whole bench stop.
measure() {
	local want=$1 name=$2; shift 2
	for i in $(seq "$REPS"); do
		"$L" -q -- "$@" 2>"$T/$name.$i" || true
		if [ "$(field status "$T/$name.$i")" != "$want" ]; then
			echo "bench: '$*' ended with status $(field status "$T/$name.$i"), want $want:" >&2
			tail -5 "$T/$name.$i" >&2
			exit 1
		fi
	done
}

stat_of() { # NAME KEY: median over runs
	local name=$1 key=$2
	for f in "$T/$name".*; do field "$key" "$f"; done | median
}

cpu_of() { # NAME: median user+sys
	local name=$1
	for f in "$T/$name".*; do
		echo "$(field user_ms "$f") $(field sys_ms "$f")" | awk '{print $1+$2}'
	done | median
}

startup() {
	local cmd
	measure 0 kestrel "$K" run --kernel "$G/guest-hello.elf" --memory 256M --console none --cmdline exit=0
	qemu_args "$G/guest-hello.elf" exit=0
	measure 1 qemu "${QARGS[@]}"
	echo "### Start-up: 256 MiB guest, PVH test guest that exits at once (median of $REPS)"
	echo
	echo "| metric | kestrel | QEMU microvm | ratio (QEMU / kestrel) |"
	echo "|---|---|---|---|"
	local kw kc qw qc kr qr
	kw=$(stat_of kestrel wall_ms); qw=$(stat_of qemu wall_ms)
	kc=$(cpu_of kestrel); qc=$(cpu_of qemu)
	kr=$(stat_of kestrel maxrss_kib); qr=$(stat_of qemu maxrss_kib)
	printf '| exec to guest exit, wall ms | %.2f | %.2f | %.1fx |\n' "$kw" "$qw" "$(echo "$qw $kw" | awk '{print $1/$2}')"
	printf '| exec to guest exit, CPU ms (user+sys) | %.2f | %.2f | %.1fx |\n' "$kc" "$qc" "$(echo "$qc $kc" | awk '{print $1/$2}')"
	printf '| peak RSS, MiB | %.2f | %.2f | %.1fx |\n' "$(echo "$kr" | awk '{print $1/1024}')" "$(echo "$qr" | awk '{print $1/1024}')" "$(echo "$qr $kr" | awk '{print $1/$2}')"
	echo
	# kestrel's own report at its first KVM_RUN.
	local fw fc fo
	echo "QEMU's exit status 1 is the guest's status 0 (isa-debug-exit reports (status << 1) | 1)."
	echo "kestrel at its first KVM_RUN: $(first_kvm_run kestrel) (targets: <= 2 CPU-ms, <= 2048 KiB)."
	if [ -n "${KESTREL_BASE:-}" ]; then
		# Another build (e.g. the previous commit's) in the same run, for a before/after.
		measure 0 base "$KESTREL_BASE" run --kernel "$G/guest-hello.elf" --memory 256M --console none --cmdline exit=0
		echo "$KESTREL_BASE at its first KVM_RUN: $(first_kvm_run base)."
	fi
	echo
}

first_kvm_run() { # NAME: kestrel's own report at its first KVM_RUN, medians over the runs
	local name=$1 fw fc fo
	fw=$(for f in "$T/$name".*; do grep -o 'startup: wall_ms=[0-9.]*' "$f" | cut -d= -f2; done | median)
	fc=$(for f in "$T/$name".*; do grep -o 'cpu_ms=[0-9.]*' "$f" | cut -d= -f2; done | median)
	fo=$(for f in "$T/$name".*; do grep -o 'overhead_kib=[0-9]*' "$f" | cut -d= -f2; done | median)
	echo "wall ${fw} ms from exec, ${fc} CPU-ms, ${fo} KiB resident beyond guest RAM"
}

exits() {
	local mode n who
	echo "### Exit cost: CPL3 guest, $EXIT_N writes per run (median of $REPS; cost = (t(N) - t(0)) / N)"
	echo
	echo "| access | bare KVM_RUN loop (limit) | kestrel | QEMU microvm | kestrel vs limit | QEMU / kestrel |"
	echo "|---|---|---|---|---|---|"
	for mode in pio mmio; do
		for n in 0 "$EXIT_N"; do
			measure 0 "bare-$mode-$n" "$BARE" "$G/guest-cpl3.elf" "mode=$mode n=$n"
			measure 0 "kestrel-$mode-$n" "$K" run --kernel "$G/guest-cpl3.elf" --console none --cmdline "mode=$mode n=$n"
			qemu_args "$G/guest-cpl3.elf" "mode=$mode n=$n"
			measure 1 "qemu-$mode-$n" "${QARGS[@]}"
		done
		local b k q
		b=$(echo "$(stat_of "bare-$mode-$EXIT_N" wall_ms) $(stat_of "bare-$mode-0" wall_ms) $EXIT_N" | awk '{printf "%.2f", ($1-$2)*1000/$3}')
		k=$(echo "$(stat_of "kestrel-$mode-$EXIT_N" wall_ms) $(stat_of "kestrel-$mode-0" wall_ms) $EXIT_N" | awk '{printf "%.2f", ($1-$2)*1000/$3}')
		q=$(echo "$(stat_of "qemu-$mode-$EXIT_N" wall_ms) $(stat_of "qemu-$mode-0" wall_ms) $EXIT_N" | awk '{printf "%.2f", ($1-$2)*1000/$3}')
		printf '| %s write, us/exit | %s | %s | %s | %s | %s |\n' "$mode" "$b" "$k" "$q" \
			"$(echo "$k $b" | awk '{printf "%+.1f%%", ($1/$2-1)*100}')" \
			"$(echo "$q $k" | awk '{printf "%.2fx", $1/$2}')"
	done
	echo
}

# --- blk: virtio-blk throughput ------------------------------------------------
# guest-vblk keeps qd requests in flight on a virtio-blk PCI disk, polling the
# used ring from CPL3 (no interrupts), and reports the TSC time from its first
# submission to its last completion; throughput is n over that time, so boot
# and exit are not in it (the guest's TSC rate matched wall time within 2% on
# this host). host_uring runs the same workload on the same image with
# io_uring: the limit. Both VMMs and the host use O_DIRECT; the guest does not
# negotiate VIRTIO_BLK_F_FLUSH, so both VMMs write through (kestrel: RWF_DSYNC;
# QEMU: write cache off) and host_uring's writes use RWF_DSYNC (-s) to match.
# host_uring's buffers are THP-backed (-H) like QEMU's guest RAM: with O_DIRECT
# that halves the pages pinned and the segments per request, which doubled
# 128 KiB reads here.

kv() { # KEY FILE: numeric value of " KEY=" in the last line that has it
	grep -oE "(^| )$1=[0-9.]+" "$2" | tail -1 | cut -d= -f2
}

# blk_run WANT NAME CMD...: REPS runs under launch, guest output kept in $T/NAME.N.
blk_run() {
	local want=$1 name=$2 i st; shift 2
	for i in $(seq "$REPS"); do
		"$L" -- "$@" >"$T/$name.$i" 2>&1 </dev/null || true
		st=$(field status "$T/$name.$i")
		if [ "$st" != "$want" ] || ! grep -qE "vblk done|host_uring: mode" "$T/$name.$i"; then
			echo "bench: '$*' ended with status $st, want $want:" >&2
			tail -5 "$T/$name.$i" >&2
			exit 1
		fi
	done
}

# kestrel --stats: all exits of vCPU 0..N (the total column), and the disk's kicks.
kestrel_exits() { awk '/^kestrel: exits by reason/{on=1; next} /^kestrel: /{on=0} on && NR>0 && $1!="reason"{s+=$NF} END{print s+0}' "$1"; }
kestrel_kicks() { awk '/^kestrel: virtio devices/{on=1; next} on && $1=="virtio-blk"{print $2; exit}' "$1"; }

blk() {
	local img=${BLK_IMG:-} mode bs qd n unit w base
	if [ -z "$img" ]; then
		img=$T/blk.img
		fallocate -l 1G "$img"
		dd if=/dev/zero of="$img" bs=4M count=256 oflag=direct conv=notrunc status=none
	fi
	echo "### virtio-blk: guest-vblk polling from CPL3 vs the host's own io_uring (median of $REPS)"
	echo
	echo "Image: $(du -h --apparent-size "$img" | cut -f1) raw on $(df --output=fstype "$img" | tail -1), O_DIRECT everywhere."
	echo "kestrel: \`--disk IMG,direct,engine=uring\` (uring is the default); QEMU: microvm,pcie=on, \`cache=none,aio=io_uring\`, virtio-blk-pci disable-legacy=on."
	echo
	echo "| workload | host io_uring | kestrel | QEMU microvm | kestrel % of host | kestrel / QEMU | kestrel exits/req | kestrel kicks/req (VMM) | guest notifies/req |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for w in "randread 4096 32 $BLK_N4K" "randwrite 4096 32 $BLK_N4K" "seqread 131072 8 $BLK_NSEQ"; do
		set -- $w
		mode=$1 bs=$2 qd=$3 n=$4
		local args="mode=$mode bs=$bs qd=$qd"
		local hflags=(-H)
		[ "$mode" = randwrite ] && hflags+=(-s)
		blk_run 0 "host-$mode" "$HOST_URING" "${hflags[@]}" -m "$mode" -b "$bs" -q "$qd" -n "$n" "$img"
		blk_run 0 "kestrel-$mode" "$K" run --kernel "$G/guest-vblk.elf" --memory 256M --console stdio \
			--stats --disk "$img,direct,engine=uring" --cmdline "$args n=$n"
		# The same with n=qd: the exits of boot, PCI set-up and printing, subtracted below.
		REPS=1 blk_run 0 "kbase-$mode" "$K" run --kernel "$G/guest-vblk.elf" --memory 256M \
			--console stdio --stats --disk "$img,direct,engine=uring" --cmdline "$args n=$qd"
		blk_run 1 "qemu-$mode" "$QEMU" -M microvm,pcie=on -accel kvm -m 256 -smp 1 -nodefaults \
			-no-user-config -display none -serial stdio -device isa-debug-exit,iobase=0x501,iosize=1 \
			-drive "file=$img,if=none,id=d0,format=raw,cache=none,aio=io_uring" \
			-device virtio-blk-pci,drive=d0,disable-legacy=on \
			-kernel "$G/guest-vblk.elf" -append "$args n=$n"

		local h k q ex kk gn f
		# per run: requests per second (host: its own elapsed time; guests: their TSC time)
		h=$(for f in "$T/host-$mode".*; do echo "$(kv n "$f") $(kv elapsed_us "$f")"; done |
			awk '{print $1*1e6/$2}' | median)
		k=$(for f in "$T/kestrel-$mode".*; do echo "$(kv requests "$f") $(kv us "$f")"; done |
			awk '{print $1*1e6/$2}' | median)
		q=$(for f in "$T/qemu-$mode".*; do echo "$(kv requests "$f") $(kv us "$f")"; done |
			awk '{print $1*1e6/$2}' | median)
		base=$(kestrel_exits "$T/kbase-$mode.1")
		ex=$(for f in "$T/kestrel-$mode".*; do echo "$(kestrel_exits "$f") $base $n $qd"; done |
			awk '{print ($1-$2)/($3-$4)}' | median)
		kk=$(for f in "$T/kestrel-$mode".*; do echo "$(kestrel_kicks "$f") $n"; done | awk '{print $1/$2}' | median)
		gn=$(for f in "$T/kestrel-$mode".*; do echo "$(kv kicks "$f") $n"; done | awk '{print $1/$2}' | median)
		if [ "$bs" -ge 65536 ]; then
			unit="MB/s"
			h=$(echo "$h $bs" | awk '{print $1*$2/1e6}')
			k=$(echo "$k $bs" | awk '{print $1*$2/1e6}')
			q=$(echo "$q $bs" | awk '{print $1*$2/1e6}')
		else
			unit="IOPS"
		fi
		printf '| %s %s KiB qd=%s, %s (n=%s) | %.0f | %.0f | %.0f | %.1f%% | %.2fx | %.4f | %.3f | %.3f |\n' \
			"$mode" "$((bs / 1024))" "$qd" "$unit" "$n" "$h" "$k" "$q" \
			"$(echo "$k $h" | awk '{print $1/$2*100}')" "$(echo "$k $q" | awk '{print $1/$2}')" \
			"$ex" "$kk" "$gn"
	done
	echo
	echo "Throughput: n requests over the guest's own TSC time from first submission to last completion;"
	echo "host: the same span in host_uring, its buffers in transparent huge pages (as QEMU's guest RAM)."
	echo "exits/req = (exits(n) - exits(n=qd)) / (n - qd) from \`--stats\` (what remains is the UART printing"
	echo "longer numbers); kicks/req (VMM) = kicks kestrel's I/O thread read (one eventfd read can cover"
	echo "several notify writes); guest notifies/req = notify writes the guest made (once per batch of"
	echo "completions unless the device set VIRTQ_USED_F_NO_NOTIFY). Writes are write-through everywhere."
	echo
}

# --- net-pps: virtio-net transmit, frames per second through a TAP device -----
# guest-vnet keeps the virtio-net transmit ring full (batch frames per kick),
# polling the used ring from CPL3 (no interrupts), and reports the TSC time
# from its first frame made available to the last one used. Both VMMs do the
# work in user space (QEMU: vhost=off) and write into the same TAP device,
# which this mode creates, brings up (IPv6 off, so the host sends nothing) and
# deletes. Frames: ethertype 0x88b5 (local experimental) to ff:ff:ff:ff:ff:ff;
# no protocol takes them, so the host counts each in the TAP's rx_packets and
# then discards it (rx_dropped/rx_nohandler). Nothing is routed anywhere.

tapstat() { cat "/sys/class/net/$NET_TAP/statistics/$1"; }
kestrel_net_kicks() { awk '/^kestrel: virtio devices/{on=1; next} on && $1=="virtio-net"{print $2; exit}' "$1"; }

# net_run WANT NAME CMD...: REPS runs under launch; appends the TAP's counters.
net_run() {
	local want=$1 name=$2 i st r0 r1; shift 2
	for i in $(seq "$REPS"); do
		r0=$(tapstat rx_packets)
		"$L" -- "$@" >"$T/$name.$i" 2>&1 </dev/null || true
		r1=$(tapstat rx_packets)
		echo "tap: tap_rx=$((r1 - r0))" >>"$T/$name.$i"
		st=$(field status "$T/$name.$i")
		if [ "$st" != "$want" ] || ! grep -q "vnet done" "$T/$name.$i"; then
			echo "bench: '$*' ended with status $st, want $want:" >&2
			tail -5 "$T/$name.$i" >&2
			exit 1
		fi
	done
}

net_pps() {
	local size n=$NET_N batch=32 d0 d1
	if ip link show "$NET_TAP" >/dev/null 2>&1; then
		echo "bench: $NET_TAP already exists; set NET_TAP to an unused name" >&2
		exit 1
	fi
	ip tuntap add dev "$NET_TAP" mode tap
	trap 'ip link del "$NET_TAP" 2>/dev/null; rm -rf "$T"' EXIT
	sysctl -qw "net.ipv6.conf.$NET_TAP.disable_ipv6=1" 2>/dev/null || true
	ip link set "$NET_TAP" up
	d0=$(tapstat rx_dropped)
	echo "### virtio-net transmit through TAP: guest-vnet polling from CPL3 (median of $REPS)"
	echo
	echo "kestrel: \`--net tap=$NET_TAP\`; QEMU: microvm,pcie=on, \`-netdev tap,vhost=off\`, virtio-net-pci disable-legacy=on."
	echo "Guest: VERSION_1 only, 256-entry tx ring kept full, $batch frames per kick, n=$n frames per run."
	echo
	echo "| frame | kestrel kpps | QEMU kpps | kestrel / QEMU | TAP rx_packets per run, kestrel (min..max) | same, QEMU | kestrel exits/frame | kestrel kicks/frame (VMM) | guest notifies/frame kestrel / QEMU |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for size in 64 1500; do
		local args="n=$n size=$size batch=$batch"
		net_run 0 "knet-$size" "$K" run --kernel "$G/guest-vnet.elf" --memory 256M --console stdio \
			--stats --net "tap=$NET_TAP" --cmdline "$args"
		# n=batch: the exits of boot, PCI set-up and printing, subtracted below.
		REPS=1 net_run 0 "knetbase-$size" "$K" run --kernel "$G/guest-vnet.elf" --memory 256M \
			--console stdio --stats --net "tap=$NET_TAP" --cmdline "n=$batch size=$size batch=$batch"
		net_run 1 "qnet-$size" "$QEMU" -M microvm,pcie=on -accel kvm -m 256 -smp 1 -nodefaults \
			-no-user-config -display none -serial stdio -device isa-debug-exit,iobase=0x501,iosize=1 \
			-netdev "tap,id=n0,ifname=$NET_TAP,script=no,downscript=no,vhost=off" \
			-device virtio-net-pci,netdev=n0,disable-legacy=on \
			-kernel "$G/guest-vnet.elf" -append "$args"
		local k q base ex kk gk gq tk tq f
		# per run: frames per second over the guest's TSC time
		k=$(for f in "$T/knet-$size".*; do echo "$(kv frames "$f") $(kv tsc_cycles "$f") $(kv tsc_mhz "$f")"; done |
			awk '{print $1*$3*1e3/$2}' | median)
		q=$(for f in "$T/qnet-$size".*; do echo "$(kv frames "$f") $(kv tsc_cycles "$f") $(kv tsc_mhz "$f")"; done |
			awk '{print $1*$3*1e3/$2}' | median)
		tk=$(for f in "$T/knet-$size".*; do kv tap_rx "$f"; done | sort -g | sed -n '1p;$p' | paste -sd' ' | awk '{print ($1==$2) ? $1 : $1".."$2}')
		tq=$(for f in "$T/qnet-$size".*; do kv tap_rx "$f"; done | sort -g | sed -n '1p;$p' | paste -sd' ' | awk '{print ($1==$2) ? $1 : $1".."$2}')
		base=$(kestrel_exits "$T/knetbase-$size.1")
		ex=$(for f in "$T/knet-$size".*; do echo "$(kestrel_exits "$f") $base $n $batch"; done |
			awk '{print ($1-$2)/($3-$4)}' | median)
		kk=$(for f in "$T/knet-$size".*; do echo "$(kestrel_net_kicks "$f") $n"; done | awk '{print $1/$2}' | median)
		gk=$(for f in "$T/knet-$size".*; do echo "$(kv kicks "$f") $n"; done | awk '{print $1/$2}' | median)
		gq=$(for f in "$T/qnet-$size".*; do echo "$(kv kicks "$f") $n"; done | awk '{print $1/$2}' | median)
		printf '| %s bytes | %.1f | %.1f | %.2fx | %s | %s | %.5f | %.4f | %.4f / %.4f |\n' \
			"$size" "$k" "$q" "$(echo "$k $q" | awk '{print $1/$2}')" "$tk" "$tq" "$ex" "$kk" "$gk" "$gq"
	done
	d1=$(tapstat rx_dropped)
	echo
	echo "kpps: frames over the guest's TSC time from the first frame made available to the last one"
	echo "used (boot and exit not in it). TAP rx_packets: the host's count of frames written into the TAP"
	echo "per run (each should be n=$n; fewer means frames lost on the way). The host stack then drops"
	echo "every one of them (no handler for ethertype 0x88b5): rx_dropped grew by $((d1 - d0)) in all."
	echo "exits/frame = (exits(n) - exits(n=$batch)) / (n - $batch) from \`--stats\`; kicks/frame (VMM) = kicks"
	echo "kestrel's device read (an ioeventfd read can cover several notify writes); guest notifies/frame ="
	echo "notify writes the guest made (one per batch unless the device set VIRTQ_USED_F_NO_NOTIFY)."
	echo
}

echo "Host: $(nproc) CPUs, $(uname -r), KVM module: $(basename "$(ls -d /sys/module/kvm_* 2>/dev/null | head -1)" 2>/dev/null), QEMU $("$QEMU" --version | head -1 | awk '{print $4}')"
echo
case $what in
startup) startup ;;
exits) exits ;;
blk) blk ;;
net-pps) net_pps ;;
all) startup; exits; blk; net_pps ;;
*) echo "usage: bench/run.sh [startup|exits|blk|net-pps|all|net|snapshot]"; exit 2 ;;
esac

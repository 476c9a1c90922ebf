#!/usr/bin/env bash
# kestrel benchmarks, side by side with QEMU in the same run. Prints Markdown
# tables; nothing here asserts a time. Usage: bench/run.sh [startup|exits|all]
#   REPS (default 5) runs per cell, the median is reported.
#   EXIT_N (default 100000) writes per exit-cost run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$root/build}
K=$BUILD/kestrel
G=$BUILD/guests
L=$BUILD/bench/launch
BARE=$BUILD/bench/bare_kvm
REPS=${REPS:-5}
EXIT_N=${EXIT_N:-100000}
QEMU=${QEMU:-qemu-system-x86_64}
what=${1:-all}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

[ -c /dev/kvm ] || { echo "bench: /dev/kvm is needed"; exit 1; }
for f in "$K" "$L" "$BARE" "$G/guest-hello.elf" "$G/guest-cpl3.elf"; do
	[ -e "$f" ] || { echo "bench: $f missing (run 'make' first)"; exit 1; }
done
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
	fw=$(for f in "$T"/kestrel.*; do grep -o 'startup: wall_ms=[0-9.]*' "$f" | cut -d= -f2; done | median)
	fc=$(for f in "$T"/kestrel.*; do grep -o 'cpu_ms=[0-9.]*' "$f" | cut -d= -f2; done | median)
	fo=$(for f in "$T"/kestrel.*; do grep -o 'overhead_kib=[0-9]*' "$f" | cut -d= -f2; done | median)
	echo "QEMU's exit status 1 is the guest's status 0 (isa-debug-exit reports (status << 1) | 1)."
	echo "kestrel at its first KVM_RUN: wall ${fw} ms from exec, ${fc} CPU-ms, ${fo} KiB resident beyond guest RAM (targets: <= 2 CPU-ms, <= 2048 KiB)."
	echo
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

echo "Host: $(nproc) CPUs, $(uname -r), KVM module: $(basename "$(ls -d /sys/module/kvm_* 2>/dev/null | head -1)" 2>/dev/null), QEMU $("$QEMU" --version | head -1 | awk '{print $4}')"
echo
case $what in
startup) startup ;;
exits) exits ;;
all) startup; exits ;;
*) echo "usage: bench/run.sh [startup|exits|all]"; exit 2 ;;
esac

#!/usr/bin/env bash
# End-to-end: kestrel boots a stock Debian kernel (bzImage) plus a busybox
# initramfs as L2, inside the nested test bed (testbed/README.md), in one
# test-bed boot. Checks: kestrel exits 0 after the guest's `reboot -f`, the
# guest's uname -r is the test-bed kernel's, the guest sees 2 CPUs.
#
# Output: one line per check, PASS:/FAIL:/SKIP:; exit 1 if any FAIL.
# Environment:
#   KESTREL           kestrel binary (default: build/kestrel of this repository)
#   E2E_TIMEOUT       seconds for the whole test-bed boot (default 540)
#   E2E_TESTBED_ARGS  extra testbed.sh options, word-split (e.g. "--keep DIR")
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
testbed=$repo/testbed
kestrel=${KESTREL:-$repo/build/kestrel}
case $kestrel in /*) ;; *) kestrel=$PWD/$kestrel ;; esac
timeout=${E2E_TIMEOUT:-540}
# kestrel gets less than the whole boot, so that a hang still leaves time
# for L1 to report.
inner_timeout=$((timeout - 60))
name=boot_linux

failed=0
pass() { echo "PASS: $name/$1"; }
fail() { echo "FAIL: $name/$1: $2"; failed=1; }
skip() { echo "SKIP: $name/$1: $2"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kestrel-e2e.XXXXXX")
trap 'rm -rf "$work"' EXIT
out=$work/testbed.out

console_tail() {
    echo "--- last lines of the test-bed console ---"
    tail -n "${1:-80}" "$out" | sed 's/^/  | /'
    echo "--- end of console ---"
}

# Things outside the project that stop the test bed from running at all.
# shellcheck source=testbed/lib.sh
. "$testbed/lib.sh"
if ! tb_ensure_tools 2>"$work/tools.err"; then
    skip testbed "host tools unavailable: $(tail -n 1 "$work/tools.err")"
    exit 0
fi
if ! "$testbed/fetch.sh" >"$work/fetch.out" 2>"$work/fetch.err"; then
    skip testbed "cannot fetch the test-bed packages: $(tail -n 1 "$work/fetch.err")"
    exit 0
fi
kver=$(sed -n 's/^TB_KVER=//p' "$work/fetch.out")

if [ ! -x "$kestrel" ]; then
    fail kestrel-binary "not found or not executable: $kestrel (build it first)"
    exit 1
fi
pass kestrel-binary

cat >"$work/l2-init" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "KESTREL-E2E uname=$(uname -r)"
echo "KESTREL-E2E cpus=$(grep -c ^processor /proc/cpuinfo)"
reboot -f
EOF

# reboot=k: the guest resets through the i8042, which kestrel turns into
# its exit; earlyprintk shows how far a guest got if it dies early.
cmdline="console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 reboot=k"
start=$(date +%s)
# The L1 command expands $1/$2 itself, hence single quotes.
# shellcheck disable=SC2086,SC2016
"$testbed/testbed.sh" --vmm "$kestrel" --l2-init "$work/l2-init" \
    --timeout "$timeout" ${E2E_TESTBED_ARGS:-} -- \
    sh -c 'timeout "$1" kestrel run --kernel /l2/vmlinuz --initrd /l2/initrd \
               --cpus 2 --memory 512M --cmdline "$2"
           rc=$?
           echo "KESTREL-E2E-L1 kestrel-rc=$rc"
           exit $rc' sh "$inner_timeout" "$cmdline" \
    </dev/null >"$out" 2>&1
tbrc=$?
wall=$(($(date +%s) - start))
echo "# $name: test bed finished with status $tbrc after ${wall} s"

ok=1
case $tbrc in
    124) fail testbed "timed out after ${timeout} s"; ok=0 ;;
    125) fail testbed "L1 ended without reporting a status"; ok=0 ;;
    *) if grep -q '^TESTBED: /dev/kvm ready' "$out"; then
           pass testbed
       else
           fail testbed "no /dev/kvm in L1"; ok=0
       fi ;;
esac

if [ "$ok" = 1 ]; then
    krc=$(sed -n 's/.*KESTREL-E2E-L1 kestrel-rc=\([0-9]*\).*/\1/p' "$out" | tail -n 1)
    case $krc in
        0) pass kestrel-exit-status ;;
        '') fail kestrel-exit-status "no status line from L1" ;;
        143) fail kestrel-exit-status "kestrel still running after ${inner_timeout} s (killed)" ;;
        *) fail kestrel-exit-status "kestrel exited with $krc" ;;
    esac

    uname=$(sed -n 's/.*KESTREL-E2E uname=\([^ ]*\).*/\1/p' "$out" | tail -n 1)
    if [ -z "$uname" ]; then
        fail l2-uname "the guest never printed its uname"
    elif [ "$uname" = "$kver" ]; then
        pass l2-uname
    else
        fail l2-uname "guest says '$uname', expected '$kver'"
    fi

    cpus=$(sed -n 's/.*KESTREL-E2E cpus=\([0-9]*\).*/\1/p' "$out" | tail -n 1)
    if [ -z "$cpus" ]; then
        fail l2-cpus "the guest never printed its CPU count"
    elif [ "$cpus" = 2 ]; then
        pass l2-cpus
    else
        fail l2-cpus "guest sees $cpus CPUs, expected 2"
    fi
fi

[ "$failed" = 0 ] || console_tail 80
exit "$failed"

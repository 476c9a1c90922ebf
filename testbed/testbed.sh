#!/usr/bin/env bash
# The nested test bed: boot a QEMU/TCG guest (L1) that emulates AMD SVM, so
# that it has a real /dev/kvm, with a VMM and an L2 kernel + initramfs in its
# initramfs, and run COMMAND in it. See testbed/README.md.
set -euo pipefail
# shellcheck source=testbed/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
    cat <<USAGE
usage: $0 [options] -- COMMAND [ARGS...]
       $0 --fetch-only

Runs COMMAND (via sh) inside L1, streams L1's serial console to stdout and
exits with COMMAND's status (124: timed out, 125: no status came back).

  --vmm PATH             VMM installed as /usr/bin/kestrel, with its shared
                         libraries (default: build/kestrel of this repository)
  --l2-init FILE         /init of the L2 initramfs /l2/initrd
                         (default: testbed/l2-init-default.sh)
  --l2-add HOST:GUEST    extra file/directory for the L2 initramfs (repeatable)
  --l2-modules A,B       kernel modules for the L2 initramfs (mkinitrd-l2.sh)
  --l2-kernel cloud|generic  L2 kernel /l2/vmlinuz (default cloud, the same as L1)
  --add HOST:L1PATH      extra file/directory for L1 (repeatable)
  --add-bin HOST:L1PATH  extra executable for L1, with its shared libraries
  --l1-modules A,B       more kernel modules to load in L1 (besides kvm_amd)
  --timeout SECS         kill QEMU after SECS (default 600)
  --mem MB               L1 memory (default 2048)
  --smp N                L1 CPUs (default 2)
  --append ARGS          more L1 kernel command-line arguments
  --keep DIR             also copy the L1 console log to DIR/console.log
  --fetch-only           only download/unpack what the test bed needs
  --interactive          connect this terminal to L1's console (and so to
                         COMMAND's stdin); used by `make run`

Environment: KESTREL_CACHE (cache root, default ~/.cache/kestrel),
KESTREL_TESTBED_QEMU (default qemu-system-x86_64).
USAGE
}

repo=$TB_REPO_ROOT
vmm=$repo/build/kestrel
l2_init=$TB_LIB_DIR/l2-init-default.sh
l2_kernel=cloud l2_modules='' l1_modules='' timeout=600 mem=2048 smp=2 append='' keep=''
fetch_only=0
interactive=0
l2_add=() l1_add=() l1_bin=()
need() { [ "$2" -ge 2 ] || tb_die "$1 needs a value"; }
while [ $# -gt 0 ]; do
    case $1 in
        --vmm) need "$1" $#; vmm=$2; shift 2 ;;
        --l2-init) need "$1" $#; l2_init=$2; shift 2 ;;
        --l2-add) need "$1" $#; l2_add+=("$2"); shift 2 ;;
        --l2-modules) need "$1" $#; l2_modules=$2; shift 2 ;;
        --l2-kernel) need "$1" $#; l2_kernel=$2; shift 2 ;;
        --add) need "$1" $#; l1_add+=("$2"); shift 2 ;;
        --add-bin) need "$1" $#; l1_bin+=("$2"); shift 2 ;;
        --l1-modules) need "$1" $#; l1_modules=$2; shift 2 ;;
        --timeout) need "$1" $#; timeout=$2; shift 2 ;;
        --mem) need "$1" $#; mem=$2; shift 2 ;;
        --smp) need "$1" $#; smp=$2; shift 2 ;;
        --append) need "$1" $#; append=$2; shift 2 ;;
        --keep) need "$1" $#; keep=$2; shift 2 ;;
        --fetch-only) fetch_only=1; shift ;;
        --interactive) interactive=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) usage >&2; tb_die "unknown argument '$1' (the command goes after --)" ;;
    esac
done
case $timeout$mem$smp in *[!0-9]*) tb_die "--timeout, --mem and --smp take numbers" ;; esac

qemu=${KESTREL_TESTBED_QEMU:-qemu-system-x86_64}

if [ "$fetch_only" = 1 ]; then
    tb_fetch_kernel cloud
    printf 'kernel %s\nvmlinuz %s\nmodules %s\n' "$TB_KVER" "$TB_VMLINUZ" "$TB_MODDIR"
    if [ "$l2_kernel" != cloud ]; then
        tb_fetch_kernel "$l2_kernel"
        printf 'l2 kernel %s\nl2 vmlinuz %s\n' "$TB_KVER" "$TB_VMLINUZ"
    fi
    printf 'busybox %s\n' "$(tb_busybox)"
    exit 0
fi

[ $# -ge 1 ] || { usage >&2; tb_die "no COMMAND given"; }
tb_ensure_tools || tb_die "the test bed needs $qemu and cpio (Debian: apt-get install qemu-system-x86 cpio)"
[ -f "$vmm" ] || tb_die "VMM binary not found: $vmm (build it, or pass --vmm)"
[ -f "$l2_init" ] || tb_die "no such L2 init: $l2_init"

start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/kestrel-testbed.XXXXXX")
qpid=''
# shellcheck disable=SC2317  # called from the trap
cleanup() {
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
        kill "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- L1 initramfs ----------------------------------------------------------
if [ "$l2_kernel" != cloud ]; then
    tb_fetch_kernel "$l2_kernel"
    l2_vmlinuz=$TB_VMLINUZ
fi
tb_fetch_kernel cloud
l1_vmlinuz=$TB_VMLINUZ
[ "$l2_kernel" = cloud ] && l2_vmlinuz=$TB_VMLINUZ

root=$work/l1
mkdir -p "$root"/{proc,sys,dev,tmp,run,root,etc,mnt,l2,testbed}
tb_install_busybox "$root"
# shellcheck disable=SC2086
tb_install_modules "$TB_MODDIR" "$TB_KVER" "$root" kvm_amd ${l1_modules//,/ }
tb_install_binary "$root" "$vmm" /usr/bin/kestrel
# kestrel dlopen()s libslirp (user-mode networking), libmicrohttpd (--api-sock),
# libcurl (the pause/resume/snapshot client commands), libcjson (the API and
# --config-file) and libcrypto (snapshot memory file digests): bring each, with
# its libraries, where the host has it.
# (awk reads everything: an early exit would SIGPIPE ldconfig, fatal under pipefail)
for soname in libslirp.so.0 libmicrohttpd.so.12 libcurl.so.4 libcjson.so.1 libcrypto.so.3; do
    dl_lib=$(ldconfig -p 2>/dev/null | awk -v n="$soname" '$1 == n && !found {print $NF; found = 1}')
    if [ -n "$dl_lib" ]; then tb_install_binary "$root" "$dl_lib" "$dl_lib"; fi
done
cp "$l2_vmlinuz" "$root/l2/vmlinuz"

l2args=(--kernel "$l2_kernel")
[ -n "$l2_modules" ] && l2args+=(--modules "$l2_modules")
"$TB_LIB_DIR/mkinitrd-l2.sh" "${l2args[@]}" "$root/l2/initrd" "$l2_init" "${l2_add[@]}"

for spec in "${l1_add[@]}"; do
    tb_add_path "$root" "$spec"
done
for spec in "${l1_bin[@]}"; do
    [ "${spec#*:}" != "$spec" ] || tb_die "expected HOSTPATH:L1PATH, got '$spec'"
    tb_install_binary "$root" "${spec%%:*}" "/${spec#*:}"
done
install -m 0755 "$TB_LIB_DIR/l1-init.sh" "$root/init"
[ "$interactive" = 1 ] && : >"$root/testbed/interactive"

# The command, each argument single-quoted for a POSIX shell.
{
    printf '# generated by testbed.sh\n'
    for a in "$@"; do
        printf "'%s' " "${a//\'/\'\\\'\'}"
    done
    printf '\n'
} >"$root/testbed/cmd.sh"

# Uncompressed: under TCG, L1 would spend seconds gunzipping it.
tb_cpio "$root" "$work/l1.cpio" none
tb_log "L1 initramfs $(( $(stat -c %s "$work/l1.cpio") / 1024 / 1024 )) MiB built in $(( $(date +%s) - start )) s; booting L1 (kernel $TB_KVER, timeout ${timeout} s)"

# --- run -------------------------------------------------------------------
if [ "$interactive" = 1 ]; then
    # The terminal is L1's serial console: what is typed reaches COMMAND.
    qrc=0
    timeout --foreground --kill-after=10 "$timeout" "$qemu" \
        -accel tcg,thread=multi -cpu EPYC,+svm,+npt -M q35 -m "$mem" -smp "$smp" \
        -nodefaults -display none -no-reboot -serial stdio \
        -kernel "$l1_vmlinuz" -initrd "$work/l1.cpio" \
        -append "console=ttyS0 quiet panic=-1 $append" \
        2> >(grep --line-buffered -v "TCG doesn't support requested feature" >&2) || qrc=$?
    exit "$qrc"
fi
log=$work/console.log
: >"$log"
timeout --kill-after=10 "$timeout" "$qemu" \
    -accel tcg,thread=multi -cpu EPYC,+svm,+npt -M q35 -m "$mem" -smp "$smp" \
    -nodefaults -display none -no-reboot \
    -serial "file:$log" \
    -kernel "$l1_vmlinuz" -initrd "$work/l1.cpio" \
    -append "console=ttyS0 quiet panic=-1 $append" \
    </dev/null >"$work/qemu.out" 2>&1 &
qpid=$!
# Stream the console while QEMU runs, then once more after it is gone, from
# the last offset copied: every byte of the log reaches stdout. (tail -F
# --pid decides on its own when its last read was; callers parse stdout,
# and a test's last lines must not depend on that race.)
copied=0
tb_copy_new() {
    local size
    size=$(stat -c %s "$log" 2>/dev/null) || return 0
    [ "$size" -gt "$copied" ] || return 0
    tail -c +"$((copied + 1))" "$log" | head -c "$((size - copied))" | tr -d '\r'
    copied=$size
}
while kill -0 "$qpid" 2>/dev/null; do
    tb_copy_new
    sleep 0.5
done
tb_copy_new
qrc=0
wait "$qpid" || qrc=$?
qpid=

# QEMU's own messages, minus the expected "TCG doesn't support requested
# feature" warnings for the EPYC model.
grep -v -e "TCG doesn't support requested feature" "$work/qemu.out" >&2 || true

if [ -n "$keep" ]; then
    mkdir -p "$keep" && sed 's/\r//g' "$log" >"$keep/console.log"
fi

elapsed=$(( $(date +%s) - start ))
status=$(sed 's/\r//g' "$log" | sed -n 's/^TESTBED-STATUS: \([0-9][0-9]*\)$/\1/p' | tail -n 1)
if [ -n "$status" ]; then
    tb_log "COMMAND exited with status $status (wall ${elapsed} s)"
    exit "$status"
fi
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    tb_log "timed out after ${timeout} s (wall ${elapsed} s); QEMU killed"
    # L1 silent from "/dev/kvm ready" to the end: not one line from COMMAND,
    # whose own time limits (l1-run-kestrel's watchdog) print long before
    # this one. L1's kernel stopped scheduling at all, which a process in it
    # cannot cause: the signature tests/run.sh re-runs once (testbed/README.md).
    if sed 's/\r//g' "$log" | awk '/^TESTBED: \/dev\/kvm ready/ { ready = 1; after = 0; next }
            ready && NF { after++ } END { exit !(ready && after == 0) }'; then
        tb_log "L1 wedged: no output from L1 after /dev/kvm ready until the timeout"
    fi
    exit 124
fi
tb_log "no TESTBED-STATUS line came back (QEMU exit status $qrc, wall ${elapsed} s)"
exit 125

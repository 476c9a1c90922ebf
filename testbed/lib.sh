# shellcheck shell=bash
# Shared helpers for the nested test bed (sourced by testbed.sh, fetch.sh,
# mkinitrd-l2.sh and the e2e tests). See testbed/README.md for the why.
#
# Everything comes from Debian packages, fetched with `apt-get download` and
# unpacked with `dpkg -x` into a cache outside the source tree:
#   ${KESTREL_CACHE:-$HOME/.cache/kestrel}/testbed/
#     debs/                 downloaded .deb files (moved in only when complete)
#     x/<deb name>/         unpacked package (renamed into place only when complete)
#     cloud.pkg, generic.pkg  the versioned kernel package each meta package
#                           resolved to on the first fetch, so that later runs
#                           use the cache even after the archive moved on
#                           (KESTREL_TESTBED_REFRESH=1 resolves again).
#
# After tb_fetch_kernel cloud|generic these are set:
#   TB_KVER     kernel release (uname -r of that kernel)
#   TB_VMLINUZ  the bzImage
#   TB_MODDIR   .../lib/modules/$TB_KVER

TB_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034  # used by the scripts that source this
TB_REPO_ROOT=$(cd "$TB_LIB_DIR/.." && pwd)

tb_log() { printf 'testbed: %s\n' "$*" >&2; }
tb_die() { printf 'testbed: error: %s\n' "$*" >&2; exit 1; }

tb_cache_dir() {
    printf '%s/testbed\n' "${KESTREL_CACHE:-${HOME:-/tmp}/.cache/kestrel}"
}

# Serialise cache updates between concurrent runs. The lock is held on fd 9
# until the calling (sub)shell exits or tb_unlock is called.
tb_lock() {
    local c
    c=$(tb_cache_dir)
    mkdir -p "$c/debs" "$c/x" || tb_die "cannot create cache directory $c"
    exec 9>"$c/.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 9 || tb_die "cannot lock $c/.lock"
    fi
}
tb_unlock() { exec 9>&-; }

# apt-get download PKG into DIR; on failure (unknown package, stale lists)
# run `apt-get update` once and retry.
tb_apt_download() {
    local pkg=$1 dir=$2 aptopts=()
    command -v apt-get >/dev/null 2>&1 ||
        tb_die "apt-get not found: the test bed needs Debian's package tools"
    # As root, apt drops privileges to _apt, which cannot write to our
    # private temp dir and then warns; there is nothing to protect here.
    [ "$(id -u)" = 0 ] && aptopts=(-o APT::Sandbox::User=root)
    tb_log "downloading $pkg"
    if (cd "$dir" && apt-get "${aptopts[@]}" -q download "$pkg" >&2); then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        tb_die "apt-get download $pkg failed (and apt-get update needs root)"
    fi
    tb_log "apt-get download $pkg failed; running apt-get update and retrying"
    apt-get -q update >&2 || tb_die "apt-get update failed"
    (cd "$dir" && apt-get "${aptopts[@]}" -q download "$pkg" >&2) ||
        tb_die "apt-get download $pkg failed"
}

# Print the path of a cached .deb for PKG, downloading it if needed.
tb_fetch_deb() {
    local pkg=$1 c deb tmp
    c=$(tb_cache_dir)
    deb=$(ls -1 "$c/debs/${pkg}_"*.deb 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$deb" ]; then
        tmp=$(mktemp -d "$c/debs/.dl.XXXXXX")
        tb_apt_download "$pkg" "$tmp"
        deb=$(ls -1 "$tmp/${pkg}_"*.deb 2>/dev/null | head -n 1 || true)
        [ -n "$deb" ] || { rm -rf "$tmp"; tb_die "apt-get download $pkg produced no .deb"; }
        mv -f "$deb" "$c/debs/" || { rm -rf "$tmp"; tb_die "cannot store $deb"; }
        rm -rf "$tmp"
        deb=$c/debs/$(basename "$deb")
    fi
    printf '%s\n' "$deb"
}

# Print the directory PKG is unpacked in, downloading/unpacking if needed.
# A cached .deb that does not unpack (truncated by hand, disk full) is
# dropped and downloaded once more.
tb_fetch_pkg() {
    local pkg=$1 c deb dest tmp try
    c=$(tb_cache_dir)
    # Leftovers of runs that were killed half way.
    rm -rf "$c/debs/.dl."* "$c/x/.unpack."* 2>/dev/null || true
    for try in 1 2; do
        deb=$(tb_fetch_deb "$pkg") || exit 1
        dest=$c/x/$(basename "$deb" .deb)
        [ -d "$dest" ] && break
        tb_log "unpacking $(basename "$deb")"
        tmp=$(mktemp -d "$c/x/.unpack.XXXXXX")
        if dpkg -x "$deb" "$tmp"; then
            mv "$tmp" "$dest" || { rm -rf "$tmp"; tb_die "cannot store $dest"; }
            break
        fi
        rm -rf "$tmp" "$deb"
        [ "$try" = 1 ] || tb_die "cannot unpack $deb"
        tb_log "dpkg -x $(basename "$deb") failed; downloading it again"
    done
    printf '%s\n' "$dest"
}

# Map a meta package (linux-image-cloud-amd64) to the versioned package it
# depends on (linux-image-6.1.0-NN-cloud-amd64); remembered in the cache.
tb_resolve_kernel_pkg() {
    local flavour=$1 meta memo pkg
    case $flavour in
        cloud) meta=linux-image-cloud-amd64 ;;
        generic) meta=linux-image-amd64 ;;
        *) tb_die "unknown kernel flavour '$flavour' (cloud|generic)" ;;
    esac
    memo=$(tb_cache_dir)/$flavour.pkg
    if [ -s "$memo" ] && [ "${KESTREL_TESTBED_REFRESH:-0}" != 1 ]; then
        cat "$memo"
        return
    fi
    pkg=$(apt-cache depends "$meta" 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
    if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
        tb_log "apt-cache does not know $meta; running apt-get update"
        apt-get -q update >&2 || tb_die "apt-get update failed"
        pkg=$(apt-cache depends "$meta" 2>/dev/null |
            sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
    fi
    [ -n "$pkg" ] || tb_die "cannot resolve $meta to a versioned kernel package"
    printf '%s\n' "$pkg" >"$memo"
    printf '%s\n' "$pkg"
}

# tb_fetch_kernel cloud|generic: sets TB_KVER, TB_VMLINUZ, TB_MODDIR.
# KESTREL_TESTBED_KERNEL_PKG overrides the cloud package name.
tb_fetch_kernel() {
    local flavour=${1:-cloud} pkg root
    tb_lock
    if [ "$flavour" = cloud ] && [ -n "${KESTREL_TESTBED_KERNEL_PKG:-}" ]; then
        pkg=$KESTREL_TESTBED_KERNEL_PKG
    else
        pkg=$(tb_resolve_kernel_pkg "$flavour") || exit 1
    fi
    root=$(tb_fetch_pkg "$pkg") || exit 1
    tb_unlock
    TB_VMLINUZ=$(ls -1 "$root"/boot/vmlinuz-* 2>/dev/null | head -n 1 || true)
    [ -n "$TB_VMLINUZ" ] || tb_die "no vmlinuz in $root/boot"
    TB_KVER=${TB_VMLINUZ##*/vmlinuz-}
    TB_MODDIR=$root/lib/modules/$TB_KVER
    [ -d "$TB_MODDIR" ] || tb_die "no module directory $TB_MODDIR"
}

# The generic kernel's e1000.ko (the cloud kernel has no e1000). It only
# loads into the generic kernel (vermagic), so a test that wants an e1000
# in L2 boots $TB_VMLINUZ of `tb_fetch_kernel generic` as L2 (testbed.sh
# --l2-kernel generic; mkinitrd-l2.sh --kernel generic --modules e1000).
# Sets TB_E1000 (plus everything tb_fetch_kernel sets).
tb_fetch_e1000() {
    tb_fetch_kernel generic
    TB_E1000=$(tb_find_module "$TB_MODDIR" e1000) || exit 1
    [ -n "$TB_E1000" ] || tb_die "no e1000 module in $TB_MODDIR"
}

# Print the path of a statically linked busybox: the host's busybox-static
# if installed, otherwise the busybox-static package from the cache.
tb_busybox() {
    local b dir
    for b in /bin/busybox /usr/bin/busybox; do
        if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then
            printf '%s\n' "$b"
            return
        fi
    done
    tb_lock
    dir=$(tb_fetch_pkg busybox-static) || exit 1
    tb_unlock
    [ -x "$dir/bin/busybox" ] || tb_die "no bin/busybox in $dir"
    printf '%s\n' "$dir/bin/busybox"
}

# tb_ensure_tools: make sure the host tools the test bed runs are present.
# Missing ones are installed with apt-get when running as root (unless
# KESTREL_TESTBED_INSTALL=0); returns non-zero, with a message, if that is
# not possible.
tb_ensure_tools() {
    local qemu=${KESTREL_TESTBED_QEMU:-qemu-system-x86_64} missing=() t
    command -v "$qemu" >/dev/null 2>&1 || missing+=(qemu-system-x86)
    for t in cpio gzip timeout tail sed; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || [ "${KESTREL_TESTBED_INSTALL:-1}" = 0 ] ||
        ! command -v apt-get >/dev/null 2>&1; then
        tb_log "missing host packages: ${missing[*]} (apt-get install them)"
        return 1
    fi
    tb_log "installing ${missing[*]} with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends \
        "${missing[@]}" >&2; then
        if ! { apt-get -q update >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends \
                "${missing[@]}" >&2; }; then
            tb_log "cannot install ${missing[*]}"
            return 1
        fi
    fi
    command -v "$qemu" >/dev/null 2>&1 || { tb_log "$qemu still missing"; return 1; }
}

# --- kernel modules --------------------------------------------------------

tb_modname() {  # path or name -> canonical module name (dashes as underscores)
    local n=${1##*/}
    n=${n%.xz}; n=${n%.zst}; n=${n%.gz}; n=${n%.ko}
    printf '%s\n' "${n//-/_}"
}

tb_ko_cat() {  # decompressed contents of a module file
    case $1 in
        *.ko.xz) xz -dc "$1" ;;
        *.ko.zst) zstd -q -dc "$1" ;;
        *.ko.gz) gzip -dc "$1" ;;
        *) cat "$1" ;;
    esac
}

# Path (absolute) of module NAME under MODDIR, or nothing.
tb_find_module() {
    local moddir=$1 n
    n=$(tb_modname "$2")
    find "$moddir/kernel" -type f \( -name "$n.ko*" -o -name "${n//_/-}.ko*" \) |
        head -n 1
}

# Dependencies of a module file, read from its .modinfo section.
tb_module_deps() {
    tb_ko_cat "$1" | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' '
}

# tb_module_closure MODDIR NAME...: print module paths relative to MODDIR,
# dependencies before the modules that need them, each once.
tb_module_closure() {
    local moddir=$1 f n
    shift
    declare -A _tb_index=() _tb_seen=()
    while IFS= read -r f; do
        n=${f##*/}; n=${n%.xz}; n=${n%.zst}; n=${n%.gz}; n=${n%.ko}
        _tb_index[${n//-/_}]=${f#"$moddir"/}
    done < <(find "$moddir/kernel" -name '*.ko*' -type f)
    _tb_visit() {
        local name dep
        name=$(tb_modname "$1")
        [ -n "${_tb_seen[$name]:-}" ] && return 0
        _tb_seen[$name]=1
        [ -n "${_tb_index[$name]:-}" ] || {
            # Built into the kernel: nothing to load.
            if grep -q "/$1.ko\$\|/${1//_/-}.ko\$" "$moddir/modules.builtin" 2>/dev/null; then
                return 0
            fi
            tb_die "module '$1' not found in $moddir"
        }
        for dep in $(tb_module_deps "$moddir/${_tb_index[$name]}"); do
            _tb_visit "$dep"
        done
        printf '%s\n' "${_tb_index[$name]}"
    }
    for n in "$@"; do
        _tb_visit "$n"
    done
}

# tb_install_modules MODDIR KVER DESTROOT NAME...: copy the modules and their
# dependencies (decompressed) to DESTROOT/lib/modules/KVER/, write a
# modules.dep that busybox modprobe understands, and a load-order list
# (modules.testbed, dependencies first) that an init can insmod in order.
tb_install_modules() {
    local moddir=$1 kver=$2 dest=$3 rel out dep deps closure load m
    shift 3
    local base=$dest/lib/modules/$kver
    declare -A _tb_out=() _tb_load=()
    mkdir -p "$base"
    closure=$(tb_module_closure "$moddir" "$@") || exit 1
    : >"$base/modules.dep"
    : >"$base/modules.testbed"
    while IFS= read -r rel; do
        [ -n "$rel" ] || continue
        out=${rel%.xz}; out=${out%.zst}; out=${out%.gz}
        _tb_out[$(tb_modname "$rel")]=$out
        mkdir -p "$base/$(dirname "$out")"
        tb_ko_cat "$moddir/$rel" >"$base/$out"
        # Transitive dependencies in load order; dependencies come first in
        # the closure, so theirs are already known.
        load=
        for dep in $(tb_module_deps "$moddir/$rel"); do
            dep=$(tb_modname "$dep")
            [ -n "${_tb_out[$dep]:-}" ] || continue
            for m in ${_tb_load[$dep]} ${_tb_out[$dep]}; do
                case " $load " in *" $m "*) ;; *) load="$load $m" ;; esac
            done
        done
        _tb_load[$(tb_modname "$rel")]=$load
        # modules.dep lists them the way depmod does: reverse load order.
        deps=
        for m in $load; do deps=" $m$deps"; done
        printf '%s:%s\n' "$out" "$deps" >>"$base/modules.dep"
        printf '%s\n' "$out" >>"$base/modules.testbed"
    done <<<"$closure"
    cp "$moddir/modules.builtin" "$moddir/modules.order" "$base/" 2>/dev/null || true
}

# --- initramfs pieces ------------------------------------------------------

# tb_install_busybox DESTROOT: busybox plus one symlink per applet.
tb_install_busybox() {
    local dest=$1 bb a
    bb=$(tb_busybox) || exit 1
    mkdir -p "$dest/bin" "$dest/sbin" "$dest/usr/bin" "$dest/usr/sbin"
    cp "$bb" "$dest/bin/busybox"
    while IFS= read -r a; do
        [ "$a" = bin/busybox ] && continue
        mkdir -p "$dest/$(dirname "$a")"
        ln -sf /bin/busybox "$dest/$a"
    done < <("$bb" --list-full)
    [ -e "$dest/bin/sh" ] || ln -sf busybox "$dest/bin/sh"
}

# tb_install_binary DESTROOT HOSTPATH GUESTPATH: copy an executable and the
# shared libraries (and loader) it needs, at the paths ldd reports.
tb_install_binary() {
    local dest=$1 src=$2 gpath=$3 line lib
    [ -f "$src" ] || tb_die "no such file: $src"
    mkdir -p "$dest/$(dirname "$gpath")"
    cp -L "$src" "$dest/$gpath"
    chmod 0755 "$dest/$gpath"
    ldd "$src" >/dev/null 2>&1 || return 0    # static, or not ELF
    while IFS= read -r line; do
        line=${line#"${line%%[![:space:]]*}"}
        case $line in
            *"=> not found"*) tb_die "$src needs a library the host lacks: $line" ;;
            *"=> /"*) lib=${line#*=> }; lib=${lib%% (*} ;;
            /*) lib=${line%% (*} ;;               # the loader
            *) continue ;;                         # vdso
        esac
        lib=${lib//[[:space:]]/}
        [ -e "$dest/$lib" ] && continue
        mkdir -p "$dest/$(dirname "$lib")"
        cp -L "$lib" "$dest/$lib"
    done < <(ldd "$src")
}

# tb_add_path DESTROOT HOSTPATH:GUESTPATH: copy a file or directory tree.
tb_add_path() {
    local dest=$1 spec=$2 src dst
    src=${spec%%:*}
    dst=${spec#*:}
    if [ "$src" = "$spec" ] || [ -z "$dst" ]; then
        tb_die "expected HOSTPATH:GUESTPATH, got '$spec'"
    fi
    [ -e "$src" ] || tb_die "no such file: $src"
    case $dst in /*) ;; *) dst=/$dst ;; esac
    mkdir -p "$dest/$(dirname "$dst")"
    if [ -d "$src" ]; then
        rm -rf "${dest:?}$dst"
        cp -rL "$src" "$dest$dst"
    else
        cp -L "$src" "$dest$dst"
    fi
}

# One newc cpio header (110 bytes) plus name, padded to 4 bytes.
# Args: name mode(octal) rdevmajor rdevminor
_tb_cpio_entry() {
    local name=$1 mode=$((8#$2)) ns=$((${#1} + 1)) pad
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        0 "$mode" 0 0 1 0 0 0 0 "$3" "$4" "$ns" 0
    printf '%s\0' "$name"
    pad=$(( (4 - (110 + ns) % 4) % 4 ))
    head -c "$pad" /dev/zero
}

# tb_cpio DIR OUT [gzip|none]: pack DIR as a newc initramfs owned by root.
# /dev/console is written into the archive by hand: the kernel opens it for
# init's stdin/stdout before init runs, and creating the node in DIR would
# need root.
tb_cpio() {
    local dir=$1 out=$2 comp=${3:-gzip}
    {
        _tb_cpio_entry dev 040755 0 0
        _tb_cpio_entry dev/console 020600 5 1
        (cd "$dir" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
            cpio --quiet -o -H newc -R 0:0)
    } | case $comp in
        gzip) gzip -1 -n ;;
        none) cat ;;
        *) tb_die "unknown compression $comp" ;;
    esac >"$out" || tb_die "cannot write $out"
}

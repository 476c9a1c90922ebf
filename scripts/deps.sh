#!/usr/bin/env bash
# Install what kestrel needs to build and test, from Debian packages, only
# where it is missing. Used by `make run` / `make test` and CI.
set -euo pipefail

# Build: compiler, Meson/Ninja, libraries (libcjson, libmicrohttpd, libcurl and
# libssl-dev's libcrypto: headers to build, the libraries are dlopen()ed when
# JSON, the API server, the client or a snapshot memory digest is first
# needed). Test:
# cmocka, clang + libFuzzer, QEMU (test bed and benchmark peer), busybox and
# cpio (initramfs images), curl (API tests), qemu-system-common for
# qemu-storage-daemon (the vhost-user-blk back-end of tests/kvm/test_vhost_user.sh),
# dpdk-dev for dpdk-testpmd (the vhost-user-net back-end of tests/kvm/test_vhost_user_net.sh;
# Debian 12's package dpdk has only the runtime scripts).
PKGS=(
	gcc make meson ninja-build pkg-config python3
	libcmocka-dev liburing-dev libslirp-dev libglib2.0-dev
	libcjson-dev libmicrohttpd-dev libcurl4-openssl-dev curl libssl-dev
	clang libclang-rt-14-dev
	qemu-system-x86 qemu-system-common qemu-utils busybox-static cpio
	xz-utils zstd kmod e2fsprogs strace dpdk-dev
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

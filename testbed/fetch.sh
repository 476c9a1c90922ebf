#!/usr/bin/env bash
# Download (once) and unpack the Debian packages the test bed uses, into
# ${KESTREL_CACHE:-~/.cache/kestrel}/testbed, and print where they are as
# shell assignments (eval-able).
#   fetch.sh            the cloud kernel (L1, and L2 by default) + busybox
#   fetch.sh --e1000    also the generic kernel (linux-image-amd64) and its
#                       e1000.ko, for L2 guests that need an e1000 driver
set -euo pipefail
# shellcheck source=testbed/lib.sh
. "$(dirname "$0")/lib.sh"

e1000=0
for a in "$@"; do
    case $a in
        --e1000) e1000=1 ;;
        -h|--help) sed -n '2,8s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) tb_die "unknown argument '$a' (try --help)" ;;
    esac
done

tb_fetch_kernel cloud
printf 'TB_CACHE=%q\n' "$(tb_cache_dir)"
printf 'TB_KVER=%q\nTB_VMLINUZ=%q\nTB_MODDIR=%q\n' "$TB_KVER" "$TB_VMLINUZ" "$TB_MODDIR"
printf 'TB_BUSYBOX=%q\n' "$(tb_busybox)"
if [ "$e1000" = 1 ]; then
    tb_fetch_e1000
    printf 'TB_GENERIC_KVER=%q\nTB_GENERIC_VMLINUZ=%q\nTB_GENERIC_MODDIR=%q\nTB_E1000=%q\n' \
        "$TB_KVER" "$TB_VMLINUZ" "$TB_MODDIR" "$TB_E1000"
fi

#!/usr/bin/env bash
# Installs the real tools the test suite drives (the tests use real NBD clients, QEMU, Chromium
# and a real terminal, never stand-ins), from Debian's packages. Idempotent and quick when everything is already there. Needs root to install;
# on a machine where the tools are already present it installs nothing.
set -euo pipefail
need=()
check() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
check script bsdutils  # a real pseudo-terminal for the CLI's password prompt
check nbdinfo libnbd-bin
check nbdsh libnbd-bin
check nbdkit nbdkit
check qemu-nbd qemu-utils
check qemu-img qemu-utils
check fio fio
check qemu-system-x86_64 qemu-system-x86
check busybox busybox-static
check nbd-client nbd-client
check chromium chromium
check mcopy mtools
check mkfs.vfat dosfstools
check sfdisk fdisk
check openssl openssl      # certificates for the NBD TLS tests
check runuser util-linux   # the NBD socket tests connect as user nobody
check mkfs.xfs xfsprogs    # reflinked model imports, and sparse-image hashing on xfs (loop mounts)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)  # the model-URL tests serve images over HTTP(S) Range
check mosquitto mosquitto                # the fleet tests' MQTT broker (started by each test on a loopback port)
check mosquitto_passwd mosquitto
check mosquitto_pub mosquitto-clients    # the fleet tests publish as other broker accounts
check mosquitto_sub mosquitto-clients
check mkfs.btrfs btrfs-progs
/usr/bin/python3 -c 'import nbd' 2>/dev/null || need+=(python3-libnbd)  # Debian's python3: nbdsh's module lives there
[ -e /usr/lib/syslinux/mbr/mbr.bin ] || need+=(syslinux-common)
[ -e /usr/lib/syslinux/modules/bios/ldlinux.c32 ] || need+=(syslinux-common)
command -v syslinux >/dev/null 2>&1 || need+=(syslinux)
[ -e /usr/share/qemu/qboot.rom ] || need+=(qemu-system-x86)
# The appliance-image test boots this machine's systemd as PID 1 in its QEMU guest.
[ -x /lib/systemd/systemd ] || need+=(systemd)
check systemctl systemd
check journalctl systemd
if [ ${#need[@]} -gt 0 ]; then
  mapfile -t uniq < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "installing test tools: ${uniq[*]}"
  if [ "$(id -u)" != 0 ]; then echo "run as root, or install: ${uniq[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${uniq[@]}" >/dev/null
fi
[ -d node_modules ] || npm ci --no-audit --no-fund

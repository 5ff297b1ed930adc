#!/bin/bash -e
# The Snapback daemon, its systemd unit, the USB device-mode overlay and the kernel modules.
# Build the project first (in the repository: npm ci && npm run build); this copies the build.

SNAPBACK_SRC="${SNAPBACK_SRC:-$(cd "${STAGE_DIR}/../.." && pwd)}"
if [ ! -f "${SNAPBACK_SRC}/dist/appliance/cli/main.js" ]; then
	echo "snapback: ${SNAPBACK_SRC}/dist is missing: run 'npm ci && npm run build' in the repository first" >&2
	exit 1
fi

APP="${ROOTFS_DIR}/opt/snapback"
rm -rf "${APP}"
install -d "${APP}"
# The build without its tests, benchmarks and source maps, and the native I/O addon's source
# (npm ci in 01-run-chroot.sh builds it for the image's architecture).
set -o pipefail
tar -C "${SNAPBACK_SRC}" --exclude=dist/test --exclude=dist/bench --exclude='*.map' \
	-cf - dist gadget-config package.json package-lock.json appliance/native/binding.gyp appliance/native/snapback-io.c | tar -C "${APP}" -xf -

install -D -m 755 files/snapback "${ROOTFS_DIR}/usr/local/bin/snapback"
install -D -m 644 files/snapback.service "${ROOTFS_DIR}/etc/systemd/system/snapback.service"
install -D -m 644 files/snapback-modules.conf "${ROOTFS_DIR}/etc/modules-load.d/snapback.conf"
install -d -m 700 "${ROOTFS_DIR}/var/lib/snapback"

# USB device mode on the Pi's OTG port (Pi Zero's USB port, Pi 4's and Pi 5's USB-C).
CONFIG_TXT="${ROOTFS_DIR}/boot/firmware/config.txt"
[ -f "${CONFIG_TXT}" ] || CONFIG_TXT="${ROOTFS_DIR}/boot/config.txt"
if ! grep -q '^dtoverlay=dwc2,dr_mode=peripheral' "${CONFIG_TXT}"; then
	sed -i '/^dtoverlay=dwc2/d' "${CONFIG_TXT}"
	printf '\n[all]\n# Snapback: the OTG port is a USB device (the host sees a USB drive)\ndtoverlay=dwc2,dr_mode=peripheral\n' >> "${CONFIG_TXT}"
fi

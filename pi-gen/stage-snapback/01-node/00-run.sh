#!/bin/bash -e
# Node.js 20 (the daemon needs >= 20.19; Raspberry Pi OS bookworm ships 18): the official
# binary tarball for the image's architecture, checked against nodejs.org's SHASUMS256.txt,
# unpacked into /usr/local. SNAPBACK_NODE_VERSION (e.g. v20.19.5) pins a version; by default
# the newest v20.x is taken.

case "${ARCH:-$(chroot "${ROOTFS_DIR}" dpkg --print-architecture)}" in
	arm64) NODE_ARCH=arm64 ;;
	armhf) NODE_ARCH=armv7l ;;
	*) echo "snapback: unsupported architecture ${ARCH}" >&2; exit 1 ;;
esac

if [ -n "${SNAPBACK_NODE_VERSION}" ]; then
	BASE="https://nodejs.org/dist/${SNAPBACK_NODE_VERSION}"
else
	BASE="https://nodejs.org/dist/latest-v20.x"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
curl -fsSL "${BASE}/SHASUMS256.txt" -o "${WORK}/SHASUMS256.txt"
TARBALL="$(awk -v a="linux-${NODE_ARCH}.tar.xz" '$2 ~ a"$" { print $2; exit }' "${WORK}/SHASUMS256.txt")"
if [ -z "${TARBALL}" ]; then
	echo "snapback: no linux-${NODE_ARCH} Node.js tarball listed in ${BASE}/SHASUMS256.txt" >&2
	exit 1
fi
curl -fsSL "${BASE}/${TARBALL}" -o "${WORK}/${TARBALL}"
(cd "${WORK}" && grep " ${TARBALL}\$" SHASUMS256.txt | sha256sum -c -)

tar -xJf "${WORK}/${TARBALL}" -C "${ROOTFS_DIR}/usr/local" --strip-components=1 \
	--exclude='*/CHANGELOG.md' --exclude='*/README.md' --exclude='*/LICENSE' --exclude='*/include'
on_chroot <<CHROOT
/usr/local/bin/node --version
CHROOT

#!/bin/bash -e
# Node.js >= 20.19 (package.json's engines), two ways:
#  - the distribution's `nodejs` (and `npm`) packages when they are new enough: Raspberry Pi OS
#    trixie ships Node 20.19; installed with apt like every other package (updates included);
#  - otherwise (bookworm ships Node 18) the official binary tarball from nodejs.org for the
#    image's architecture, checked against nodejs.org's SHASUMS256.txt, unpacked into
#    /usr/local. SNAPBACK_NODE_VERSION (e.g. v20.19.5) forces this download of that version;
#    by default the newest v20.x is taken.
# /usr/local/bin/snapback runs /usr/local/bin/node when it exists, else /usr/bin/node.

# The same as package.json's engines (test/unit/pi-gen-node.test.ts checks that they agree).
NODE_MIN_VERSION=20.19

CANDIDATE="$(chroot "${ROOTFS_DIR}" apt-cache policy nodejs | awk '/Candidate:/ { print $2; exit }')"
if [ "$("$(dirname "$0")/node-source.sh" "${CANDIDATE}" "${NODE_MIN_VERSION}")" = distribution ]; then
	echo "snapback: the distribution's nodejs ${CANDIDATE} is new enough (>= ${NODE_MIN_VERSION}): installing it"
	on_chroot <<CHROOT
apt-get install -y --no-install-recommends nodejs npm
node --version
CHROOT
	exit 0
fi
echo "snapback: downloading Node.js from nodejs.org (the distribution's nodejs: ${CANDIDATE:-none}; needed: >= ${NODE_MIN_VERSION}${SNAPBACK_NODE_VERSION:+; SNAPBACK_NODE_VERSION=${SNAPBACK_NODE_VERSION}})"

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

#!/bin/bash -e
# Runtime dependencies (onoff's epoll and, by the project's install script, the native I/O
# addon are built here, for the image's architecture). Optional dependencies are left out:
# better-sqlite3 is the console's store, which an appliance never runs.
cd /opt/snapback
npm ci --omit=dev --omit=optional --no-audit --no-fund

# BLAKE3's native binary for the image's architecture (package.json's optional one is the x86-64
# build; the daemon loads whichever matches, appliance/storage/blake3.ts). Without it the daemon
# hashes models in WebAssembly, about 7x the CPU.
case "$(uname -m)" in
aarch64) blake3=blake-hash-linux-arm64-gnu ;;
armv7l) blake3=blake-hash-linux-arm-gnueabihf ;;
x86_64) blake3=blake-hash-linux-x64-gnu ;;
*) blake3= ;;
esac
if [ -n "$blake3" ]; then
	version=$(node -p "require('./package.json').optionalDependencies['@napi-rs/blake-hash-linux-x64-gnu']")
	tarball=$(npm pack --silent --pack-destination /tmp "@napi-rs/$blake3@$version")
	rm -rf "node_modules/@napi-rs/$blake3"
	mkdir -p "node_modules/@napi-rs/$blake3"
	tar -xzf "/tmp/$tarball" --strip-components=1 -C "node_modules/@napi-rs/$blake3"
	rm -f "/tmp/$tarball"
	echo "snapback: native BLAKE3 @napi-rs/$blake3@$version installed"
else
	echo "snapback: no native BLAKE3 for $(uname -m): models are hashed in WebAssembly"
fi

npm cache clean --force
systemctl enable snapback.service

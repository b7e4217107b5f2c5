#!/usr/bin/env bash
# Install everything eval_sandbox's runners need, from Debian 12 packages (+ npm js-md5).
# Idempotent; run as root from any checkout:   bash eval_sandbox/toolchains/install.sh
#
#   bubblewrap, prlimit (util-linux)       isolation and rlimits
#   python3 + python3-numpy                python runner (the reference harness imports numpy)
#   nodejs (+ npm for js-md5)              js runner; JS/162 requires('js-md5')
#   default-jdk-headless                   javac + java
#   g++ libboost-dev libssl-dev            cpp runner (#include<boost/any.hpp> everywhere, -lcrypto -lssl)
#   golang-go golang-github-stretchr-testify-dev   go runner, GOPATH mode, offline
#   rustc cargo librust-regex-dev librust-md5-dev  rust runner: /usr/bin/rustc + rlibs built here
#
# Prebuilt pieces go to $MFTLAUNCH_SANDBOX_TOOLCHAIN (default /opt/mftlaunch/sandbox-toolchain):
#   node/node_modules/js-md5, rust/<rustc-hash>/deps/*.rlib (regex, md5, our rand-0.4 shim).
# The Rust runner always uses /usr/bin/rustc (Debian's), never a rustup rustc on PATH: the rlibs
# must come from the same compiler, and the sandbox user cannot read /root/.cargo.
set -euo pipefail

PREFIX="${MFTLAUNCH_SANDBOX_TOOLCHAIN:-/opt/mftlaunch/sandbox-toolchain}"
JS_MD5_VERSION="${JS_MD5_VERSION:-0.7.3}"   # the version the OctoPack evaluation pinned
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (it installs Debian packages)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

PKGS=(bubblewrap util-linux procps ca-certificates python3 python3-numpy
      g++ libboost-dev libssl-dev default-jdk-headless nodejs
      golang-go golang-github-stretchr-testify-dev
      rustc cargo librust-regex-dev librust-md5-dev)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ! command -v npm >/dev/null 2>&1 && [ ! -d "$PREFIX/node/node_modules/js-md5" ]; then
  # Debian's nodejs has no npm; a nodesource nodejs ships its own.
  missing+=(npm)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install.sh: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install.sh: Debian packages already installed"
fi

mkdir -p "$PREFIX"
chmod 755 "$PREFIX"

if [ ! -f "$PREFIX/node/node_modules/js-md5/package.json" ]; then
  echo "install.sh: npm install js-md5@$JS_MD5_VERSION into $PREFIX/node"
  mkdir -p "$PREFIX/node"
  npm install --prefix "$PREFIX/node" --no-audit --no-fund --no-save --omit=dev "js-md5@$JS_MD5_VERSION" >/dev/null
fi
chmod -R a+rX "$PREFIX/node"

if [ -e /proc/sys/kernel/unprivileged_userns_clone ] && [ "$(cat /proc/sys/kernel/unprivileged_userns_clone)" = 0 ]; then
  echo "install.sh: WARNING kernel.unprivileged_userns_clone=0: bubblewrap cannot create user namespaces" >&2
  echo "           enable it (sysctl -w kernel.unprivileged_userns_clone=1) or use the apptainer backend" >&2
fi

# Rust rlibs (offline, from /usr/share/cargo/registry) and the C harness object; prints versions.
cd "$REPO"
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" /usr/bin/python3 -m eval_sandbox prepare --dir "$PREFIX"
chmod -R a+rX "$PREFIX"
echo "install.sh: done (toolchain dir $PREFIX)"

#!/usr/bin/env bash
# Install the headless browser the report test renders report.html with (Debian's chromium).
# Idempotent; Debian 12 (bookworm), run as root (install.sh --dev calls it).
set -euo pipefail

if dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q '^install ok installed$'; then
    echo "browser/install.sh: chromium already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "browser/install.sh: must run as root to install chromium" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium fonts-dejavu-core
echo "browser/install.sh: done"

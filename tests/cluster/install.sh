#!/usr/bin/env bash
# Install everything the local test Slurm cluster (tests/cluster/cluster.sh) needs.
# Idempotent: does nothing when every package is already installed.
# Target: Debian 12 (bookworm), run as root (CI runs it from a clean clone).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# slurm-wlm pulls slurmctld + slurmd (22.05 on bookworm); slurm-client gives
# srun/sbatch/sacct/scontrol; slurmdbd + mariadb give accounting (sacct).
# iproute2 for `ip netns`/veth, util-linux for nsenter, procps for pgrep/ps.
# environment-modules: a real `module` command for `profiles check`'s module probe.
PACKAGES=(
    slurm-wlm
    slurmctld
    slurmd
    slurm-client
    slurmdbd
    munge
    mariadb-server
    mariadb-client
    iproute2
    util-linux
    procps
    hostname
    environment-modules
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install.sh: all packages already installed"
    exit 0
fi

echo "install.sh: installing: ${missing[*]}"
apt-get update
# --no-install-recommends keeps it small; policy-rc.d stops the packages'
# postinst from trying to start services (there is no systemd here, and we
# never want the system-wide daemons running -- cluster.sh starts its own).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get install -y --no-install-recommends "${missing[@]}"
echo "install.sh: done"

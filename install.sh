#!/usr/bin/env bash
# Install mftlaunch into ./.venv on a Debian machine (run as root for the system packages).
#   ./install.sh          the launcher, the training/generation stack (CPU torch) and the
#                         sandbox toolchains (g++, javac, node, go, rustc, bubblewrap)
#   ./install.sh --dev    also the test tools, the packages of the local Slurm test cluster and
#                         headless chromium (the report.html test)
set -euo pipefail
cd "$(dirname "$0")"
dev=0
[ "${1:-}" = "--dev" ] && dev=1

bash eval_sandbox/toolchains/install.sh
[ "$dev" = 1 ] && bash tests/cluster/install.sh
[ "$dev" = 1 ] && bash tests/browser/install.sh   # headless chromium for the report.html test

[ -x .venv/bin/python ] || python3 -m venv .venv
pip=(.venv/bin/python -m pip install --quiet)
# torch first and pinned: this exact CPU build installs from local disk on CI machines, where an
# unpinned torch would pull gigabytes of CUDA wheels.
"${pip[@]}" torch==2.13.0
# deepspeed ships as source and builds against the torch already installed; with build isolation
# its build would fetch another (CUDA) torch. DS_BUILD_OPS=0: ops are JIT-built when used.
DS_BUILD_OPS=0 "${pip[@]}" --no-build-isolation 'deepspeed>=0.15'
extras="train,eval"
[ "$dev" = 1 ] && extras="$extras,dev"
"${pip[@]}" -e ".[$extras]"
# QLoRA needs bitsandbytes (a `train` extra) on CPU as on GPUs: fail here, not in a queued job.
.venv/bin/python -c "import bitsandbytes" 2>/dev/null || { echo "install.sh: bitsandbytes does not import" >&2; exit 1; }
echo "installed: $(.venv/bin/mftlaunch --version 2>/dev/null || echo mftlaunch) in $(pwd)/.venv"

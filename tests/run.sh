#!/usr/bin/env bash
# The test command: install everything, bring the local 2-node Slurm cluster up, run pytest.
#   tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
./install.sh --dev
bash tests/cluster/cluster.sh up
eval "$(bash tests/cluster/cluster.sh env)"
# Tests marked `slurm` fail (instead of skipping) when the cluster is not up.
export MFTLAUNCH_REQUIRE_SLURM=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"

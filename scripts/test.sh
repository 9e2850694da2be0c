#!/usr/bin/env bash
# Set up, then run everything CI runs: lint, type check, tests. Extra arguments go to pytest.
# EDGE_ARM64_LANE=1 (CI sets it) then runs the arm64 lane too: scripts/arm64.sh, from nothing, about
# 20 minutes, root needed (docs/arm64.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff format --check edge provisioning device_profiles tests hil_tests benchmarks
.venv/bin/ruff check edge provisioning device_profiles tests hil_tests benchmarks
echo "== mypy (strict)"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
if [ "${EDGE_ARM64_LANE:-0}" = 1 ]; then
  echo "== arm64 lane (docs/arm64.md)"
  # a host that cannot emulate arm64 (no root, an unprivileged container without binfmt_misc) says
  # why and skips the lane; on one that can, any failing step fails the run
  if bash scripts/arm64.sh check; then
    bash scripts/arm64.sh
  else
    echo "== arm64 lane SKIPPED: this host cannot run it (the reason is above)"
  fi
fi

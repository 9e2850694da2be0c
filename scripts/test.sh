#!/usr/bin/env bash
# Set up, then run everything CI runs: lint, type check, tests. Extra arguments go to pytest.
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

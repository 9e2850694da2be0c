#!/usr/bin/env bash
# Set up, then run the whole product on simulators: enrol, match, signed results to a subscriber.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/edge demo "$@"

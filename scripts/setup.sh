#!/usr/bin/env bash
# Set up a development or demo machine (Debian 12 / Raspberry Pi OS Bookworm / Ubuntu 22.04+):
# system packages, a virtualenv in .venv with the project and its test tools, and the model bundle.
# Safe to run again: every step skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(mosquitto python3-venv python3-dev)
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Mosquitto is started by the tests and the demo on a free loopback port; the packaged system
# service is not needed (it is left as the distribution configured it).

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "setup: installing the project and its test tools into .venv"
.venv/bin/python -m pip install -q -e ".[test,lint,dlib-bin,sim]"
# face_recognition (the dlib peer for evaluation) declares a dependency on the `dlib` sdist, which
# compiles for a long time; dlib-bin provides the same module, so install it without dependencies.
.venv/bin/python -m pip install -q --no-deps "face-recognition==1.3.0" "face-recognition-models==0.3.0"
# The independent OSDP control panel the tests play the site's panel with (osdp 1.6, pure Python).
# Its import name, `osdp`, is also libosdp's wrapper module, so it lives in its own folder and
# edge.testing.osdp_peer loads it under another name.
if [ ! -f .venv/peers/osdp-python/osdp/__init__.py ]; then
  .venv/bin/python -m pip install -q --no-deps --target .venv/peers/osdp-python "osdp==1.6"
fi

if [ -f edge/models/build.py ]; then
  echo "setup: building the model bundle (cached in models/)"
  .venv/bin/edge models build --quiet
fi
echo "setup: done"

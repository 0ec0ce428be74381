#!/usr/bin/env bash
# The GPU check, in one call on a lent GPU machine (under 8 minutes):
#
#   1. a venv with --system-site-packages (the machine's CUDA torch, onnxruntime, OpenCV …)
#      plus the carried cp312 wheels (PyAV, rembg and its pure-Python needs, pyzmq,
#      zstandard, tflite) from the git-ignored .gpu-carry/wheels (scripts/gpu_carry.sh);
#   2. the tests marked gpu, and the device finishing, torch backend and runner selection tests;
#   3. scripts/bench_gpu.py on a generated 1080p clip: CPU and GPU side by side.
#
# streammat itself comes from the working tree (PYTHONPATH), so the check always runs the
# code that was carried. The models come from .gpu-carry/rembg-home. Everything written
# goes to $OUT (default: ./gpu-check-out): pytest.txt, bench.txt, bench_gpu.json, gpu.txt.
#
#   scripts/gpu_check.sh              # on the GPU machine
#   scripts/gpu_check.sh --dry-run    # here, on the CPU: the same steps, small sizes,
#                                     # no wheel install (the carried wheels are cp312)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
CARRY="${GPU_CARRY:-$ROOT/.gpu-carry}"
OUT="${OUT:-$ROOT/gpu-check-out}"
mkdir -p "$OUT"
if ((DRY)); then PY="${PYTHON:-python}"; else PY="${PYTHON:-python3}"; fi
VENV="$(mktemp -d)/venv"
START=$SECONDS
step() { echo "== [$((SECONDS - START)) s] $*"; }

step "venv at $VENV (system site packages of $("$PY" -c 'import sys; print(sys.executable)'))"
if ! "$PY" -m venv --system-site-packages "$VENV" 2>"$OUT/venv.txt"; then
    "$PY" -m venv --system-site-packages --without-pip "$VENV" || { cat "$OUT/venv.txt"; exit 1; }
fi
VPY="$VENV/bin/python"
# the invoking interpreter's packages too: when it is itself a venv (the dry run), its
# packages are not the "system" ones the flag above adds
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$PY" -c 'import site; print("\n".join(site.getsitepackages()))' >"$SITE/_host_packages.pth"
pip_install() {
    if "$VPY" -m pip --version >/dev/null 2>&1; then "$VPY" -m pip "$@"; else "$PY" -m pip --python "$VPY" "$@"; fi
}

if ((DRY)); then
    step "dry run: no wheel install; carried folder: $(du -sh "$CARRY" 2>/dev/null | cut -f1 || echo absent)"
elif compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
    step "installing $(ls "$CARRY"/wheels/*.whl | wc -l) carried wheels"
    pip_install install -q --no-index --no-deps "$CARRY"/wheels/*.whl || exit 1
else
    echo "no wheels in $CARRY/wheels: run scripts/gpu_carry.sh and carry the folder" >&2
    exit 1
fi
# rembg imports pymatting, which imports numba at import time. numba + llvmlite do not fit
# the carried 64 MiB beside PyAV, and streammat never calls pymatting's functions: a
# stand-in that leaves the functions uncompiled is enough for the import.
if ! "$VPY" -c "import numba" 2>/dev/null; then
    step "numba missing: installing the import stand-in"
    mkdir -p "$SITE/numba"
    cat >"$SITE/numba/__init__.py" <<'PY'
"""Stand-in for numba, installed by streammat's gpu_check.sh: functions stay plain Python."""
import numpy as _np


def njit(*args, **kwargs):
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda f: f


jit = njit
prange = range
pndindex = _np.ndindex
PY
fi

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
if [[ -d "$CARRY/rembg-home/models" ]]; then export REMBG_HOME="$CARRY/rembg-home"; fi
step "environment"
"$VPY" - <<'PY' | tee "$OUT/gpu.txt"
import importlib, os, sys
import torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA", torch.cuda.is_available())
if torch.cuda.is_available():
    print("GPU", torch.cuda.get_device_name(0), "| CUDA runtime", torch.version.cuda)
for name in ("onnxruntime", "av", "rembg", "zmq", "zstandard", "tflite", "onnx", "cv2", "streammat"):
    try:
        mod = importlib.import_module(name)
        print(f"{name:12s} {getattr(mod, '__version__', '?'):12s} {os.path.dirname(mod.__file__)}")
    except Exception as exc:
        print(f"{name:12s} MISSING: {type(exc).__name__}: {exc}")
import onnxruntime
print("onnxruntime providers:", onnxruntime.get_available_providers())
print("REMBG_HOME:", os.environ.get("REMBG_HOME", "(default)"))
PY

step "tests (gpu-marked, device finishing, torch backend, runner selection)"
timeout 240 "$VPY" -m pytest -q -p no:cacheprovider -o addopts="" -rs --timeout 120 \
    tests/test_gpu.py tests/test_device_finishing.py tests/test_torch_backend.py tests/test_providers.py -k "not real_selfie" \
    2>&1 | tee "$OUT/pytest.txt" | tail -25
TESTS=${PIPESTATUS[0]}

if ((DRY)); then BENCH=(--small --budget 150); else BENCH=(--budget 240); fi
step "benchmark ${BENCH[*]}"
timeout 360 "$VPY" scripts/bench_gpu.py "${BENCH[@]}" --json "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench.txt"
BENCH_RC=${PIPESTATUS[0]}

step "done: tests exit $TESTS, benchmark exit $BENCH_RC; files in $OUT"
rm -rf "$(dirname "$VENV")"
exit $((TESTS || BENCH_RC))

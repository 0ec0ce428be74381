#!/usr/bin/env bash
# Fill the carried folder that scripts/gpu_check.sh installs from on a GPU machine (run it
# here, with network). The GPU machines have Python 3.12, a CUDA torch, onnxruntime (CPU),
# onnx, OpenCV, numpy, scipy, scikit-image and pytest, but no PyAV, rembg or pyzmq, and
# cannot fetch anything; the working tree travels with up to 64 MiB of ignored folders.
#
#   scripts/gpu_carry.sh            # -> .gpu-carry/wheels/*.whl, .gpu-carry/rembg-home/
#
# The folder is git-ignored; name it in the device run's carry list.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY="${GPU_CARRY:-.gpu-carry}"
PY="${PYTHON:-python}"
mkdir -p "$CARRY/wheels"
# cp312 manylinux wheels, no dependencies resolved here: the list is what the machines lack.
# numba/llvmlite (pymatting's compiler, ~45 MB) do not fit beside PyAV; gpu_check.sh puts
# a stand-in there, since streammat never calls pymatting's functions.
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$CARRY/wheels" \
    av==18.1.0 pyzmq==27.3.0 zstandard==0.25.0 rembg==2.0.86 tflite==2.18.0 flatbuffers \
    pymatting pooch tqdm platformdirs packaging requests charset-normalizer idna urllib3 certifi \
    jsonschema jsonschema-specifications referencing rpds-py attrs pyyaml
# the built-in models, converted here (the machines cannot fetch the mediapipe wheel)
REMBG_HOME="$PWD/$CARRY/rembg-home" "$PY" -m streammat models pull selfie
du -sh "$CARRY" "$CARRY"/wheels "$CARRY"/rembg-home

#!/usr/bin/env bash
# Every GPU check of the project in one call, for a short loan of one H100/H200 (about 6 minutes there):
#
#   bash benchmarks/device_check.sh OUT      # OUT defaults to $OUT, else benchmarks/results/device
#
# 1. the GPU parity tests: the Triton kernels compiled for the real GPU against the float64 reference, on the
#    interpreter tests' awkward shapes (marker interpret) and at the release's sizes (marker gpu);
# 2. the kernel benchmarks at the release's sizes (reference vs Triton; forward, backward and both; peak memory;
#    GB/s against a copy bandwidth measured in the same run), the end-to-end frame and identity times, and one
#    stage-1 training step (128x128, batch 8), reference vs Triton;
# 3. frames per second of an animated 512x512 portrait, identity cached, in fp32, TF32 and bf16 at batch 1 and 4.
#
# Writes OUT/device_check.json (what ran, each part's exit code and seconds), OUT/gpu_tests.xml,
# OUT/benchmarks.json (pytest-benchmark) and OUT/fps.json. Without a CUDA device it says so, writes
# device_check.json with "cuda": false, and exits 0: that is the CPU dry run.
#
# The package must be importable: installed, or PYTHONPATH=src with its dependencies present (the GPU image lacks
# smplx: carry a wheel, `pip download --no-deps smplx==0.1.28 -d .device/wheels`, and the script installs it).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-benchmarks/results/device}}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if ! $PY -c "import smplx" 2>/dev/null && [ -d .device/wheels ]; then
  $PY -m pip install -q --no-deps --no-index --find-links .device/wheels smplx
fi

if ! $PY -c "import torch" 2>/dev/null; then
  echo "device_check: $PY cannot import torch; set PYTHON to the interpreter that has it" >&2
  exit 2
fi
if ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "device_check: no CUDA device here; nothing to measure (CPU dry run)"
  $PY - "$OUT" <<'EOF'
import json, platform, sys, torch
info = {"cuda": False, "torch": torch.__version__, "python": platform.python_version(), "parts": []}
json.dump(info, open(f"{sys.argv[1]}/device_check.json", "w"), indent=2)
EOF
  exit 0
fi

declare -a NAMES CODES DURATIONS
part() {  # part NAME TIMEOUT COMMAND...: run one part under a time limit, record its exit code and duration
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo "== $name"
  timeout "$limit" "$@"
  local code=$?
  NAMES+=("$name") CODES+=("$code") DURATIONS+=("$((SECONDS - start))")
  echo "== $name: exit $code in $((SECONDS - start)) s"
}

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
part gpu_tests 120 $PY -m pytest -q -m "gpu or interpret" tests/kernels --junitxml "$OUT/gpu_tests.xml" -p no:cacheprovider
part benchmarks 240 $PY -m pytest -q benchmarks --benchmark-json "$OUT/benchmarks.json" -p no:cacheprovider
part fps 90 $PY benchmarks/gpu_fps.py --json "$OUT/fps.json"

$PY - "$OUT" "${NAMES[*]}" "${CODES[*]}" "${DURATIONS[*]}" <<'EOF'
import json, platform, sys, torch, triton
out, names, codes, seconds = sys.argv[1], *(a.split() for a in sys.argv[2:])
info = {
    "cuda": True,
    "gpu": torch.cuda.get_device_name(),
    "torch": torch.__version__,
    "triton": triton.__version__,
    "python": platform.python_version(),
    "parts": [{"name": n, "exit_code": int(c), "seconds": int(s)} for n, c, s in zip(names, codes, seconds)],
}
json.dump(info, open(f"{out}/device_check.json", "w"), indent=2)
print(json.dumps(info["parts"]))
EOF

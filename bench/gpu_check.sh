#!/usr/bin/env bash
# `make gpu-check`: the GPU path of medviewer end to end on one CUDA machine, each step timed,
# one summary at the end (issue 11). Aim: under 8 minutes on one H100.
#
#   1. pytest -m gpu              the GPU-marked tests (tests/gpu/): training + compare + register,
#                                 Grad-CAM, label spreading and `medviewer infer` on cuda
#   2. DDP / device tests         tests/training/test_ddp.py and test_devices.py with a GPU
#                                 present (DDP on the CPU when asked; no rank on a missing GPU)
#   3. inference benchmark        bench/run.py --json --device cuda inference
#   4. training benchmark         bench/run.py --json --device cuda training (target >= 1.0x)
#   5. demo retrain               `medviewer demo --no-gui` (the full demo, its shipped 256x256
#                                 models) into a temp folder, then `medviewer train --model
#                                 chest-pneumothorax --device cuda --epochs 5`; a new version
#                                 must be registered
#
# Nothing is installed: it runs with ${PYTHON:-.venv/bin/python} (the dev venv, carried over).
# Environment:
#   PYTHON          the interpreter (default .venv/bin/python)
#   GPU_CHECK_DEVICE  cuda (default); cpu runs every step on the CPU without the CUDA check,
#                   to check this script itself on a machine without a GPU
#   GPU_CHECK_QUICK=1 the benchmarks' --quick sizes
#   GPU_CHECK_OUT   folder for the logs and the demo workspace (default: a new temp folder)
# Exit status: 0 when every step passed and every benchmark target was met, else 1.

set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
OUT=${GPU_CHECK_OUT:-$(mktemp -d -t medviewer-gpu-check.XXXXXX)}
QUICK=()
[ "${GPU_CHECK_QUICK:-0}" != 0 ] && QUICK=(--quick)
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"

if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null 2>&1; then
    echo "gpu-check: no Python at $PY: create the dev venv (make test) or set PYTHON=" >&2
    exit 1
fi
if [ "$DEVICE" = cuda ]; then
    if ! "$PY" - <<'EOF'
import sys

import torch

if not torch.cuda.is_available():
    built = torch.version.cuda or "none (a CPU-only build)"
    sys.exit(f"gpu-check: torch {torch.__version__} sees no CUDA GPU (its CUDA: {built}); "
             "run it on a machine with an NVIDIA GPU and driver, or GPU_CHECK_DEVICE=cpu "
             "to try the steps on the CPU")
name = torch.cuda.get_device_name(0)
print(f"gpu-check: {torch.cuda.device_count()} x {name}, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}")
EOF
    then
        exit 1
    fi
else
    echo "gpu-check: GPU_CHECK_DEVICE=$DEVICE: every step on the CPU (a check of the script)"
fi
echo "gpu-check: logs in $OUT"

NAMES=() STATES=() TIMES=()
FAILED=0
START=$(date +%s.%N)

# step NAME LOG COMMAND...: run it, its output to LOG (and the terminal), and record the time.
step() {
    local name=$1 log=$2
    shift 2
    echo
    echo "== $name"
    local t0 t1 rc
    t0=$(date +%s.%N)
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    t1=$(date +%s.%N)
    NAMES+=("$name")
    TIMES+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')")
    if [ "$rc" -eq 0 ]; then
        STATES+=(ok)
    else
        STATES+=("FAILED (exit $rc, log $log)")
        FAILED=1
    fi
}

step "pytest -m gpu" "$OUT/pytest-gpu.log" \
    "$PY" -m pytest -m gpu -q -p no:cacheprovider tests
step "DDP and device tests (a GPU present)" "$OUT/pytest-ddp.log" \
    "$PY" -m pytest -q -p no:cacheprovider tests/training/test_ddp.py tests/training/test_devices.py
step "inference benchmark on $DEVICE" "$OUT/bench-inference.jsonl" \
    "$PY" bench/run.py --json --device "$DEVICE" "${QUICK[@]}" inference
step "training benchmark on $DEVICE" "$OUT/bench-training.jsonl" \
    "$PY" bench/run.py --json --device "$DEVICE" "${QUICK[@]}" training

# versions WORKSPACE MODEL: how many versions of MODEL the workspace has registered.
versions() {
    "$PY" - "$1" "$2" <<'EOF'
import sys

from medviewer.workspace import Workspace

with Workspace.open(sys.argv[1], readonly=True) as ws:
    print(len(ws.models.list(sys.argv[2])))
EOF
}

demo_retrain() {
    local ws=$OUT/demo-workspace model=chest-pneumothorax before after
    rm -rf "$ws"
    "$PY" -m medviewer.cli demo --no-gui --workspace "$ws" || return
    before=$(versions "$ws" "$model") || return
    "$PY" -m medviewer.cli train --workspace "$ws" --model "$model" --device "$DEVICE" \
        --epochs 5 || return
    after=$(versions "$ws" "$model") || return
    if [ "$after" -ne $((before + 1)) ]; then
        echo "gpu-check: $model had $before versions before retraining and $after after"
        return 1
    fi
    echo "gpu-check: $model retrained on $DEVICE: version $after registered"
}
step "demo retrain on $DEVICE" "$OUT/demo-retrain.log" demo_retrain

TOTAL=$(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
echo
echo "== gpu-check summary ($DEVICE, $TOTAL s in all; logs in $OUT)"
for i in "${!NAMES[@]}"; do
    printf '  %-42s %7s s  %s\n' "${NAMES[$i]}" "${TIMES[$i]}" "${STATES[$i]}"
done
# The benchmark rows: ratio against the baseline and whether each target was met.
"$PY" - "$OUT/bench-inference.jsonl" "$OUT/bench-training.jsonl" <<'EOF' || FAILED=1
import json
import sys

rows = []
for path in sys.argv[1:]:
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        continue
    rows += [json.loads(line) for line in lines if line.startswith("{")]
missed = 0
for r in rows:
    ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
    met = {True: "met", False: "NOT MET", None: ""}[r["met"]]
    missed += r["met"] is False
    target = r["target"] or ""
    print(f"  {r['benchmark']:<10} {r['case'][:68]:<68} {ratio:>8} {target:<14} {met}")
sys.exit(1 if missed else 0)
EOF
if [ "$FAILED" -ne 0 ]; then
    echo "gpu-check: FAILED (see the steps and targets above)"
    exit 1
fi
echo "gpu-check: passed"

#!/usr/bin/env bash
# make gpu-check on an offline GPU machine whose Python already has a CUDA torch, in one
# command: install the wheels `python -m bench.gpu_wheels` put in .whl/ into a folder of
# their own (the machine's packages stay as they are), run the check, and copy what a
# reader needs into $OUT (default outputs/gpu-check/device): the log, the summary, the
# record for docs/gpu-validation.md, the sweep's report and, packed, every job's
# result.json and logs. Arguments go to python -m bench.gpu_check. Exit: gpu_check's.
# GPU_CHECK_SECONDS (default 560) interrupts the check with SIGINT, which still writes its
# summary of what ran, so the copies below happen inside a 600 s call.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-outputs/gpu-check/device}
run=${GPU_CHECK_DIR:-/tmp/gpu-check}
site=${GPU_CHECK_SITE:-/tmp/gpu-check-site}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$site" .whl/*.whl || { echo "gpu_device: installing .whl/*.whl failed"; exit 2; }
export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv \
  >"$out/nvidia-smi.csv" 2>&1
timeout -s INT -k 30 --preserve-status "${GPU_CHECK_SECONDS:-560}" \
  python3 -m bench.gpu_check --out "$run" "$@" 2>&1 | tee "$out/gpu-check.log"
code=${PIPESTATUS[0]}
cp "$run/gpu_check.json" "$run/gpu-validation.md" "$out/" 2>/dev/null
cp "$run/sweep/report.md" "$out/sweep-report.md" 2>/dev/null
tar czf "$out/sweep-results.tgz" -C "$run" \
  --exclude '*.parquet' --exclude '*.png' --exclude '.submitit' sweep 2>/dev/null
exit "$code"

#!/usr/bin/env bash
# The one script to run on a lent GPU machine (`make gpu-check`). That machine's python already
# has torch, transformers, nvidia-ml-py, rich, packaging and pytest, and reaches no package
# index: so no venv and no build isolation. Everything it learns goes to $OUT (default out/),
# to become test fixtures (snapshots) and docs/benchmarks.md figures. Budget: well under 10 min.
set -u
OUT=${OUT:-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "install gpucheck (no deps, no build isolation)"
if ! $PY -m pip install -q --no-deps --no-build-isolation -e . 2>"$OUT/pip.err"; then
  echo "pip install failed ($(tail -1 "$OUT/pip.err")); using PYTHONPATH instead"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

step "machine"
{ nvidia-smi; nvidia-smi -q; } > "$OUT/nvidia-smi.txt" 2>&1
$PY -c 'import torch, transformers, sys; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda); print("transformers", transformers.__version__)' | tee "$OUT/versions.txt"

step "static probe"
timeout 60 $PY -m gpucheck probe --dump-snapshot "$OUT/snapshot-static.json" --json "$OUT/probe.json"
echo "exit $?"

step "full check with the smoke benchmark (base preset on every GPU)"
timeout 330 $PY -m gpucheck --bench-timeout 150 --timeout 300 \
  --dump-snapshot "$OUT/snapshot.json" --json "$OUT/report.json" --markdown "$OUT/report.md"
echo "exit $?"

step "fine-tuning vs the Hugging Face Trainer, same model and data (cuda:0, base)"
timeout 200 $PY -m finetune.compare --preset base --device cuda --json "$OUT/compare.json"
echo "exit $?"

step "probe timing vs collect_env"
timeout 90 $PY benchmarks/probe_speed.py --runs 5 --json "$OUT/bench-probe.json"
timeout 90 $PY benchmarks/fault_times.py "$OUT/bench-faults.json"
echo "exit $?"

step "GPU-only tests"
timeout 120 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py
echo "exit $?"
ls -la "$OUT"

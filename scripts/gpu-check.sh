#!/usr/bin/env bash
# The one script to run on a lent GPU machine (`make gpu-check`). That machine's python already
# has torch, transformers, nvidia-ml-py, rich, packaging and pytest, and reaches no package
# index: so no venv and no build isolation. Everything it learns goes to $OUT (default out/),
# to become test fixtures (snapshots) and docs/benchmarks.md figures.
#
# Budget: well under 10 minutes ($BUDGET). Every step has its own `timeout`, and each gpucheck run is
# given a whole-run --timeout well inside it (its deadline bounds the sum over every GPU and
# keeps a reserve to write the report), so a report is written before any outer limit.
set -u
OUT=${OUT:-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
STARTED=$(date +%s)
step() { printf '\n=== %s (%s, +%ss)\n' "$1" "$(date -u +%H:%M:%S)" "$(($(date +%s) - STARTED))"; }
BUDGET=${BUDGET:-570} # seconds for the whole script: the lent machine's 10-minute limit, less a margin
# run LIMIT NAME CMD...: the command under an outer limit, its exit status and wall time noted.
# A step whose limit no longer fits in what is left of BUDGET is skipped (and says so) rather
# than cut short: a gpucheck run cut below its own --timeout would write no report.
run() {
  local limit=$1 name=$2
  shift 2
  local left=$((BUDGET - ($(date +%s) - STARTED)))
  if [ "$left" -lt "$limit" ]; then
    echo "$name: skipped, ${left} s of the ${BUDGET} s budget left, the step needs up to ${limit} s" | tee -a "$OUT/steps.txt"
    return 0
  fi
  local t0=$(date +%s)
  timeout -k 5 "$limit" "$@"
  local rc=$?
  echo "$name: exit $rc in $(($(date +%s) - t0)) s (outer limit $limit s)" | tee -a "$OUT/steps.txt"
  archive
}
# ARCHIVE=FILE: after every step, everything in $OUT packed into FILE (written, then renamed), so
# that a caller that can take back only a few files, or that is cut off, still gets all so far.
archive() {
  [ -n "${ARCHIVE:-}" ] || return 0
  tar czf "$ARCHIVE.tmp" -C "$OUT" . 2>/dev/null && mv -f "$ARCHIVE.tmp" "$ARCHIVE"
}
# Steps run most valuable first: when the budget runs out, what is skipped is the least missed.
# CKPT (a BERT checkpoint folder) and TRAIN/DEV (CoNLL files) add the real-checkpoint runs.
CKPT=${CKPT:-}
TRAIN=${TRAIN:-}
DEV=${DEV:-}

step "install gpucheck (no deps, no build isolation)"
if ! $PY -m pip install -q --no-deps --no-build-isolation -e . 2>"$OUT/pip.err"; then
  echo "pip install failed ($(grep -v '^[[:space:]]*$' "$OUT/pip.err" | tail -1)); using PYTHONPATH instead"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

step "machine"
{ nvidia-smi; nvidia-smi -q; nvidia-smi topo -m; } >"$OUT/nvidia-smi.txt" 2>&1
$PY -c 'import torch, transformers, sys; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda); print("transformers", transformers.__version__)' | tee "$OUT/versions.txt"
{ nproc; free -g; uname -a; } >>"$OUT/versions.txt" 2>&1
archive

step "static probe"
run 60 probe $PY -m gpucheck probe --dump-snapshot "$OUT/snapshot-static.json" --json "$OUT/probe.json" -q

step "items 7 and 9: full check, base preset on every GPU, NVML sampled under load"
run 240 check $PY -m gpucheck --timeout 210 --bench-timeout 180 \
  --dump-snapshot "$OUT/snapshot.json" --json "$OUT/report.json" --markdown "$OUT/report.md" -q

step "item 2: TF32 forced by the environment (NVIDIA containers set it): no GC215"
TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 run 90 tf32 $PY -m gpucheck check --no-bench --timeout 75 \
  --dump-snapshot "$OUT/snapshot-tf32.json" --json "$OUT/report-tf32.json" -q

step "item 5: CUDA index vs NVML index (only the last GPU visible: cuda:0 is NVML GPU n-1)"
LAST_UUID=$(nvidia-smi --query-gpu=uuid --format=csv,noheader | tail -1)
CUDA_VISIBLE_DEVICES=$LAST_UUID run 90 cvd $PY -m gpucheck check --no-bench --timeout 75 \
  --dump-snapshot "$OUT/snapshot-cvd.json" --json "$OUT/report-cvd.json" -q

step "issue 14: where MFU goes: a bare BERT-base training step per shape, eager and compiled"
run 200 step_mfu $PY -m finetune.step_mfu --device cuda --compile-shapes 32x128 --json "$OUT/step-mfu.json"

FT=($PY -m finetune --device cuda --dtype bf16 --no-progress)
if [ -n "$CKPT" ] && [ -n "$TRAIN" ] && [ -n "$DEV" ]; then
  step "issue 14: a real checkpoint on real data, bf16: random and length-grouped batches"
  REAL=(--model "$CKPT" --train-file "$TRAIN" --eval-file "$DEV" --epochs 3 --batch-size 32 --lr 3e-4)
  run 90 real_random "${FT[@]}" "${REAL[@]}" --bucket-batches 1 --json "$OUT/ft-real-random.json"
  run 90 real_grouped "${FT[@]}" "${REAL[@]}" --bucket-batches 0 --json "$OUT/ft-real-grouped.json"
fi

step "issue 14: the base preset, bf16, 300 steps, eager"
run 90 base_eager "${FT[@]}" --preset base --max-steps 300 --json "$OUT/ft-base-eager.json"

step "issue 12: the whole node (P2P, NVLink, NCCL all_reduce, H2D/D2H, matmul)"
run 90 node $PY -m gpucheck node --thorough --timeout 80 --node-timeout 70 \
  --figures "$OUT/node-figures.json" --json "$OUT/report-node.json" -q

step "GPU-only tests"
run 120 pytest $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py

step "item 9: a whole-run --timeout shorter than the benchmark: a partial report, on time"
run 70 deadline $PY -m gpucheck bench --timeout 40 --bench-timeout 600 --json "$OUT/report-deadline.json" -q

step "issue 12: DDP over every GPU through torchrun"
NGPU=$(nvidia-smi --query-gpu=uuid --format=csv,noheader | wc -l)
# an explicit endpoint takes the torchrun path even on one GPU (NCCL with world size 1)
run 120 ddp $PY -m gpucheck bench --bench-preset small --timeout 110 --bench-timeout 100 \
  --nproc-per-node "$NGPU" --rdzv-endpoint 127.0.0.1:29517 --json "$OUT/report-ddp.json" -q

step "issue 14: compiled (torch.compile): the base preset, and the real checkpoint"
run 150 base_compiled "${FT[@]}" --preset base --max-steps 300 --compile --json "$OUT/ft-base-compiled.json"

if [ -n "$CKPT" ] && [ -n "$TRAIN" ] && [ -n "$DEV" ]; then
  run 150 real_compiled "${FT[@]}" "${REAL[@]}" --bucket-batches 0 --compile --json "$OUT/ft-real-compiled.json"
fi

step "fine-tuning vs the Hugging Face Trainer, same model and data (cuda:0, base)"
run 150 compare $PY -m finetune.compare --preset base --device cuda --json "$OUT/compare.json"

step "probe timing vs collect_env"
run 60 probe_speed $PY benchmarks/probe_speed.py --runs 5 --json "$OUT/bench-probe.json"

step "what the runs say (items 2, 5, 7, 9)"
$PY scripts/gpu_check_summary.py "$OUT" | tee "$OUT/summary.txt"
archive

ls -la "$OUT"
echo "total: $(($(date +%s) - STARTED)) s"
archive

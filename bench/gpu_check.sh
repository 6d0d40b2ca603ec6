#!/usr/bin/env bash
# One-shot GPU check (issue 19): paper-profile train step (bf16, eager + torch.compile) with samples/s and
# MFU for MedProbCLIP and CLIP, the loader with all cores, ELK retrieval at 10k x 10k -> one JSON.
# Under 8 minutes in total (hard stop at 470 s); on a machine without CUDA the GPU parts are skipped and
# say so. Run on demand, never in CI:  bench/gpu_check.sh [out.json] [extra gpu_check.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${1:-gpu_check.json}
shift || true
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout --kill-after=10 470 "$PYTHON" bench/gpu_check.py --out "$OUT" --budget-s 420 "$@"

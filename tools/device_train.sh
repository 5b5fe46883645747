#!/usr/bin/env bash
# Train default weights on a lent GPU (the `device` tool: 10-minute calls, no network).
#
# Here, once:   bash tools/device_train.sh prepare
#   -> wheels/ (diffusers and the pure-Python deps the device lacks, ~6.5 MB) and data/train,
#      data/val (copies of the shared photos, ~24 MB); both git-ignored. genrestore itself runs
#      from the checkout (PYTHONPATH), which travels anyway: together well under the 64 MiB carry.
# There, each call (carry: ["wheels", "data", "runs"]):
#   bash tools/device_train.sh run MODEL SECONDS
#   -> trains MODEL for at most SECONDS into runs/MODEL (resuming from its checkpoint there),
#      then copies runs/MODEL to $OUT. Copy the returned folder back to runs/MODEL here before
#      the next call. MODEL: idm, diffgar, inpaint-diffusion, inpaint-ddgan, inpaint-gan, vq, ddpm.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  prepare)
    rm -rf wheels && mkdir -p wheels data
    # the device has torch, transformers (hence huggingface-hub, requests, regex, safetensors), OpenCV
    # and scikit-image; diffusers and its one missing pure-Python dependency travel as wheels
    pip download -q --no-deps -d wheels "diffusers==$(python -c 'import diffusers; print(diffusers.__version__)')" \
      importlib_metadata zipp tqdm
    rm -rf data/train data/val && cp -r ../shared/data/photos/train ../shared/data/photos/val data/
    du -sh wheels data
    ;;
  run)
    model=$2; seconds=$3
    pip install -q --no-index --find-links wheels/ diffusers 2>&1 | tail -2
    genrestore() { PYTHONPATH="$PWD" python -m genrestore.cli "$@"; }
    common=(--data data/train -o "runs/$model" --device cuda --time-limit "$seconds" --save-every 500)
    case "$model" in
      idm) genrestore train idm "${common[@]}" --size 128 --steps 60000 --batch-size 32 --lr 1e-4 ;;
      diffgar) genrestore train diffgar "${common[@]}" --size 128 --steps 60000 --batch-size 32 --lr 1e-4 ;;
      inpaint-diffusion|inpaint-ddgan|inpaint-gan)
        genrestore train inpaint --kind "${model#inpaint-}" "${common[@]}" --size 128 --steps 40000 \
          --batch-size 32 --channels 64 128 128 256 -q ;;
      vq) genrestore train vq "${common[@]}" --size 128 --steps 40000 --batch-size 32 --eval-data data/val -q ;;
      ddpm) genrestore train ddpm "${common[@]}" --size 64 --steps 60000 --batch-size 64 -q ;;
      *) echo "unknown model $model" >&2; exit 2 ;;
    esac
    mkdir -p "$OUT/runs" && cp -r "runs/$model" "$OUT/runs/"
    ;;
  *) sed -n 2,14p "$0"; exit 2 ;;
esac

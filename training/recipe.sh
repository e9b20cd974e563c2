#!/usr/bin/env bash
# The training recipe of the small PancapChain: a curriculum, then the full
# data, on a GPU when there is one (`training/device.sh` runs it on a lent
# one) or on the CPU (`make train-tiny`).
#
#   1. the curriculum's data (1-3 entities per scene, 6,000 scenes) is written
#      while the full data (2-8 entities, 12,000 scenes) and its pixel cache
#      are made in the background;
#   2. stages 1-2 on the curriculum with the auxiliary patch loss (the only
#      recipe seen to make the decoder read where things are: training/README.md,
#      "The plateau breaks") for CURRICULUM_MINUTES;
#   3. all four stages on the full data (stage weights 3,3,1,2), starting from
#      the curriculum's weights with a fresh schedule, for what is left of
#      MINUTES.
#
# Both runs keep their checkpoints (RUN/cur, RUN/full): running the same
# command again continues them. INIT (a checkpoint, e.g. an earlier lease's
# weights: training/device.sh) skips the curriculum and starts the full
# phase from it. The tokenizer is trained on the full data unless TOKENIZER
# names one (the same seeds give the same data, so training/runs/*/tokenizer.model
# of a CPU run fits).
#
# Usage: training/recipe.sh RUN MINUTES [CURRICULUM_MINUTES]
#   env: PYTHON (python3), DATA (training/data), DATA_CUR (training/data-cur),
#        TOKENIZER, INIT, DEVICE (cuda if torch sees a GPU, else cpu),
#        BATCH (64 on a GPU, 32 on the CPU), LR (1e-3)
set -euo pipefail
run=$1 minutes=$2
cur_minutes=${3:-$("${PYTHON:-python3}" -c "print(round($minutes * 0.3, 2))")}
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
data=${DATA:-$root/training/data} cur=${DATA_CUR:-$root/training/data-cur}
device=${DEVICE:-$("$py" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")}
batch=${BATCH:-64} save=60 init=${INIT:-}
if [[ $device == cpu ]]; then
	batch=${BATCH:-32} save=300 # a checkpoint's validation takes ~20 s here
fi
deadline=$("$py" -c "import time; print(time.time() + $minutes * 60)")
mkdir -p "$run"

full_data() {
	[[ -f $data/test/scenes.jsonl ]] || "$py" "$root/training/scenes.py" --out "$data" --train 12000 --val 200 --test 200
	"$py" "$root/training/train.py" --data "$data" --cache-only
}
full_data >"$run/data.log" 2>&1 &
gen=$! waited=
wait_data() {
	[[ -n $waited ]] || wait $gen || { cat "$run/data.log"; exit 1; }
	waited=1
}
[[ -n $init || -f $cur/test/scenes.jsonl ]] ||
	"$py" "$root/training/scenes.py" --out "$cur" --train 6000 --val 100 --test 50 --entities 1-3

tokenizer=${TOKENIZER:-$run/tokenizer.model}
if [[ ! -f $tokenizer ]]; then
	wait_data
	"$py" -c "import sys; sys.path.insert(0, '$root/training'); import train
train.train_tokenizer_model(train.read_jsonl('$data/train/tuples.jsonl'), '$tokenizer')"
fi

common=(--device "$device" --batch "$batch" --lr "${LR:-1e-3}" --aux-weight 1 --save-every "$save" --threads "$(nproc)" --resume
	--tokenizer "$tokenizer")
if [[ -z $init ]]; then
	"$py" "$root/training/train.py" "${common[@]}" --data "$cur" --run "$run/cur" --minutes "$cur_minutes" \
		--stage-weights 1,1,0,0
	init=$run/cur/ckpt.pt
fi
wait_data
left=$("$py" -c "import time; print(round(($deadline - time.time() - 30) / 60, 2))")
"$py" "$root/training/train.py" "${common[@]}" --data "$data" --run "$run/full" --init "$init" --minutes "$left" \
	--stage-weights 3,3,1,2

#!/usr/bin/env bash
# training/recipe.sh on a lent GPU machine (the workplace's `device` tool), and
# its weights back.
#
#   training/device.sh wheels          here: the Python packages the machine
#                                      lacks at our versions, into .whl/
#                                      (transformers 4.37.2 and its pins)
#   training/device.sh run MINUTES     there (a `run` carrying .whl, and
#                                      .init when INIT is set): recipe.sh into
#                                      /tmp/runs, then each run's weights into
#                                      $OUT as two files under 16 MiB and the
#                                      logs as logs.tar
#   training/device.sh collect DIR RUN here: DIR's files back into RUN/ckpt.pt
#                                      (weights, aux head and state; continue
#                                      it with train.py --init or INIT=)
#   training/device.sh pack RUN        here: RUN's weights in bf16 (11.5 MB:
#                                      the repository, the wheels and fp32
#                                      weights would pass the 64 MiB a run
#                                      carries) and tokenizer into .init/, for
#                                      INIT=.init/ckpt.pt
#                                      TOKENIZER=.init/tokenizer.model
#
# The machine's image has PyTorch but transformers 5 (whose LLaVA classes
# differ) and huggingface_hub 1.x; the wheels put 4.37.2 first on PYTHONPATH.
# .whl/ and .init/ are git-ignored: they travel only when a `run` carries them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
case ${1:-} in
wheels)
	python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
		transformers==4.37.2 tokenizers==0.15.2 huggingface_hub==0.20.3
	;;
run)
	python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
	export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
	python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name())"
	minutes=$2
	# recipe.sh stops its runs on time; the guard keeps room for the copies below.
	DATA=/tmp/data DATA_CUR=/tmp/data-cur timeout "$(python3 -c "print(int($minutes * 60 + 20))")" \
		training/recipe.sh /tmp/runs "$minutes" >"$OUT/train.log" 2>&1 || echo "recipe.sh: exit $?"
	python3 - <<'PY'
import os, torch
out = os.environ["OUT"]
for name in ("cur", "full"):
    path = "/tmp/runs/%s/ckpt.pt" % name
    if not os.path.exists(path):
        continue
    c = torch.load(path, map_location="cpu", weights_only=False)
    lang = {k: v for k, v in c["model"].items() if k.startswith("language_model.")}
    rest = {k: v for k, v in c["model"].items() if k not in lang}
    torch.save({"model": lang}, "%s/%s-language.pt" % (out, name))
    torch.save({"model": rest, "aux_head": c.get("aux_head"), "state": c["state"]}, "%s/%s-vision.pt" % (out, name))
    print(name, c["state"])
PY
	tar -C /tmp/runs -cf "$OUT/logs.tar" --exclude '*.pt' .
	grep -E "validation|done|initialised" "$OUT/train.log" || tail "$OUT/train.log"
	;;
collect)
	dir=$2 run=$3
	mkdir -p "$run"
	PYTHON=${PYTHON:-$root/.venv/bin/python}
	"$PYTHON" - "$dir" "$run" <<'PY'
import os, sys, torch
src, run = sys.argv[1:]
name = "full" if os.path.exists(os.path.join(src, "full-vision.pt")) else "cur"
rest = torch.load(os.path.join(src, name + "-vision.pt"), map_location="cpu")
lang = torch.load(os.path.join(src, name + "-language.pt"), map_location="cpu")
torch.save({"model": {**rest["model"], **lang["model"]}, "aux_head": rest["aux_head"], "state": rest["state"]},
           os.path.join(run, "ckpt.pt"))
print("%s: %s's weights at step %d" % (os.path.join(run, "ckpt.pt"), name, rest["state"]["step"]))
PY
	[[ -f $run/tokenizer.model ]] || tar -C "$run" -xf "$dir/logs.tar" --strip-components=2 ./full/tokenizer.model ||
		tar -C "$run" -xf "$dir/logs.tar" --strip-components=2 ./cur/tokenizer.model
	;;
pack)
	run=$2
	mkdir -p .init
	cp "$run/tokenizer.model" .init/
	"${PYTHON:-$root/.venv/bin/python}" - "$run" <<'PY'
import os, sys, torch
run = sys.argv[1]
c = torch.load(os.path.join(run, "ckpt.pt"), map_location="cpu", weights_only=False)
half = lambda sd: None if sd is None else {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in sd.items()}
torch.save({"model": half(c["model"]), "aux_head": half(c.get("aux_head")), "state": c["state"]}, ".init/ckpt.pt")
print(".init/ckpt.pt: %s's weights at step %d in bf16" % (run, c["state"]["step"]))
PY
	;;
*)
	sed -n '2,/^set /p' "$0" | sed '$d'
	exit 2
	;;
esac

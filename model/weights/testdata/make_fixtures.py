"""Writes the small fixtures of the weights package's tests.

Run from the repository root:
    .venv/bin/python model/weights/testdata/make_fixtures.py
Needs torch (1.13 was used) and safetensors. The outputs are deterministic
for a given torch version and are committed.
"""
import json
import os
from collections import OrderedDict

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(0)


def path(*parts):
    p = os.path.join(HERE, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


# --- a .bin state dict exercising every feature of the reader -------------
big = torch.randn(5, 3)
shared = torch.randn(4, 2)
state = OrderedDict()
state["f32"] = torch.randn(2, 3)
state["f16"] = torch.randn(4).half()
state["bf16"] = torch.randn(2, 2).bfloat16()
state["tied_a"] = shared
state["tied_b"] = shared  # tied weights: one storage, two names
state["view"] = big[1:3]  # storage offset 3 inside a 15-element storage
state["param"] = torch.nn.Parameter(torch.randn(3))
state["i64"] = torch.arange(4)
state["scalar"] = torch.tensor(3.5)
torch.save(state, path("torch", "state.bin"))
save_file({k: v.detach().clone().contiguous() for k, v in state.items()},
          path("torch", "state_ref.safetensors"))


class Evil:
    """Unpickling this would run a shell command."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


class EvalEvil:
    """Unpickling this would evaluate Python code."""

    def __reduce__(self):
        return (eval, ("1+1",))


torch.save({"w": torch.zeros(1), "x": Evil()}, path("torch", "evil_system.bin"))
torch.save({"x": EvalEvil()}, path("torch", "evil_eval.bin"))
torch.save({"t": torch.randn(3, 4).t()}, path("torch", "noncontig.bin"))


# --- LoRA: base model, adapters, and torch's merged result ----------------
base = {
    "model.layers.0.self_attn.q_proj.weight": torch.randn(8, 6).bfloat16(),
    "model.layers.0.mlp.up_proj.weight": torch.randn(10, 6),
    "model.layers.0.mlp.down_proj.weight": torch.randn(6, 10).half(),
    "model.mm_projector.0.weight": torch.randn(6, 4).bfloat16(),
    "model.embed_tokens.weight": torch.randn(7, 6).bfloat16(),
}
save_file(base, path("lora", "base", "model.safetensors"))

r, alpha = 4, 8
targets = ["q_proj", "up_proj", "down_proj"]
adapter = {}
for name, w in base.items():
    mod = name[: -len(".weight")]
    if mod.split(".")[-1] not in targets:
        continue
    out_f, in_f = w.shape
    adapter[f"base_model.model.{mod}.lora_A.weight"] = torch.randn(r, in_f).bfloat16()
    adapter[f"base_model.model.{mod}.lora_B.weight"] = torch.randn(out_f, r).bfloat16()
projector = torch.randn(6, 4).bfloat16()
trainables = {"base_model.model.model.mm_projector.0.weight": projector}


def merged(scale):
    out = {}
    for name, w in base.items():
        mod = name[: -len(".weight")]
        a = adapter.get(f"base_model.model.{mod}.lora_A.weight")
        if a is None:
            continue
        b = adapter[f"base_model.model.{mod}.lora_B.weight"]
        out[name] = (w.float() + scale * (b.float() @ a.float())).to(w.dtype)
    out["model.mm_projector.0.weight"] = projector
    return out


def config(rslora):
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
            "lora_dropout": 0.05, "target_modules": targets, "use_rslora": rslora,
            "fan_in_fan_out": False, "bias": "none", "base_model_name_or_path": "asmv2"}


# Plain scaling alpha/r, adapter as safetensors.
with open(path("lora", "adapter", "adapter_config.json"), "w") as f:
    json.dump(config(False), f, indent=2)
save_file(adapter, path("lora", "adapter", "adapter_model.safetensors"))
torch.save(trainables, path("lora", "adapter", "non_lora_trainables.bin"))
save_file(merged(alpha / r), path("lora", "merged.safetensors"))

# rsLoRA scaling alpha/sqrt(r), adapter as .bin.
with open(path("lora", "adapter_rs", "adapter_config.json"), "w") as f:
    json.dump(config(True), f, indent=2)
torch.save(adapter, path("lora", "adapter_rs", "adapter_model.bin"))
torch.save(trainables, path("lora", "adapter_rs", "non_lora_trainables.bin"))
save_file(merged(alpha / r ** 0.5), path("lora", "merged_rs.safetensors"))

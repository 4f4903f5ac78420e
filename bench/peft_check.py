"""Loads a rewardkit LoRA adapter folder with Python's `peft` and checks that peft reads it as
rewardkit does (used by bench/peft-roundtrip.sh, which says what each argument is).

    causal  ADAPTER RK_MERGED    PeftModel.from_pretrained(AutoModelForCausalLM(base), ADAPTER),
                                 merge_and_unload(), every weight against `rewardkit lora merge`'s
                                 (RK_MERGED/model.safetensors); and the LoRA's update is not ~0.
    seqcls  ADAPTER SAVE_DIR     the same for AutoModelForSequenceClassification (num_labels=1),
                                 the merged model saved to SAVE_DIR (with the base's tokenizer)
                                 for `rewardkit score` to compare with the adapter folder's scores,
                                 and SAVE_DIR-head-only: the trained head on the base encoder.

Prints one JSON object; exits 1 when a weight differs by more than 1e-5 or the update is ~0.
"""

import json
import os
import shutil
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

kind, adapter, other = sys.argv[1:]
with open(os.path.join(adapter, "adapter_config.json")) as f:
    config = json.load(f)
base_path = config["base_model_name_or_path"]
if kind == "causal":
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
else:
    base = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1, dtype=torch.float32)
before = {k: v.detach().clone() for k, v in base.state_dict().items()}
model = PeftModel.from_pretrained(base, adapter)
merged = model.merge_and_unload()
after = merged.state_dict()
# How far the adapter moved the LoRA targets' weights (peft's reading of A, B and alpha / r).
targets = [k for k in after if any(f".{t}." in k for t in config["target_modules"]) and k.endswith(".weight")]
update = max((after[k] - before[k]).abs().max().item() for k in targets)
report = {"peft": __import__("peft").__version__, "kind": kind, "targets": len(targets), "max_update": update}
ok = len(targets) > 0 and update > 1e-4
if kind == "causal":
    ours = load_file(os.path.join(other, "model.safetensors"))
    missing = [k for k in ours if k not in after]
    diffs = {k: (after[k] - ours[k]).abs().max().item() for k in ours if k in after}
    report.update(compared=len(diffs), missing=missing, max_diff=max(diffs.values()),
                  worst=max(diffs, key=diffs.get))
    ok = ok and not missing and report["max_diff"] <= 1e-5
else:
    shutil.rmtree(other, ignore_errors=True)
    shutil.rmtree(other + "-head-only", ignore_errors=True)
    merged.save_pretrained(other)
    # The same head on the base encoder (the LoRA update left out): how much the update moves
    # the scores, so that agreement above means something.
    head_only = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1, dtype=torch.float32)
    head_only.load_state_dict({k: v for k, v in after.items() if k.startswith("classifier.")}, strict=False)
    head_only.save_pretrained(other + "-head-only")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        for folder in (other, other + "-head-only"):
            if os.path.exists(os.path.join(base_path, name)):
                shutil.copy(os.path.join(base_path, name), folder)
    report["saved"] = other
print(json.dumps(report))
sys.exit(0 if ok else 1)

"""Exports a GGUF model's weights, dequantised to f32 by transformers' GGUF loader (it needs the `gguf`
package), and its tokenizer as an HF folder that transformers loads as a plain model.

    python bench/export_gguf_hf.py DIR FILE.gguf OUT_DIR
"""

import json
import os
import shutil
import sys

from transformers import AutoModelForCausalLM, AutoTokenizer

src, name, out = sys.argv[1:]
tmp = out + ".tmp"
shutil.rmtree(tmp, ignore_errors=True)
AutoTokenizer.from_pretrained(src, gguf_file=name).save_pretrained(tmp)
model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name)
model.hf_quantizer = None  # or save_pretrained refuses a model it still counts as quantized
model.save_pretrained(tmp)
# The weights were dequantised on load; without this key transformers loads them as a plain f32 model
# (with it, Trainer refuses to fine-tune "a purely quantized model").
with open(os.path.join(tmp, "config.json")) as f:
    config = json.load(f)
config.pop("quantization_config", None)
with open(os.path.join(tmp, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
os.replace(tmp, out)

"""TRL's GRPOTrainer on the policy, prompts, k, max new tokens and reward model that bench/rl.sh gives
`rewardkit rl`, on the CPU with a fixed thread count; writes seconds per step (split into generation,
scoring + log-probabilities, update) and completion tokens per second as JSON.

The policy is SmolLM2-135M-Instruct, its GGUF weights dequantised to f32 by transformers and saved as
an HF folder by bench/rl.sh (transformers refuses to fine-tune a model loaded straight from GGUF, which
it marks as quantized); the prompts are formatted with its chat template here, as rewardkit does,
and passed as plain strings so that the reward model (a BERT-family sequence classifier with no chat
template) scores `prompt + completion` text. Settings that change the work are matched to
`rewardkit rl`'s: B prompts × k samples per step, one optimizer step per generation batch (μ = 1, one
minibatch), temperature 1, top-p 1, a KL penalty (β > 0, so TRL keeps a reference model as rewardkit
does), no gradient checkpointing (rewardkit does not recompute either).
"""

import argparse
import json
import time

import torch


def timed(obj, name, store):
    """Wraps obj.name so that its wall time is added to store[name] on every call."""
    inner = getattr(obj, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            store[name] = store.get(name, 0.0) + time.perf_counter() - t

    setattr(obj, name, wrapper)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--policy-dir", required=True, help="an HF folder (bench/rl.sh exports the GGUF's weights to one)")
    ap.add_argument("--reward-model", required=True)
    ap.add_argument("--prompts", required=True, help="JSONL rows with a `prompt` string")
    ap.add_argument("--prompts-per-step", type=int, default=4)
    ap.add_argument("--samples-per-prompt", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup-steps", type=int, default=1, help="steps left out of the timing")
    ap.add_argument("--beta", type=float, default=0.05)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-json", required=True)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tok = AutoTokenizer.from_pretrained(a.policy_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(a.policy_dir, dtype=torch.float32)

    with open(a.prompts) as f:
        questions = [json.loads(line)["prompt"] for line in f if line.strip()]
    n = a.prompts_per_step * (a.steps + 1)
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions[:n]
    ]
    data = Dataset.from_dict({"prompt": prompts})

    per_step = a.prompts_per_step * a.samples_per_prompt
    args = GRPOConfig(
        output_dir="/tmp/rl-trl-bench",
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=per_step,
        gradient_accumulation_steps=1,
        num_generations=a.samples_per_prompt,
        max_completion_length=a.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        beta=a.beta,
        learning_rate=a.lr,
        num_iterations=1,
        max_steps=a.steps,
        activation_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        dataloader_num_workers=0,
        shuffle_dataset=False,
    )

    store = {}
    steps = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            store.clear()
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            steps.append({"step_s": time.perf_counter() - self.t, **store})

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs and steps:
                steps[-1]["mean_length"] = logs["completions/mean_length"]

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=a.reward_model,
        args=args,
        train_dataset=data,
        processing_class=tok,
        callbacks=[StepTimer()],
    )
    for name in ("_generate", "_calculate_rewards", "_generate_and_score_completions"):
        timed(trainer, name, store)
    trainer.train()

    timed_steps = steps[a.warmup_steps :]
    if not timed_steps:
        raise SystemExit(f"no step left after {a.warmup_steps} warmup step(s)")

    def mean(key):
        return sum(s.get(key, 0.0) for s in timed_steps) / len(timed_steps)

    step_s, gen_s = mean("step_s"), mean("_generate")
    prep_s = mean("_generate_and_score_completions")
    tokens = mean("mean_length") * per_step
    out = {
        "tool": "trl",
        "trl_version": __import__("trl").__version__,
        "torch_version": torch.__version__,
        "threads": a.threads,
        "samples_per_step": per_step,
        "timed_steps": len(timed_steps),
        "step_s": step_s,
        "generate_s": gen_s,
        "score_s": prep_s - gen_s,
        "update_s": step_s - prep_s,
        "completion_tokens_per_step": tokens,
        "tokens_per_s": tokens / step_s,
        "steps": steps,
    }
    with open(a.out_json, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: v for k, v in out.items() if k != "steps"}))


if __name__ == "__main__":
    main()

"""The PyTorch side of bench/serve.sh: a FastAPI server that does what OpenRLHF's
`openrlhf.cli.serve_rm` does: each request's queries are tokenised and scored on their own
(padded to the request's longest, in chunks of --batch-size), with no batching across requests.
Same endpoint and payload as `rewardkit serve`'s /get_reward: {"query": [...], "prompts": [...]}
-> {"rewards", "scores"}. With several --model folders it scores every member and returns the
mean (the ensemble's cost).

    python bench/serve_pytorch.py --model DIR [--model DIR ...] --port 8081 --threads 2
"""

import argparse

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    members = []
    for path in args.model:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        members.append((tok, model))

    def score(prompts, responses):
        out = []
        for tok, model in members:
            scores = []
            for i in range(0, len(responses), args.batch_size):
                enc = tok(prompts[i : i + args.batch_size], responses[i : i + args.batch_size],
                          truncation="longest_first", max_length=args.max_len, padding=True,
                          return_tensors="pt")
                with torch.inference_mode():
                    scores.extend(model(**enc).logits[:, 0].tolist())
            out.append(scores)
        return [sum(col) / len(col) for col in zip(*out)]

    app = FastAPI()

    @app.post("/get_reward")
    async def get_reward(request: Request):
        data = await request.json()
        queries, prompts = data["query"], data.get("prompts") or [""] * len(data["query"])
        responses = [q[len(p):] if q.startswith(p) else q for q, p in zip(queries, prompts)]
        rewards = score(prompts, responses)
        return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": {}})

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

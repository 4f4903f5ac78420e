#!/usr/bin/env bash
# Fuzzes every reader of user input (fuzz/fuzz_targets/*): builds seed corpora from
# ../shared/data into fuzz/corpus/<target>/ (a few dozen small files each; not committed), then
# runs each target for FUZZ_SECONDS (default 30) one after the other and fails on a crash.
#
#   scripts/fuzz.sh                 # every target
#   FUZZ_SECONDS=60 scripts/fuzz.sh jsonl scores
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). On a stable toolchain the nightly
# flags cargo-fuzz passes are allowed with RUSTC_BOOTSTRAP=1 (set here unless already set).
# A crash leaves its input in fuzz/artifacts/<target>/; a summary per target is printed at the
# end (seconds, executions, crashes).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
data="${REWARDKIT_DATA:-$root/../shared/data}"
seconds="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
cd "$root/fuzz"
all=(jsonl json_array hh pairwise parquet scores pool config gguf)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz --locked" >&2; exit 1; }
[ -d "$data" ] || { echo "no shared data at $data (set REWARDKIT_DATA)" >&2; exit 1; }

# --- seed corpora ---------------------------------------------------------------------------
python3 - "$data" "$root/fuzz/corpus" <<'PY'
import gzip, json, os, random, struct, sys
data, out = sys.argv[1], sys.argv[2]
random.seed(0)

def lines(path, n):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rt", encoding="utf-8") as f:
        return [l for _, l in zip(range(n), f)]

def put(target, name, payload):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(payload if isinstance(payload, bytes) else payload.encode())

hh = lines(f"{data}/hh-rlhf/helpful-base/test.jsonl.gz", 40)
hh += lines(f"{data}/hh-rlhf/harmless-base/test.jsonl.gz", 10)
alpaca = lines(f"{data}/alpaca-eval-gpt4/pairs.jsonl.gz", 20)
with open(f"{data}/pandalm/testset-v1.json", encoding="utf-8") as f:
    pandalm = json.load(f)[:30]
# Keep seeds small: long transcripts are cut (the cut keeps them valid JSON).
def small(line, limit=1500):
    obj = json.loads(line)
    for k, v in obj.items():
        if isinstance(v, str) and len(v) > limit:
            obj[k] = v[:limit]
    return json.dumps(obj)
hh = [small(l) for l in hh]
alpaca = [small(l) for l in alpaca]
pand = [json.dumps(r) for r in pandalm]

for i in range(30):
    rows = random.sample(hh + alpaca + pand, random.randint(1, 3))
    sel = bytes([random.choice([0, 1, 2, 3, 0x80, 0xc0])])
    put("jsonl", f"seed{i}", sel + ("\n".join(rows) + "\n").encode())
    put("json_array", f"seed{i}", sel + ("[" + ",\n".join(rows) + "]").encode())
gz = gzip.compress(("\n".join(hh[:3]) + "\n").encode(), mtime=0)
put("jsonl", "gzip", b"\0" + gz)
put("jsonl", "bom", b"\0\xef\xbb\xbf" + hh[0].encode() + b"\n")
put("jsonl", "nan", b"\0" + b'{"chosen": "a", "rejected": "b", "margin": NaN}\n')
put("jsonl", "dup", b"\0" + b'{"chosen": "a", "rejected": "b", "chosen": "c"}\n')
for i, l in enumerate(hh[:30]):
    o = json.loads(l)
    put("hh", f"pair{i}", o["chosen"] + "\0" + o["rejected"])
    put("hh", f"file{i}", "\0" + l + "\n")
for i in range(30):
    rows = random.sample(pand, random.randint(1, 3))
    put("pairwise", f"jsonl{i}", "\0" + "\n".join(rows) + "\n")
    put("pairwise", f"array{i}", "\x80[" + ",".join(rows) + "]")
for i in range(30):
    rows = []
    for _ in range(random.randint(1, 4)):
        r = {"chosen_score": round(random.gauss(0, 2), 3), "rejected_score": round(random.gauss(0, 2), 3)}
        if random.random() < 0.3: r["subset"] = random.choice(["chat", "math"])
        if random.random() < 0.2: r["tie"] = True
        rows.append(json.dumps(r))
    rows.append(json.dumps({"prompt": "p", "response": f"r{i}", "score": random.random()}))
    put("scores", f"seed{i}", "\n".join(rows) + "\n")
put("scores", "huge", '{"chosen_score": 1e308, "rejected_score": -1e308}\n')
sols = lines(f"{data}/gsm8k/example_model_solutions.jsonl", 10)
for i, l in enumerate(sols):
    put("pool", f"gsm8k{i}", small(l, 600) + "\n")
for i in range(20):
    rows = [json.dumps({"prompt_id": f"p{i % 3}", "prompt": "What is 2+2?", "sample": s,
                        "response": f"The answer is {random.randint(0, 9)}", "logprob": -random.random() * 9,
                        "logprob_model": -3.0, "ref_logprob": -4.0, "gold": random.random()})
            for s in range(random.randint(1, 4))]
    put("pool", f"generate{i}", "\n".join(rows) + "\n")
for i, l in enumerate(lines(f"{data}/gsm8k/test.jsonl", 10)):
    put("pool", f"answers{i}", l)
configs = [
    'learning_rate = 2e-5\nbatch_size = 8\nepochs = 1\n',
    '{"learning_rate": 0.001, "batch_size": 4, "max_steps": 10}',
    'seed = 1\nprobes = ["filler", "hedges"]\nbootstrap = 200\n[sycophancy]\nmax_items = 5\n',
    '{"max_pairs": 10, "probes": ["bold"], "sycophancy": {"max_items": 3}}',
    'learning_rate = nan\n', '{"batch_size": -1}', '',
]
for i, c in enumerate(configs):
    put("config", f"seed{i}", c)
PY

# Parquet seeds: JSONL rows written as Parquet by the data crate's example.
mkdir -p corpus/parquet
(cd "$root" && cargo build --release -q -p rewardkit-data --example jsonl_to_parquet)
conv="${CARGO_TARGET_DIR:-$root/target}/release/examples/jsonl_to_parquet"
i=0
for f in corpus/jsonl/seed*; do
  [ $i -ge 20 ] && break
  if tail -c +2 "$f" | "$conv" "corpus/parquet/p$i.tmp" 2>/dev/null; then
    { printf '\0'; cat "corpus/parquet/p$i.tmp"; } > "corpus/parquet/seed$i"
  fi
  rm -f "corpus/parquet/p$i.tmp"
  i=$((i + 1))
done

# GGUF seeds: the SmolLM2 header with its arrays shortened, and a few cut variants.
gguf="$(ls "${REWARDKIT_MODELS:-$HOME/.cache/rewardkit/models}"/smollm2/*.gguf 2>/dev/null | head -1 || true)"
python3 - "$gguf" "$root/fuzz/corpus/gguf" <<'PY'
import os, struct, sys
src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
SIZES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
def rd(f, fmt): return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]
def rstr(f): return f.read(rd(f, "Q")).decode("utf-8", "replace")
def rval(f, t):
    if t == 8: return rstr(f)
    if t == 9:
        et, n = rd(f, "I"), rd(f, "Q")
        return (et, [rval(f, et) for _ in range(n)])
    return rd(f, SIZES[t])
def wstr(s): b = s.encode(); return struct.pack("<Q", len(b)) + b
def wval(t, v):
    if t == 8: return wstr(v)
    if t == 9:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(wval(et, x) for x in items)
    return struct.pack("<" + SIZES[t], v)
meta = [("general.architecture", 8, "llama"), ("llama.block_count", 4, 2),
        ("llama.context_length", 4, 128), ("llama.embedding_length", 4, 64),
        ("llama.feed_forward_length", 4, 128), ("llama.attention.head_count", 4, 4),
        ("llama.attention.head_count_kv", 4, 2),
        ("llama.attention.layer_norm_rms_epsilon", 6, 1e-5),
        ("tokenizer.ggml.model", 8, "gpt2"),
        ("tokenizer.ggml.tokens", 9, (8, ["a", "b", "ab", "<|endoftext|>"])),
        ("tokenizer.ggml.merges", 9, (8, ["a b"])), ("tokenizer.ggml.eos_token_id", 4, 3)]
tensors = []
if src and os.path.exists(src):
    with open(src, "rb") as f:
        assert f.read(4) == b"GGUF"
        version, n_t, n_kv = rd(f, "I"), rd(f, "Q"), rd(f, "Q")
        meta = []
        for _ in range(n_kv):
            k = rstr(f); t = rd(f, "I"); v = rval(f, t)
            if t == 9: v = (v[0], v[1][:64])
            meta.append((k, t, v))
        for _ in range(min(n_t, 6)):
            name = rstr(f); nd = rd(f, "I"); dims = [rd(f, "Q") for _ in range(nd)]
            tensors.append((name, dims, rd(f, "I"), rd(f, "Q")))
def gguf(meta, tensors):
    b = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta))
    for k, t, v in meta: b += wstr(k) + struct.pack("<I", t) + wval(t, v)
    for name, dims, dt, off in tensors:
        b += wstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        b += struct.pack("<IQ", dt, off)
    return b
full = gguf(meta, tensors)
open(os.path.join(out, "header"), "wb").write(full)
open(os.path.join(out, "no_tensors"), "wb").write(gguf(meta, []))
for i, cut in enumerate([8, 24, len(full) // 3, len(full) // 2, len(full) - 3]):
    open(os.path.join(out, f"cut{i}"), "wb").write(full[:cut])
for i in range(len(meta)):
    open(os.path.join(out, f"meta{i}"), "wb").write(gguf(meta[:i] + meta[i + 1:], tensors))
PY

# --- fuzzing --------------------------------------------------------------------------------
# No sanitizer by default (the code under test is safe Rust: panics, overflows, endless loops
# and runaway allocations are what is looked for); FUZZ_SANITIZER=address to turn ASan on.
sanitizer="${FUZZ_SANITIZER:-none}"
features() { case "$1" in pool|config|gguf) echo "--features=candle" ;; esac; }
unset CARGO_TARGET_DIR  # cargo-fuzz builds into fuzz/target
summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "artifacts/$t" logs
  log="logs/$t.log"  # not in artifacts/: cargo-fuzz takes the newest file there as the crash
  # shellcheck disable=SC2046
  cargo fuzz build --release --debug-assertions -s "$sanitizer" $(features "$t") "$t" >"$log.build" 2>&1 \
    || { cat "$log.build" >&2; exit 1; }
  start=$(date +%s)
  # shellcheck disable=SC2046
  if cargo fuzz run --release --debug-assertions -s "$sanitizer" $(features "$t") "$t" "corpus/$t" -- \
      -max_total_time="$seconds" -max_len=65536 -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed=1
  fi
  took=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  crashes=$(ls "artifacts/$t" | grep -cE '^(crash|oom|timeout|leak)-' || true)
  summary+=("$t: $status, ${took}s, ${execs:-?} executions, $crashes crash file(s)")
  if [ "$status" = CRASH ]; then
    tail -40 "$log" >&2
  fi
done
printf '%s\n' "${summary[@]}"
exit $failed

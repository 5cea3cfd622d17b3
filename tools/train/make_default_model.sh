#!/bin/sh
# Build the bundled default model from Debian packages: corpus → tokenizer → training → Hugging
# Face directory → `edgellm convert` → models/default.gguf. Seeded; every stage is a pure function
# of the package contents, so a rerun gives the same corpus, tokenizer and token streams (the
# trained weights agree up to floating-point summation order on other CPUs).
#
# Usage: tools/train/make_default_model.sh        (what `make default-model` runs)
# Env:   BUILD (default build), PY (default /usr/bin/python3), STEPS (default: train.py's own)
# Stages whose output exists are skipped; training resumes from its checkpoint. Delete
# $BUILD/default-model to start over.
set -eu

BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP"
OUT=$BUILD/default-model
TRAIN=tools/train
mkdir -p "$OUT"

say() { printf '== %s\n' "$*"; }

# ---- prerequisites: Debian packages (installed when run as root) --------------------------------
need=""
for p in bible-kjv bible-kjv-text sentencepiece python3-sentencepiece python3-torch python3-numpy \
    python3-matplotlib; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || need="$need $p"
done
if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ]; then
        say "installing:$need"
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends $need
    else
        echo "missing Debian packages:$need (sudo apt-get install$need)" >&2
        exit 1
    fi
fi

# The Devil's Dictionary comes from dict-devil's data files; the package itself need not be
# installed (it would pull in a dictionary server), so we unpack its .deb.
if [ -f /usr/share/dictd/devil.dict.dz ]; then
    DEVIL=/usr/share/dictd
else
    DEVIL=$OUT/deb/usr/share/dictd
    if [ ! -f "$DEVIL/devil.dict.dz" ]; then
        say "fetching dict-devil"
        mkdir -p "$OUT/deb"
        (cd "$OUT/deb" && apt-get download dict-devil >/dev/null 2>&1 || {
            apt-get update -q >/dev/null && apt-get download dict-devil; })
        dpkg-deb -x "$OUT"/deb/dict-devil_*.deb "$OUT/deb"
    fi
fi

# ---- 1. corpus ----------------------------------------------------------------------------------
if [ ! -f "$OUT/data/heldout.txt" ]; then
    say "corpus"
    "$PY" $TRAIN/corpus.py "$OUT/data" "$DEVIL"
fi
if ! cmp -s "$OUT/data/heldout.txt" models/heldout.txt; then
    say "updating models/heldout.txt (the committed held-out split)"
    cp "$OUT/data/heldout.txt" models/heldout.txt
fi

# ---- 2. tokenizer -------------------------------------------------------------------------------
if [ ! -f "$OUT/tok/tokenizer.model" ]; then
    say "tokenizer (spm_train)"
    mkdir -p "$OUT/tok"
    spm_train --input="$OUT/data/spm_input.txt" --model_prefix="$OUT/tok/tokenizer" \
        --model_type=bpe --vocab_size=4096 --byte_fallback=true \
        --user_defined_symbols='<|im_start|>,<|im_end|>' \
        --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 \
        --normalization_rule_name=identity --remove_extra_whitespaces=false --split_digits=true \
        --add_dummy_prefix=true --character_coverage=1.0 --max_sentence_length=16384 \
        --allow_whitespace_only_pieces=true --input_sentence_size=0 \
        --shuffle_input_sentence=false --num_threads=2 --minloglevel=1 >"$OUT/tok/train.log" 2>&1
fi

# ---- 3. token streams ---------------------------------------------------------------------------
if [ ! -f "$OUT/tokens/text_train.bin" ]; then
    say "tokenizing"
    "$PY" $TRAIN/prepare.py "$OUT/data" "$OUT/tok/tokenizer.model" "$OUT/tokens"
fi

# ---- 4. training (resumable) --------------------------------------------------------------------
if [ ! -f "$OUT/run/model.pt" ]; then
    say "training (log: $OUT/train.out)"
    OMP_WAIT_POLICY=PASSIVE "$PY" $TRAIN/train.py "$OUT/tokens" "$OUT/run" \
        ${STEPS:+--steps "$STEPS"} >>"$OUT/train.out" 2>&1 || {
        tail -20 "$OUT/train.out" >&2
        exit 1
    }
fi
"$PY" $TRAIN/plot_loss.py "$OUT/run/train_log.jsonl" models/loss_curve.png

# ---- 5. Hugging Face directory + tokenizer check ------------------------------------------------
say "export $OUT/hf"
"$PY" $TRAIN/export_hf.py "$OUT/run" "$OUT/tok/tokenizer.model" "$OUT/hf"
"$PY" $TRAIN/check_tokenizer.py "$OUT/hf" models/heldout.txt "$OUT/data/chat_heldout.jsonl"

# ---- 6. GGUF through the project's own writer ---------------------------------------------------
CLI=$BUILD/edgellm
if ! "$CLI" convert --help >/dev/null 2>&1; then
    echo "$CLI convert is not available: build it (make), then rerun this script" >&2
    exit 1
fi
say "convert → models/default.gguf"
"$CLI" convert "$OUT/hf" "$OUT/default.gguf" --type f16
mv "$OUT/default.gguf" models/default.gguf
ls -l models/default.gguf

# ---- 7. measured results into models/README.md --------------------------------------------------
say "results → models/README.md"
"$PY" $TRAIN/report.py "$OUT/run"

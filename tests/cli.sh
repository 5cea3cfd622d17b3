#!/bin/sh
# Command-line behaviour every subcommand shares: --help exits 0 with a usage text, an unknown
# option is a one-line error with exit code 2, a missing model is a one-line error with exit 1.
# Subcommands are read from `edgellm --help`, so new ones are covered without editing this.
set -u
B=${BUILD:-build}
bin=$B/edgellm
fail=0
ok() { :; }
bad() { echo "FAIL: $*"; fail=1; }
lines() { printf '%s\n' "$1" | wc -l; }

$bin >/dev/null 2>&1; [ $? -eq 2 ] || bad "no arguments should exit 2"
err=$($bin frobnicate 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] && [ "$(lines "$err")" -eq 1 ] || bad "unknown command: rc $rc, '$err'"
$bin --help | grep -q "usage: edgellm" || bad "--help prints no usage"

cmds=$($bin --help | awk '/^commands:/{on=1; next} on && NF {print $1}')
[ -n "$cmds" ] || bad "no commands listed"
for c in $cmds; do
    out=$($bin "$c" --help 2>&1); rc=$?
    [ $rc -eq 0 ] || bad "$c --help exits $rc"
    printf '%s' "$out" | grep -qi "usage" || bad "$c --help prints no usage"
    err=$($bin "$c" --no-such-option 2>&1 >/dev/null); rc=$?
    [ $rc -eq 2 ] || bad "$c --no-such-option exits $rc (expected 2)"
    [ "$(lines "$err")" -eq 1 ] || bad "$c --no-such-option: not one line: $err"
done

# logits: argument checks and the JSON contract
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$B/genmodel --arch llama --type f32 --seed 9 -o "$tmp/m.gguf" || bad "genmodel failed"
err=$($bin logits -m "$tmp/m.gguf" --ids 1,x 2>&1 >/dev/null); [ $? -eq 2 ] || bad "bad --ids accepted"
err=$($bin logits -m "$tmp/m.gguf" --ids 1,2 --exit 3 2>&1 >/dev/null); [ $? -eq 2 ] || bad "--exit 3 of 3 layers accepted"
err=$($bin logits -m "$tmp/m.gguf" --ids 1,999 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && printf '%s' "$err" | grep -q "outside the vocabulary" || bad "token 999: rc $rc '$err'"
err=$($bin logits -m "$tmp/missing.gguf" --ids 1 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && printf '%s' "$err" | grep -q "missing.gguf: cannot open" || bad "missing model: rc $rc '$err'"
$bin logits -m "$tmp/m.gguf" --ids 1,2,3 --all --greedy 4 > "$tmp/o.json" || bad "logits failed"
${PY:-/usr/bin/python3} - "$tmp/o.json" <<'PYEOF' || bad "logits JSON contract"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["n_vocab"] == 320 and o["n_layer"] == 3 and o["exit"] == 2, o.keys()
assert o["positions"] == [0, 1, 2]
assert len(o["logits"]) == 3 and all(len(r) == 320 for r in o["logits"])
assert len(o["greedy"]) == 4
best = max(range(320), key=lambda i: o["logits"][2][i])
assert o["greedy"][0] == best
PYEOF
$bin info "$tmp/m.gguf" | grep -q "architecture: llama" || bad "info: no architecture summary"
$bin info "$tmp/m.gguf" | grep -q "bits per weight" || bad "info: no bits per weight"

[ $fail -eq 0 ] && echo "cli: $(echo $cmds | wc -w) subcommands checked"
exit $fail

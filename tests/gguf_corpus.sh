#!/bin/sh
# The broken-GGUF corpus: every file must be refused by `edgellm info` and by `edgellm logits`
# (the model loader's own path) with exit code 1 and one line that names the file and contains
# the fragment tests/fixtures/gguf_broken/EXPECTED lists for it — so a file refused for the wrong
# reason (a reader error where the loader should speak, a truncation the generator did not
# intend) fails. No sanitizer report either (a sanitizer build prints to stderr and changes the
# exit code). Before that, two controls: the committed files are what tools/make_broken_gguf.py
# writes today, and its unaltered model loads, so each defect is the only thing wrong with a file.
# usage: tests/gguf_corpus.sh EDGELLM_BINARY CORPUS_DIR
set -u
bin=$1
dir=$2
py=${PY:-/usr/bin/python3}
fail=0
n=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$py" tools/make_broken_gguf.py "$tmp/corpus" --valid "$tmp/valid.gguf" >/dev/null ||
    { echo "FAIL: tools/make_broken_gguf.py failed"; exit 1; }
if ! diff -r "$tmp/corpus" "$dir" >/dev/null; then
    echo "FAIL: $dir differs from what tools/make_broken_gguf.py writes (re-run it):"
    diff -rq "$tmp/corpus" "$dir" | head -10
    fail=1
fi
out=$("$bin" info "$tmp/valid.gguf" 2>&1); rc=$?
[ $rc -eq 0 ] && printf '%s' "$out" | grep -q "architecture: llama" ||
    { echo "FAIL: the unaltered model does not load (rc $rc): $(printf '%s' "$out" | tail -2)"; fail=1; }

expected() { awk -F '\t' -v f="$1" '$1 == f { print $2; found = 1 } END { exit !found }' "$dir/EXPECTED"; }

for f in "$dir"/*.gguf; do
    n=$((n + 1))
    frag=$(expected "$(basename "$f")") || { echo "FAIL $f: no line in $dir/EXPECTED"; fail=1; continue; }
    for cmd in info logits; do
        if [ $cmd = info ]; then
            err=$("$bin" info "$f" 2>&1 >/dev/null)
        else
            err=$("$bin" logits -m "$f" --ids 1 2>&1 >/dev/null)
        fi
        rc=$?
        case "$err" in
        *AddressSanitizer* | *"runtime error"* | *LeakSanitizer*)
            echo "FAIL $cmd $f: sanitizer report:"; echo "$err" | head -20; fail=1; continue ;;
        esac
        if [ "$rc" -ne 1 ]; then
            echo "FAIL $cmd $f: exit code $rc (expected 1): $err"; fail=1; continue
        fi
        if [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || ! printf '%s' "$err" | grep -qF -- "$f"; then
            echo "FAIL $cmd $f: expected one line naming the file, got: $err"; fail=1; continue
        fi
        printf '%s' "$err" | grep -qF -- "$frag" ||
            { echo "FAIL $cmd $f: refused for another reason: $err (expected: $frag)"; fail=1; }
    done
done
n_expected=$(grep -c . "$dir/EXPECTED")
[ "$n_expected" -eq "$n" ] || { echo "FAIL: $dir/EXPECTED has $n_expected lines for $n files"; fail=1; }
[ "$n" -ge 30 ] || { echo "FAIL: corpus has only $n files"; fail=1; }
[ $fail -eq 0 ] && echo "gguf corpus: $n broken files refused cleanly, each for its own reason"
exit $fail

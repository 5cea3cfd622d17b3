#!/bin/sh
# Every file of the broken-GGUF corpus must be refused by `edgellm info` with exit code 1 and a
# one-line message that names the file, and without any sanitizer report (when the binary is a
# sanitizer build, ASan/UBSan print to stderr and change the exit code).
# usage: tests/gguf_corpus.sh EDGELLM_BINARY CORPUS_DIR
set -u
bin=$1
dir=$2
fail=0
n=0
for f in "$dir"/*.gguf; do
    n=$((n + 1))
    err=$("$bin" info "$f" 2>&1 >/dev/null)
    rc=$?
    case "$err" in
    *AddressSanitizer* | *"runtime error"* | *LeakSanitizer*)
        echo "FAIL $f: sanitizer report:"; echo "$err" | head -20; fail=1; continue ;;
    esac
    if [ "$rc" -ne 1 ]; then
        echo "FAIL $f: exit code $rc (expected 1): $err"; fail=1; continue
    fi
    if [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || ! printf '%s' "$err" | grep -qF "$f"; then
        echo "FAIL $f: expected one line naming the file, got: $err"; fail=1
    fi
done
[ "$n" -ge 30 ] || { echo "FAIL: corpus has only $n files"; fail=1; }
[ $fail -eq 0 ] && echo "gguf corpus: $n broken files refused cleanly"
exit $fail

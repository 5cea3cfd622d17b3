#!/bin/sh
# POST /v1/completions — plain text continuation (prompt as a string, a list of strings, or
# token ids), with stop strings and per-token log-probabilities.
. "$(dirname "$0")/common.sh"
curl "$@" "$URL/v1/completions" -H 'Content-Type: application/json' -d '{
  "model": "'"$MODEL"'",
  "prompt": "Once upon a time",
  "max_tokens": 32,
  "temperature": 0,
  "stop": ["\n\n"],
  "logprobs": 2
}'; echo

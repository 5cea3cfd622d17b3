#!/bin/sh
# POST /v1/completions with "stream": true — text_completion chunks, then "data: [DONE]".
. "$(dirname "$0")/common.sh"
curl "$@" -N "$URL/v1/completions" -H 'Content-Type: application/json' -d '{
  "model": "'"$MODEL"'",
  "prompt": "The three laws of robotics are",
  "max_tokens": 48,
  "stream": true
}'

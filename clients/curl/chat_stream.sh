#!/bin/sh
# POST /v1/chat/completions with "stream": true — server-sent events, one chat.completion.chunk
# per "data:" line, then "data: [DONE]". include_usage adds a last chunk with token counts.
. "$(dirname "$0")/common.sh"
curl "$@" -N "$URL/v1/chat/completions" -H 'Content-Type: application/json' -d '{
  "model": "'"$MODEL"'",
  "messages": [{"role": "user", "content": "Write a haiku about a small computer."}],
  "max_tokens": 64,
  "stream": true,
  "stream_options": {"include_usage": true}
}'

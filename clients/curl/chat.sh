#!/bin/sh
# POST /v1/chat/completions — one answer as a chat.completion object.
. "$(dirname "$0")/common.sh"
curl "$@" "$URL/v1/chat/completions" -H 'Content-Type: application/json' -d '{
  "model": "'"$MODEL"'",
  "messages": [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello in three languages."}
  ],
  "max_tokens": 64,
  "temperature": 0.7,
  "seed": 42
}'; echo

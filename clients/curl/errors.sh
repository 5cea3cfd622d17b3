#!/bin/sh
# What errors look like: {"error": {"message", "type", "param", "code"}} with OpenAI's statuses.
. "$(dirname "$0")/common.sh"
echo "# 400: wrong type"
curl "$@" "$URL/v1/chat/completions" -d '{"model": "'"$MODEL"'", "messages": "hi"}'; echo
echo "# 404: unknown model"
curl "$@" "$URL/v1/chat/completions" -d '{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}'; echo
echo "# 401: wrong key (when the server has keys)"
curl -sS -H 'Authorization: Bearer wrong' "$URL/v1/models"; echo

# Sourced by the examples: the server URL and, if set, the API key header.
#   EDGELLM_URL      (default http://127.0.0.1:8080)
#   EDGELLM_API_KEY  (sent as "Authorization: Bearer ..." when set)
#   EDGELLM_MODEL    (default: the first model the server lists)
URL=${EDGELLM_URL:-http://127.0.0.1:8080}
set -- -sS
if [ -n "${EDGELLM_API_KEY:-}" ]; then
    set -- "$@" -H "Authorization: Bearer $EDGELLM_API_KEY"
fi
if [ -z "${EDGELLM_MODEL:-}" ]; then
    EDGELLM_MODEL=$(curl "$@" "$URL/v1/models" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
fi
MODEL=$EDGELLM_MODEL

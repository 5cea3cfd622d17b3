#!/bin/sh
# GET /v1/models and GET /v1/models/{id} — the served model with context length, parameter
# count and file size.
. "$(dirname "$0")/common.sh"
curl "$@" "$URL/v1/models"; echo
curl "$@" "$URL/v1/models/$MODEL"; echo

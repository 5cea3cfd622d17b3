#!/bin/sh
# POST /tokenize and POST /detokenize — the model's tokenizer.
. "$(dirname "$0")/common.sh"
curl "$@" "$URL/tokenize" -H 'Content-Type: application/json' \
    -d '{"content": "Hello, world!", "add_special": false, "with_pieces": true}'; echo
curl "$@" "$URL/detokenize" -H 'Content-Type: application/json' -d '{"tokens": [1, 2, 3]}'; echo

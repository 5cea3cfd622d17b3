#!/bin/sh
# GET /health — no API key needed; 200 {"status":"ok",...} once the model is loaded, 503 before.
curl -sS "${EDGELLM_URL:-http://127.0.0.1:8080}/health"; echo

#!/bin/sh
# GET /metrics — Prometheus text format: requests by endpoint and status, tokens, queue depth,
# active slots, time-to-first-token and inter-token latency histograms, RSS.
. "$(dirname "$0")/common.sh"
curl "$@" "$URL/metrics"

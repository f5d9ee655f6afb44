#!/usr/bin/env bash
# connector/coap: fuzz the fast path's CoAP datagram parser.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/fuzz ./connector/coap FuzzParseMessage "${FUZZTIME:-10s}"

#!/usr/bin/env bash
# Fuzz the parsers the connectors own, one target per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
fuzz() { scripts/fuzz "$1" "$2" "${FUZZTIME:-10s}"; }
fuzz ./connector/modbus FuzzParseWrite
fuzz ./connector/modbus FuzzPlan
fuzz ./connector/mqtt FuzzTopicPattern
fuzz ./connector/mqtt FuzzFilterCovers
fuzz ./internal/mqttwire FuzzReader
fuzz ./connector/httpc FuzzIngest
fuzz ./connector/coap FuzzParsePath

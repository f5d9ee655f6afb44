#!/usr/bin/env bash
# Fuzz the parsers of the southbound serial and OPC UA connectors, one target per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
fuzz() { scripts/fuzz "$1" "$2" "${FUZZTIME:-10s}"; }
fuzz ./connector/modbus FuzzDecodeRTUResponse
fuzz ./connector/opcua FuzzNodeSpec
fuzz ./connector/opcua FuzzDecodePayload
fuzz ./connector/opcua FuzzConvert

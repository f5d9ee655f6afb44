#!/usr/bin/env bash
# Fuzz the core's own parsers and encoders for a short while on every run.
set -euo pipefail
cd "$(dirname "$0")/../.."
t="${FUZZTIME:-10s}"
scripts/fuzz . FuzzMessageUnmarshalBinary "$t"
scripts/fuzz . FuzzAppendJSONString "$t"

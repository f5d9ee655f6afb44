#!/usr/bin/env bash
# dtlsx: fuzz the datagram router's record parser, the stored-session
# decoder and the PSK file parser (one target per invocation).
set -euo pipefail
cd "$(dirname "$0")/../.."
for target in FuzzParseRecord FuzzDecodeSession FuzzParsePSKTable; do
  scripts/fuzz ./dtlsx/ "$target" "${FUZZTIME:-10s}"
done

#!/usr/bin/env bash
# dtlsx: fuzz the datagram router's record parser, the stored-session
# decoder, the PSK file parser, and the resumption path's ClientHello
# parser and record opener (one target per invocation).
set -euo pipefail
cd "$(dirname "$0")/../.."
for target in FuzzParseRecord FuzzDecodeSession FuzzParsePSKTable FuzzParseClientHello FuzzOpenRecord; do
  scripts/fuzz ./dtlsx/ "$target" "${FUZZTIME:-10s}"
done

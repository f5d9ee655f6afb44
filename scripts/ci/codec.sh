#!/usr/bin/env bash
# Conversion plane: fuzz the binary layout codec, the JSON codec and the
# mapping-language parser for 30 s each (one target per invocation), and
# the Modbus register map briefly.
set -euo pipefail
cd "$(dirname "$0")/../.."

fuzz() { # package target seconds
  echo "fuzz $2 ($3 s)"
  scripts/fuzz "$1" "$2" "$3s"
}
fuzz ./codec/layout FuzzLayout 30
fuzz ./codec FuzzJSON 30
fuzz ./codec/mapping FuzzCompile 30
fuzz ./codec/modbus FuzzRegisterMap 10
fuzz ./codec/mapping FuzzRoundTrip 10

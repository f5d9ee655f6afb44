#!/usr/bin/env bash
# Traces: build the OpenTelemetry Collector the observe tests export to
# (internal/otelcol, a module of its own) into the Go build cache, once per
# change of its go.mod, go.sum or main.go, so the tests find it there
# instead of building it under their timeout; then fuzz the trace context
# parsers.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=internal/otelcol
key=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)
dir="$(go env GOCACHE)/iotgw-otelcol/$key"
if [ ! -x "$dir/otelcol" ]; then
  mkdir -p "$dir"
  (cd "$src" && go build -trimpath -o "$dir/otelcol.tmp$$" .)
  mv "$dir/otelcol.tmp$$" "$dir/otelcol"
fi
echo "collector: $dir/otelcol"
scripts/fuzz . FuzzParseTraceParent 10s
scripts/fuzz . FuzzParseTraceBinary 10s

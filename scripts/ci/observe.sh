#!/usr/bin/env bash
# observe: the dependency policy. The default build links no gRPC; the core
# and the connectors depend on the OpenTelemetry API only, so a host that
# does not import observe links no SDK and no Prometheus client.
set -euo pipefail
cd "$(dirname "$0")/../.."
sdk='^go.opentelemetry.io/otel/sdk|^go.opentelemetry.io/otel/exporters/|^github.com/prometheus/'
grpc='^google.golang.org/grpc'
fail=0
check() { # PATTERN WHAT GO-LIST-ARGS...
  local pat=$1 what=$2 hits
  shift 2
  hits=$(go list -deps "$@" | grep -E "$pat" || true)
  if [ -n "$hits" ]; then
    echo "FAIL: $what; it links:"
    echo "$hits" | sed 's/^/  /'
    fail=1
  else
    echo "ok: $what"
  fi
}
check "$grpc" "gatewayd links no gRPC" ./examples/gatewayd
check "$grpc" "a minimal host with observe links no gRPC" -tags withobserve ./observe/internal/minimalhost
check "$sdk|$grpc" "a minimal host without observe links no SDK" ./observe/internal/minimalhost
check "$sdk|$grpc" "gatewayd -tags gw_noobserve links no SDK" -tags gw_noobserve ./examples/gatewayd
# Every library package but observe (and the commands that import it).
libs=$(go list ./... | grep -vE '/observe($|/)|/examples/|/bench($|/)|/scripts/')
bad=$(go list -f '{{.ImportPath}}{{range .Deps}} {{.}}{{end}}' $libs | awk -v pat="$sdk" '{for (i = 2; i <= NF; i++) if ($i ~ pat) {print $1 " -> " $i; break}}')
if [ -n "$bad" ]; then
  echo "FAIL: library packages link the OpenTelemetry SDK or the Prometheus client (only observe may):"
  echo "$bad" | sed 's/^/  /'
  fail=1
else
  echo "ok: no library package but observe links the SDK"
fi
[ "$fail" = 0 ] || exit 1

# Traces: build the OpenTelemetry Collector the observe tests export to
# (internal/otelcol, a module of its own) into the Go build cache, once per
# change of its go.mod, go.sum or main.go, so the tests find it there
# instead of building it under their timeout; then fuzz the trace context
# parsers.
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
# Fuzz the package's parsers for a short while.
t="${FUZZTIME:-10s}"
scripts/fuzz ./observe FuzzDecodeConfig "$t"
scripts/fuzz ./observe FuzzLogHandler "$t"

#!/usr/bin/env bash
# bench/firmware/measure.sh: stripped sizes of gatewayd (full and minimal)
# for linux/arm64, linux/arm (GOARM=7) and linux/amd64, and the idle RSS
# of each, as BENCHMARKS.md reports them.
#
#   bench/firmware/measure.sh [OUTDIR]
#
# Idle RSS: the daemon runs examples/gatewayd/minimal.yaml (MQTT devices
# listening, a Modbus TCP device polled, the SQLite store, the MQTT
# upstream connected to a mosquitto started here) with no device traffic;
# VmRSS from /proc is read after 20 s (SETTLE). On amd64 natively, with the
# default GC; on arm64 under qemu-aarch64, where the host's VmRSS of the
# qemu process also holds the emulator and its translated code: an upper
# bound of the daemon's own. The file-backed part is the binary's pages
# (clean, dropped under memory pressure), the anonymous part heap and stacks.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-$(mktemp -d)}
settle=${SETTLE:-20}
minimal=gw_nosim,gw_nocoap,gw_nodtls,gw_nohttp,gw_nobroker,gw_norules,gw_norego,gw_noshaping
mkdir -p "$out"

build() { # name goarch goarm tags
  env CGO_ENABLED=0 GOOS=linux GOARCH="$2" GOARM="$3" go build -trimpath -ldflags='-s -w' -tags "$4" -o "$out/$1" ./examples/gatewayd
  printf '%-22s %10d bytes  %6.2f MB\n' "$1" "$(stat -c %s "$out/$1")" "$(echo "$(stat -c %s "$out/$1") / 1000000" | bc -l)"
}
for t in full minimal; do
  tags=""; [ $t = minimal ] && tags=$minimal
  build "gatewayd-$t-arm64" arm64 "" "$tags"
  build "gatewayd-$t-armv7" arm 7 "$tags"
  build "gatewayd-$t-amd64" amd64 "" "$tags"
done

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss() { # label command...
  local label=$1; shift
  local dir; dir=$(mktemp -d)
  local up dev mb health
  up=$(port); dev=$(port); mb=$(port); health=$(port)
  mosquitto -p "$up" >/dev/null 2>&1 & local mq=$!
  sed -e "s/127.0.0.1:1883/127.0.0.1:$up/; s/127.0.0.1:1884/127.0.0.1:$dev/; s/127.0.0.1:5502/127.0.0.1:$mb/; s/127.0.0.1:8080/127.0.0.1:$health/; s#/tmp/gatewayd-minimal.db#$dir/q.db#" \
    examples/gatewayd/minimal.yaml > "$dir/gw.yaml"
  "$@" -config "$dir/gw.yaml" -summary 0 >/dev/null 2>"$dir/log" & local pid=$!
  sleep "$settle"
  if ! kill -0 $pid 2>/dev/null; then cat "$dir/log"; kill $mq; return 1; fi
  printf '%-28s idle VmRSS %s (file-backed %s, anonymous %s)\n' "$label" \
    "$(grep VmRSS /proc/$pid/status | awk '{print $2, $3}')" \
    "$(awk '/^Private_Clean|^Shared_Clean/{s+=$2} END{print s " kB"}' /proc/$pid/smaps_rollup)" \
    "$(awk '/^Anonymous/{print $2, $3}' /proc/$pid/smaps_rollup)"
  kill -INT $pid; wait $pid || true
  kill $mq; wait $mq 2>/dev/null || true
  rm -rf "$dir"
}
for t in full minimal; do
  rss "gatewayd-$t-amd64" "$out/gatewayd-$t-amd64"
  if command -v qemu-aarch64 >/dev/null; then
    rss "gatewayd-$t-arm64 (qemu)" qemu-aarch64 "$out/gatewayd-$t-arm64"
  fi
done

#!/usr/bin/env bash
# The core packages' tests on the target ISAs: cross-build their test
# binaries (go test -c) for linux/arm64 and linux/arm (GOARM=7) and run them
# under qemu-user (qemu-aarch64, qemu-arm). Byte order, the 32-bit alignment
# of 64-bit atomics and int size bugs show up here and nowhere else.
#
# What runs: every test of these packages with -test.short (the same
# selection as the amd64 run, where only a few long tests check Short), in
# the package's directory, with CI passed through: the peers the tests
# start (mosquitto, pymodbus) are host programs that run natively. Left out
# under emulation, by name (QEMU_SKIP, a -test.skip regexp; set it to
# override): tests that re-execute the test binary as a child process
# (kill -9 recovery, the netns child, the RLIMIT_NOFILE child). Without
# binfmt_misc (a host-wide registration) qemu-user cannot exec a second
# foreign binary; those run natively in the main test step. A test that
# fails is shown and run once more, alone (emulation is 5-10x slower and a
# few tests assume timings); it fails the check only if it fails again.
# internal/udpbatch runs too: its sockaddr and mmsghdr layouts differ by
# architecture.
#
#   QEMU_ARCHES="arm64 arm"   the architectures to run (default both)
#   QEMU_SKIP=regexp          tests not to run under emulation
#   QEMU_TIMEOUT=10m          -test.timeout per package
#
# Without qemu-user the check skips with a reason, and fails in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."

pkgs=". ./codec/... ./rules ./resume ./connector/mqtt ./connector/modbus ./upstream/mqtt ./internal/udpbatch"
skip="${QEMU_SKIP-^(TestKill9|TestVethCut|TestFileLimitProcess)\$}"
timeout="${QEMU_TIMEOUT:-10m}"

for q in qemu-aarch64 qemu-arm; do
  if ! command -v "$q" >/dev/null; then
    if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; then
      echo "qemu: $q missing (Debian package qemu-user, scripts/ci/qemu.apt)"; exit 1
    fi
    echo "qemu: skipped: $q not on PATH (install qemu-user)"; exit 0
  fi
done

export QEMU_SKIP_ARG="$skip"
bins=$(mktemp -d)
trap 'rm -rf "$bins"' EXIT
list=$(go list $pkgs)
failed=""
for arch in ${QEMU_ARCHES:-arm64 arm}; do
  case $arch in
    arm64) q=qemu-aarch64 env="GOARCH=arm64" ;;
    arm) q=qemu-arm env="GOARCH=arm GOARM=7" ;;
    *) echo "qemu: unknown arch $arch"; exit 1 ;;
  esac
  start=$(date +%s)
  # Build every binary first (the compiler uses both cores), then run them
  # two at a time: emulated tests mostly wait on timers and peers.
  for p in $list; do
    name=$(printf '%s' "${p#github.com/iotgw/gateway}" | tr / _)
    env CGO_ENABLED=0 GOOS=linux $env go test -c -o "$bins/$arch${name:-_root}.test" "$p"
  done
  for p in $list; do
    name=$(printf '%s' "${p#github.com/iotgw/gateway}" | tr / _)
    dir=$(go list -f '{{.Dir}}' "$p")
    printf '%s\0%s\0%s\0' "$dir" "$bins/$arch${name:-_root}.test" "$p"
  done | xargs -0 -n 3 -P 2 sh -c '
    cd "$1" || exit 1
    bin=$2 pkg=$3
    run() { '"$q"' "$bin" -test.short -test.count=1 -test.timeout '"$timeout"' ${QEMU_SKIP_ARG:+-test.skip "$QEMU_SKIP_ARG"} "$@" 2>&1; }
    out=$(run) && { echo "ok   '"$arch"' $pkg"; exit 0; }
    # Emulation runs 5-10x slower: a test with a timing assumption may
    # miss it once. Its failure is shown and it runs again, alone; failing
    # twice fails the check.
    printf "%s\n" "$out" | tail -40
    names=$(printf "%s\n" "$out" | sed -n "s/^--- FAIL: \([^ ]*\) .*/\1/p" | paste -sd "|" -)
    if [ -n "$names" ] && run -test.run "^($names)\$" >/dev/null; then
      echo "FLAKY '"$arch"' $pkg: failed once, passed alone: $names"; exit 0
    fi
    echo "FAIL '"$arch"' $pkg"; exit 1' _ || failed="$failed $arch"
  echo "qemu: $arch done in $(( $(date +%s) - start ))s"
done
if [ -n "$failed" ]; then
  echo "qemu: failures on:$failed"; exit 1
fi

#!/usr/bin/env bash
# The whole test suite, the same on a laptop and in CI:
#   1. installs the system packages tests need (scripts/ci/*.apt, when root)
#      and staticcheck,
#   2. gofmt, no tracked build outputs (ELF binaries, *.test), go vet,
#      staticcheck,
#   3. cross-builds for linux/arm64 and linux/arm (GOARM=7) without cgo,
#   4. area checks in scripts/ci/*.sh (fuzzing, generated code),
#   5. go test -race ./...
# Tests that need root, a kernel feature or a peer skip with a reason on a
# laptop and fail when CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(go env GOPATH)/bin:$PATH"
step() { printf '\n==> %s\n' "$*"; }

step "system packages"
want=$(cat scripts/ci/*.apt 2>/dev/null | sed 's/#.*//' | xargs -r echo)
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" && continue
  # A command of the package's name already on PATH counts as present:
  # e.g. npm bundled with a nodejs from another source, which conflicts
  # with Debian's npm package.
  command -v "$p" >/dev/null && continue
  missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "all present:${want:+ $want}"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "not root: cannot install$missing; tests that need them will skip (and fail in CI)"
fi

step "staticcheck"
if ! command -v staticcheck >/dev/null; then
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed:"; echo "$unformatted"; exit 1
fi

step "no build outputs tracked"
outputs=""
while IFS= read -r f; do
  case "$f" in *.test) outputs="$outputs $f"; continue ;; esac
  [ -f "$f" ] || continue
  # ELF executables and shared objects; relocatable objects (the generated
  # BPF programs, e_type 1 in either byte order) are committed on purpose.
  hdr=$(head -c 18 "$f" | od -An -tx1 | tr -d ' \n')
  case "$hdr" in 7f454c46*) ;; *) continue ;; esac
  case "${hdr:32:4}" in 0100|0001) ;; *) outputs="$outputs $f" ;; esac
done < <(git ls-files 2>/dev/null)
if [ -n "$outputs" ]; then
  echo "build outputs (ELF binaries or *.test files) are tracked:$outputs"; exit 1
fi
echo "none"

step "go vet"
go vet ./...

step "staticcheck"
staticcheck ./...

step "cross-build linux/arm64 and linux/arm (GOARM=7), CGO_ENABLED=0"
CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build ./...
CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 go build ./...

for f in scripts/ci/*.sh; do
  [ -e "$f" ] || continue
  step "area checks: $f"
  bash "$f"
done

step "go test -race: build every test binary"
go test -race -count=1 -run '^$' ./... >/dev/null

# One package at a time: the suites that start real peers, namespaces and
# timing measurements should not compete with each other for two cores.
step "go test -race"
go test -race -count=1 -p 1 -timeout 20m ./...

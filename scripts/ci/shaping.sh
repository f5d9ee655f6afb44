#!/usr/bin/env bash
# shaping: regenerate the BPF objects from bpf/*.c with clang-19 (bpf2go) and
# check them against what is committed, then short fuzz runs of the parsers.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v clang-19 >/dev/null || ! command -v llvm-strip-19 >/dev/null; then
  echo "clang-19 and llvm-19 are needed to check the generated BPF objects (scripts/ci/shaping.apt)"
  exit 1
fi

gen_dirs="shaping internal/impair"
backup=$(mktemp -d)
trap 'rm -rf "$backup"' EXIT
for d in $gen_dirs; do
  mkdir -p "$backup/$d"
  cp "$d"/*_bpfe[lb].go "$d"/*_bpfe[lb].o "$backup/$d/"
done
for d in $gen_dirs; do
  (cd "$d" && go generate ./...)
done

fail=0
for d in $gen_dirs; do
  for f in "$backup/$d"/*; do
    name=$(basename "$f")
    if cmp -s "$f" "$d/$name"; then
      continue
    fi
    case "$name" in
      *.go)
        echo "generated Go differs from the committed $d/$name: run go generate and commit"
        diff -u "$f" "$d/$name" | head -40 || true
        fail=1 ;;
      *.o)
        # Byte drift can come from a different clang-19 point release; the
        # programs' instructions must still be identical.
        if diff <(llvm-objdump-19 -d --no-show-raw-insn "$f" | tail -n +3) \
                <(llvm-objdump-19 -d --no-show-raw-insn "$d/$name" | tail -n +3) >/dev/null; then
          echo "note: $d/$name differs in metadata only (instructions identical); $(clang-19 --version | head -1)"
          cp "$f" "$d/$name"
        else
          echo "BPF instructions in $d/$name differ from the committed object: run go generate and commit"
          fail=1
        fi ;;
    esac
  done
done
[ "$fail" = 0 ] || exit 1
echo "generated BPF objects and Go bindings match bpf/*.c"

for target in FuzzParseConfig FuzzDecodeEvent FuzzParseRouteMessage; do
  scripts/fuzz ./shaping/ "$target" 10s
done

#!/usr/bin/env bash
# Fuzz the offline-resume parsers: the UDP heartbeat and the stored frame.
set -euo pipefail
cd "$(dirname "$0")/../.."
go test -run '^$' -fuzz '^FuzzParseHeartbeat$' -fuzztime 20s ./resume/
go test -run '^$' -fuzz '^FuzzFrameBinary$' -fuzztime 20s .

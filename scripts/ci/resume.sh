#!/usr/bin/env bash
# Fuzz the resume package's heartbeat parser.
set -euo pipefail
cd "$(dirname "$0")/../.."
go test -run '^$' -fuzz '^FuzzParseHeartbeat$' -fuzztime 20s ./resume/

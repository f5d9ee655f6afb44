#!/usr/bin/env bash
# Routing plane and upstream: fuzz the rule file parser and compiler, the
# downlink command parser and topic templates for a short while.
set -euo pipefail
cd "$(dirname "$0")/../.."
t="${FUZZTIME:-10s}"
go test -run '^$' -fuzz '^FuzzParseCompile$' -fuzztime "$t" ./rules/
go test -run '^$' -fuzz '^FuzzParseCommand$' -fuzztime "$t" ./upstream/mqtt/
go test -run '^$' -fuzz '^FuzzCompile$' -fuzztime "$t" ./internal/topictmpl/

#!/usr/bin/env bash
# Routing plane and upstream: fuzz the rule file parser and compiler, the
# downlink command parser and topic templates for a short while.
set -euo pipefail
cd "$(dirname "$0")/../.."
t="${FUZZTIME:-10s}"
scripts/fuzz ./rules/ FuzzParseCompile "$t"
scripts/fuzz ./upstream/mqtt/ FuzzParseCommand "$t"
scripts/fuzz ./internal/topictmpl/ FuzzCompile "$t"

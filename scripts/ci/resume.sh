#!/usr/bin/env bash
# Fuzz the offline-resume parsers: the UDP heartbeat and the stored frame.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/fuzz ./resume/ FuzzParseHeartbeat 20s
scripts/fuzz . FuzzFrameBinary 20s

#!/usr/bin/env bash
# Fuzz the OTA manifest parser and the signature check.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/fuzz ./ota/ FuzzParseManifest 20s
scripts/fuzz ./ota/ FuzzOpenManifest 20s

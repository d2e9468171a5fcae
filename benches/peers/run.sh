#!/usr/bin/env bash
# The peer benchmark: agreement first, then timing. Run from anywhere; reads the
# shared event mix from tests/data and needs the crates.io registry.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --release
cargo bench --bench peers 2>&1 | tee target/peers-bench.txt | grep -E "^peers/|time:"

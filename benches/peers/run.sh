#!/usr/bin/env bash
# The peer benchmark: agreement first, then timing. Run from anywhere; needs
# ../shared beside the checkout (the shared event mix) and the crates.io registry.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --release
cargo bench --bench peers 2>&1 | tee target/peers-bench.txt | grep -E "^peers/|time:"

#!/usr/bin/env bash
# Build blockscope and run the bundled demo guest natively and under blockscope.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cargo build --release --workspace
out="$root/target/demo"
mkdir -p "$out"
gcc -O2 -o "$out/demo" examples/guests/demo.c -lm
echo "== native"
"$out/demo"
echo "== blockscope run -- demo"
target/release/blockscope run -- "$out/demo"
echo "== blockscope run --tier interp -- demo"
target/release/blockscope run --tier interp -- "$out/demo"
echo "== blockscope run --plugin count,mode=insn -- demo   (instrumented: guest instruction counts)"
target/release/blockscope run --plugin count,mode=insn -- "$out/demo"

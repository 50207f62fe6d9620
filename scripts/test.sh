#!/usr/bin/env bash
# Every test of the project, in the order that fails fastest: formatting, lints, the
# crate's unit and doc tests, then every notebook executed headless on the rust kernel
# (tests/, pytest + nbclient). Installs what it needs first (scripts/setup.sh).
# Arguments are passed to pytest, e.g. `scripts/test.sh -k 00-index`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
venv="${CONCLAB_VENV:-$root/.venv}"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
echo "== cargo fmt --check"; cargo fmt --all --check
echo "== cargo clippy"; cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"; cargo test --workspace --locked
echo "== loom models (primitives)"
RUSTFLAGS="--cfg conclab_loom" CARGO_TARGET_DIR=target/loom cargo test -p conclab --release --locked --lib primitives
echo "== notebooks"; "$venv/bin/python" -m pytest tests -p no:cacheprovider "$@"

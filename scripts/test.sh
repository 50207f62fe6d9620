#!/usr/bin/env bash
# Every test of the project, in the order that fails fastest: formatting, lints, the
# crate's unit, integration and doc tests, the loom models, the unit tests again beside a
# CPU hog, then every notebook executed headless on the rust kernel (tests/, pytest +
# nbclient). Installs what it needs first (scripts/setup.sh).
set -euo pipefail
usage() {
    cat <<'USAGE'
usage: scripts/test.sh [pytest arguments...]

Runs, in order: scripts/setup.sh (installs what is missing), cargo fmt --check,
cargo clippy -D warnings, cargo test --workspace, the loom models of the primitives,
scripts/hog-tests.sh (unit tests beside a CPU hog; CONCLAB_HOG_RUNS, default 2),
then pytest tests/ (every notebook headless). Arguments go to pytest, e.g.
  scripts/test.sh --notebook 00-index        one notebook
  scripts/test.sh --param-set default        the parameters a reader sees
  scripts/test.sh -k harness                 only the harness's own tests
USAGE
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
venv="${CONCLAB_VENV:-$root/.venv}"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
echo "== cargo fmt --check"; cargo fmt --all --check
echo "== cargo clippy"; cargo clippy --workspace --all-targets --locked -- -D warnings
# Each notebook's `:dep` line compiles conclab with only its own feature: every one must
# build alone (a `pub use` without its `cfg` breaks every other notebook's first cell).
echo "== each notebook feature alone"
for feature in $(sed -n '/^\[features\]/,/^\[/p' conclab/Cargo.toml | grep -o '^[a-z_]* =' | tr -d ' =' | grep -v '^default$'); do
    cargo check -p conclab --no-default-features --features "$feature" --locked -q || { echo "conclab does not build with only feature '$feature'" >&2; exit 1; }
done
echo "== cargo test"; cargo test --workspace --locked
echo "== loom models (primitives)"
RUSTFLAGS="--cfg conclab_loom" CARGO_TARGET_DIR=target/loom cargo test -p conclab --release --locked --lib primitives
echo "== unit tests beside a CPU hog"; "$root/scripts/hog-tests.sh" "${CONCLAB_HOG_RUNS:-2}"
echo "== notebooks"; "$venv/bin/python" -m pytest tests -p no:cacheprovider "$@"

#!/usr/bin/env bash
# Runs the crate's unit tests N times in a row (default 20) while another process burns
# one CPU, as a busy laptop or CI neighbour would: a test that depends on a quiet
# machine fails here instead of failing at random later.
#   scripts/hog-tests.sh [N]
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
runs="${1:-20}"
[[ "$runs" =~ ^[0-9]+$ && "$runs" -ge 1 ]] || { echo "hog-tests: N must be a whole number >= 1, got '$runs'" >&2; exit 2; }
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo test -p conclab --lib --locked --no-run -q 2>/dev/null || cargo test -p conclab --lib --locked --no-run
( while :; do :; done ) &
hog=$!
trap 'kill $hog 2>/dev/null || true' EXIT
for i in $(seq 1 "$runs"); do
    if ! out="$(cargo test -p conclab --lib --locked -q 2>&1)"; then
        echo "$out"
        echo "hog-tests: unit tests failed in run $i of $runs beside a CPU hog" >&2
        exit 1
    fi
    echo "hog-tests: run $i of $runs passed ($(grep -o '[0-9]* passed' <<<"$out" | head -1))"
done

#!/usr/bin/env bash
# Runs every experiment of the CLI at its default parameters on one CPU (taskset -c 0),
# the way a reader in a one-CPU container or beside a busy neighbour would, and reports
# each one's exit status and time. Any failure (exit status not 0) fails the script.
#   scripts/one-cpu-defaults.sh [experiment...]     (all when none)
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v taskset >/dev/null || { echo "one-cpu-defaults: needs taskset (util-linux)" >&2; exit 2; }
cargo build --release -p conclab --locked -q
bin=target/release/conclab
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    mapfile -t names < <("$bin" list | awk '/^[a-z]/ {print $1}')
fi
failed=0
for e in "${names[@]}"; do
    start=$(date +%s.%N)
    if out="$(taskset -c 0 "$bin" run "$e" 2>&1)"; then status=ok; else status="FAILED ($?)"; failed=1; fi
    printf '%-20s %-12s %6.1f s\n' "$e" "$status" "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')"
    [ "$status" = ok ] || echo "$out" | tail -3 | sed 's/^/    /'
done
exit $failed

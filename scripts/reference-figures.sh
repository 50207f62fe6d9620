#!/usr/bin/env bash
# Re-makes the reference figures under docs/figures (or the folder given): every experiment
# that `conclab list` names, run with its default parameters (`conclab run NAME --out DIR`:
# NAME.json + one SVG per figure), and DIR/README.md naming the machine they came from.
#
#   scripts/reference-figures.sh                    build the CLI (release), then run them all
#   scripts/reference-figures.sh DIR NAME...        only these experiments, into DIR
#   CONCLAB_BIN=target/release/conclab scripts/reference-figures.sh    use a built binary
#
# Figures measure the machine that runs them: commit them from a quiet machine, and say
# which in the commit message too.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-docs/figures}"
shift || true
bin="${CONCLAB_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked -p conclab
  bin="${CARGO_TARGET_DIR:-target}/release/conclab"
fi
[ -x "$bin" ] || { echo "reference-figures: no conclab binary at $bin" >&2; exit 1; }

# `conclab list`: one line per experiment starting with its name, then indented detail lines.
mapfile -t listed < <("$bin" list | awk 'NF && $0 !~ /^[[:space:]]/ { print $1 }')
[ "${#listed[@]}" -gt 0 ] || { echo "reference-figures: conclab list named no experiment" >&2; exit 1; }
if [ "$#" -gt 0 ]; then names=("$@"); else names=("${listed[@]}"); fi

mkdir -p "$out"
for name in "${names[@]}"; do
  echo "== $name"
  "$bin" run "$name" --out "$out"
  # Kept on one line: the committed set is half the size (the CLI pretty-prints for people;
  # `python3 -m json.tool NAME.json` shows it that way again).
  python3 -c 'import json, sys; p = sys.argv[1]; d = json.load(open(p)); open(p, "w").write(json.dumps(d, ensure_ascii=False, separators=(",", ":")) + "\n")' "$out/$name.json"
done

{
  echo "# Reference figures"
  echo
  echo "Made by [\`scripts/reference-figures.sh\`](../../scripts/reference-figures.sh): every experiment of"
  echo "\`conclab list\`, run with its default parameters by \`conclab run NAME --out docs/figures\`"
  echo "(\`NAME.json\` holds the parameters, the machine card and the data, on one line: \`python3 -m json.tool NAME.json\`"
  echo "shows it indented; one SVG per figure)."
  echo "They show what one machine did; the notebooks measure yours."
  echo
  echo "Last made on $(date -u +%Y-%m-%d) from commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`, on this machine (\`conclab machine\`;"
  echo "each \`NAME.json\` keeps the card of the machine that made it):"
  echo
  echo '```text'
  "$bin" machine
  echo '```'
  echo
  for name in "${listed[@]}"; do
    for svg in "$out/$name".svg "$out/$name"-[0-9]*.svg; do
      [ -f "$svg" ] || continue
      file="$(basename "$svg")"
      echo "## \`$name\`: $file"
      echo
      echo "![$name]($file)"
      echo
    done
    # The run's findings, as the CLI printed them (NAME.json keeps them).
    if [ -f "$out/$name.json" ]; then
      python3 - "$out/$name.json" <<'PY'
import json, sys
try:
    found = json.load(open(sys.argv[1])).get("findings") or []
except (OSError, ValueError):
    found = []
if found:
    print("What this run showed:\n")
    for f in found:
        text = f.get("text", "") if isinstance(f, dict) else str(f)
        if isinstance(f, dict) and str(f.get("sure", "")).lower() == "unclear":
            text += " (not clear: the spreads overlap, or too few samples to tell)"
        print(f"- {text}")
    print()
PY
    fi
  done
} > "$out/README.md"
echo "wrote $out/README.md"

#!/usr/bin/env bash
# Opens the lab: sets up what is missing (scripts/setup.sh), then starts JupyterLab on
# the index notebook, on localhost only, with a token. Extra arguments go to jupyter lab.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
venv="${CONCLAB_VENV:-$root/.venv}"
cd "$root/notebooks"
extra=()
# Jupyter refuses to start as root unless told; root is common in containers and VMs.
[ "$(id -u)" = 0 ] && extra+=(--allow-root)
# default_url: the URL printed in the log (and `/`) opens the index, not the Launcher.
exec "$venv/bin/jupyter" lab 00-index.ipynb --ServerApp.ip=127.0.0.1 \
  --LabApp.default_url=/lab/tree/00-index.ipynb "${extra[@]}" "$@"

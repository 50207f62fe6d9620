#!/usr/bin/env bash
# The container's entry point (Dockerfile).
#   no arguments          JupyterLab on notebooks/00-index.ipynb, listening on 0.0.0.0
#                         (inside the container; compose.yaml publishes it on 127.0.0.1
#                         only), port CONCLAB_PORT (8888), with a login token: a random
#                         one printed in the log, or JUPYTER_TOKEN when set
#   -x ...                the same, with these extra `jupyter lab` options
#   CMD ARGS...           runs CMD with the lab's venv first on PATH, e.g. Binder's
#                         `jupyterhub-singleuser ...` (tests/test_binder.py), or `bash`
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CONCLAB_VENV:-$root/.venv}"
export PATH="$venv/bin:$PATH"

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$@"
fi

# Well under a second in the image (everything is there); repairs what a volume hid.
"$root/scripts/setup.sh"
cd "$root/notebooks"
exec jupyter lab 00-index.ipynb \
  --ServerApp.ip=0.0.0.0 \
  --ServerApp.port="${CONCLAB_PORT:-8888}" \
  --ServerApp.open_browser=False \
  --LabApp.default_url=/lab/tree/00-index.ipynb \
  "$@"

#!/usr/bin/env bash
# Installs what the lab needs, idempotently, and prints where it is:
#   - .venv: a Python venv with the pinned JupyterLab and test tools (tools/requirements.txt)
#   - evcxr_jupyter (cargo install --locked) when the pinned version is missing
#   - the `rust` Jupyter kernel, registered inside .venv (not in your global Jupyter dirs),
#     with EVCXR_CONFIG_DIR pointing at evcxr/ (build cache on)
#   - rust-src, if rustup can add it (better type inference in cells; optional)
# A second run on a set-up machine changes nothing and takes about a second.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=versions.env
source scripts/versions.env
venv="${CONCLAB_VENV:-$root/.venv}"
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

# 1. Prerequisites, with what to install when one is missing.
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust >= ${RUST_VERSION} from https://rustup.rs (then open a new shell)"
command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python >= ${PYTHON_VERSION} (Debian/Ubuntu: apt-get install python3 python3-venv)"
python3 -c 'import venv, ensurepip' 2>/dev/null || die "python3 cannot create virtual environments: install python3-venv (Debian/Ubuntu: apt-get install python3-venv)"
rustc_v="$(rustc --version | awk '{print $2}')"
if [ "$(printf '%s\n%s\n' "$RUST_VERSION" "$rustc_v" | sort -V | head -1)" != "$RUST_VERSION" ]; then
  die "rustc $rustc_v is older than $RUST_VERSION: run 'rustup update stable'"
fi

# 2. Python tools, pinned; skipped when the venv already has exactly this set.
#    With them, the papermill translator for the `rust` kernel (tools/papermill-rust),
#    installed editable: `papermill -k rust -p name value` sets a notebook's typed parameters.
want="$(cat tools/requirements.txt tools/papermill-rust/pyproject.toml | python3 -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  say "creating $venv with the pinned Python tools (first time: about a minute)"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r tools/requirements.txt
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-deps -e tools/papermill-rust
  echo "$want" > "$venv/.requirements.sha256"
fi

# 3. evcxr_jupyter at the pinned version (first time: about 6 minutes on 2 cores).
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
evcxr_bin="$cargo_bin/evcxr_jupyter"
have=""
if command -v cargo >/dev/null && cargo install --list 2>/dev/null | grep -q "^evcxr_jupyter v${EVCXR_VERSION}:"; then
  have=yes
fi
if [ -z "$have" ] || [ ! -x "$evcxr_bin" ]; then
  say "building evcxr_jupyter ${EVCXR_VERSION} (cargo install --locked; about 6 minutes on 2 cores)"
  cargo install evcxr_jupyter --version "${EVCXR_VERSION}" --locked --quiet
fi

# 4. The `rust` kernel inside the venv, with the lab's evcxr config directory.
kdir="$venv/share/jupyter/kernels/rust"
if [ ! -f "$kdir/kernel.json" ] || ! grep -q "\"$root/evcxr\"" "$kdir/kernel.json" || ! grep -q "\"$evcxr_bin\"" "$kdir/kernel.json" \
  || ! grep -q "\"CONCLAB_EVCXR_VERSION\": \"$EVCXR_VERSION\"" "$kdir/kernel.json"; then
  say "registering the rust kernel in $kdir"
  JUPYTER_PATH="$venv/share/jupyter" "$evcxr_bin" --install >/dev/null
  "$venv/bin/python" - "$kdir/kernel.json" "$root/evcxr" "$EVCXR_VERSION" <<'PY'
import json, sys
path, config_dir, version = sys.argv[1:]
spec = json.load(open(path))
spec["display_name"] = "Rust (Concurrency Lab)"
spec["env"] = {"EVCXR_CONFIG_DIR": config_dir, "CONCLAB_EVCXR_VERSION": version}
json.dump(spec, open(path, "w"), indent=2)
PY
fi

# 5. rust-src improves type inference in cells; the lab works without it.
if command -v rustup >/dev/null 2>&1 && ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
  rustup component add rust-src >/dev/null 2>&1 || say "note: could not add rust-src (optional; cells still run)"
fi

say "ready: venv $venv, kernel 'rust' (evcxr_jupyter ${EVCXR_VERSION}), config $root/evcxr"

# The Rust Concurrency Lab in a container: JupyterLab with the evcxr `rust` kernel, set up
# by the same scripts/setup.sh as the native route (`make lab`).
#
#   docker compose up                      build (first time ~10 min), then open the printed
#                                          http://127.0.0.1:8888/lab?token=... link
#   docker build -t conclab-lab . && docker run --rm --init -p 127.0.0.1:8888:8888 conclab-lab
#
# Versions: scripts/versions.env is the source of truth (setup.sh reads it for evcxr); the
# ARG defaults below repeat its RUST_VERSION and PYTHON_VERSION for the base image and apt,
# and tests/test_packaging.py fails when they disagree. Bookworm's python3 is 3.11, the
# version tools/requirements.txt is frozen on.
ARG RUST_VERSION=1.95.0
FROM rust:${RUST_VERSION}-slim-bookworm

ARG PYTHON_VERSION=3.11
# Binder and the Jupyter docker-stacks run notebooks as jovyan, uid 1000, HOME /home/jovyan.
# On Linux, build with NB_UID=$(id -u) if yours differs, so edits in the mounted
# notebooks/ folder keep your ownership (compose.yaml: CONCLAB_UID).
ARG NB_USER=jovyan
ARG NB_UID=1000

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# python3 + venv for JupyterLab, make for `make render`, gcc + libc6-dev to link cells
# (the slim image has both already; listed so the lab does not depend on that).
# rust-src (better type inference in cells) goes into the root-owned toolchain now,
# so setup.sh finds it installed. The user gets its own CARGO_HOME for evcxr_jupyter.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      "python3=${PYTHON_VERSION}.*" \
      "python3-venv=${PYTHON_VERSION}.*" \
      "make=4.3-*" \
      "gcc=4:12.2.*" \
      "libc6-dev=2.36-*" \
 && rm -rf /var/lib/apt/lists/* \
 && rustup component add rust-src \
 && useradd --create-home --no-log-init --uid "${NB_UID}" --shell /bin/bash \
      --comment "Default user" "${NB_USER}"

ENV NB_USER=${NB_USER} \
    NB_UID=${NB_UID} \
    USER=${NB_USER} \
    HOME=/home/${NB_USER} \
    CARGO_HOME=/home/${NB_USER}/.cargo \
    PATH=/home/${NB_USER}/.cargo/bin:${PATH} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

USER ${NB_UID}
WORKDIR /home/${NB_USER}/lab

# 1. What setup.sh reads, alone, so editing a notebook or the crate does not redo the
#    ~6 minute evcxr_jupyter build: the venv, evcxr_jupyter (cargo install --locked) and
#    the `rust` kernel, exactly as on a native machine.
COPY --chown=${NB_USER}:${NB_USER} scripts/ scripts/
COPY --chown=${NB_USER}:${NB_USER} tools/requirements.txt tools/
COPY --chown=${NB_USER}:${NB_USER} tools/papermill-rust/ tools/papermill-rust/
COPY --chown=${NB_USER}:${NB_USER} evcxr/ evcxr/
# evcxr_jupyter's unpacked dependency sources are not needed once it is built (~200 MB).
RUN scripts/setup.sh \
 && rm -rf "${CARGO_HOME}/registry/src"

# 2. The whole lab, then one headless run of the index notebook to fill evcxr's build
#    cache (~/.cache/evcxr, `:cache` in evcxr/init.evcxr): the first `:dep` cell in a new
#    container then takes seconds instead of half a minute. The harness's own build
#    folder is dropped afterwards; the cache is what new kernels use.
COPY --chown=${NB_USER}:${NB_USER} . .
RUN scripts/setup.sh \
 && .venv/bin/python tools/render.py 00-index --param-set quick --out /tmp/warm \
 && rm -rf /tmp/warm target/evcxr-harness

EXPOSE 8888
# No arguments: JupyterLab on notebooks/00-index.ipynb, 0.0.0.0:8888 inside the container,
# with a token (JUPYTER_TOKEN to choose it). Arguments (Binder's `jupyterhub-singleuser ...`,
# `bash`) run as given with the lab's venv first on PATH; arguments that start with `-`
# go to `jupyter lab`.
ENTRYPOINT ["/home/jovyan/lab/scripts/docker-start.sh"]
CMD []

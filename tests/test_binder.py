"""Binder: the image must serve the lab when BinderHub starts it.

BinderHub builds a repository that has a Dockerfile with that Dockerfile (repo2docker,
with the build args NB_USER and NB_UID) and starts the container with its own command:
`jupyterhub-singleuser`, which registers with the BinderHub's JupyterHub and serves
JupyterLab under /user/<name>/. No Docker engine runs here, so this starts exactly that
command through the image's entry point (scripts/docker-start.sh: the lab's venv first on
PATH) on this machine, next to a stand-in for the hub's API (the version check at start and
the token check of each request), and asks the server for what a Binder user needs: the
`rust` kernel and the index notebook in JupyterLab. The Dockerfile side (user jovyan, uid
1000, the repository in its home) is checked in tests/test_packaging.py.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("CONCLAB_VENV", ROOT / ".venv"))
USER = "jovyan"
TOKEN = "binder-test-token"
SCOPES = [f"access:servers!server={USER}/", f"access:servers!user={USER}"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyterhub_version() -> str:
    out = subprocess.run([str(VENV / "bin" / "python"), "-c", "import jupyterhub; print(jupyterhub.__version__)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


class FakeHub:
    """The two hub API calls a single-user server makes: GET /hub/api (version) and
    GET /hub/api/user (whose token is this?)."""

    def __init__(self, version: str):
        self.calls: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hub.calls.append(self.path)
                path = self.path.split("?")[0].rstrip("/")
                if path == "/hub/api":
                    body = {"version": version}
                elif path == "/hub/api/user" and self.headers.get("Authorization") == f"token {TOKEN}":
                    body = {"kind": "user", "name": USER, "admin": False, "groups": [], "scopes": SCOPES,
                            "session_id": None}
                else:
                    self.send_response(403)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("X-JupyterHub-Version", version)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_binder_s_single_user_command_serves_the_lab_and_the_rust_kernel(tmp_path: Path):
    assert (VENV / "bin" / "jupyterhub-singleuser").exists(), \
        "jupyterhub-singleuser missing from .venv: tools/requirements.txt pins jupyterhub; run scripts/setup.sh"
    port = free_port()
    prefix = f"/user/{USER}/"
    with FakeHub(jupyterhub_version()) as hub:
        env = dict(
            os.environ,
            JUPYTERHUB_API_TOKEN=TOKEN,
            JUPYTERHUB_API_URL=f"http://127.0.0.1:{hub.port}/hub/api",
            JUPYTERHUB_CLIENT_ID=f"jupyterhub-user-{USER}",
            JUPYTERHUB_USER=USER,
            JUPYTERHUB_SERVER_NAME="",
            JUPYTERHUB_BASE_URL="/",
            JUPYTERHUB_SERVICE_PREFIX=prefix,
            JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}{prefix}",
            JUPYTERHUB_OAUTH_CALLBACK_URL=f"{prefix}oauth_callback",
            JUPYTERHUB_OAUTH_ACCESS_SCOPES=json.dumps(SCOPES),
            JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        )
        args = [str(ROOT / "scripts" / "docker-start.sh"), "jupyterhub-singleuser", "--ip=127.0.0.1", f"--port={port}"]
        if os.geteuid() == 0:  # Binder runs it as jovyan; a root CI must say so
            args.append("--allow-root")
        log = tmp_path / "server.log"
        with log.open("w") as out:
            server = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}{prefix}"

        def get(path: str, token: str | None = TOKEN) -> tuple[int, str]:
            headers = {"Authorization": f"token {token}"} if token else {}
            req = urllib.request.Request(base + path, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=20) as resp:
                    return resp.status, resp.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, ""

        try:
            until = time.monotonic() + 90
            while True:
                assert server.poll() is None, f"the server exited ({server.returncode}):\n{log.read_text()[-3000:]}"
                try:
                    if get("api", token=None)[0] == 200:
                        break
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
                assert time.monotonic() < until, f"no answer on {base}api within 90 s:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
            status, body = get("api/kernelspecs")
            assert status == 200, log.read_text()[-3000:]
            specs = json.loads(body)["kernelspecs"]
            assert "rust" in specs and specs["rust"]["spec"]["language"] == "rust", specs.keys()
            # The notebook is there (JupyterLab's page alone would answer for any path) ...
            status, body = get("api/contents/notebooks/00-index.ipynb?content=0")
            assert status == 200 and json.loads(body)["type"] == "notebook", status
            # ... and JupyterLab serves the page Binder's link opens.
            status, page = get("lab/tree/notebooks/00-index.ipynb")
            assert status == 200 and "jupyter-config-data" in page, status
            # Without the hub's token nothing but the version is served.
            assert get("api/kernelspecs", token="wrong")[0] != 200
            assert "/hub/api/user" in hub.calls
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)


@pytest.mark.parametrize("needed", ["jupyterhub-singleuser", "jupyter-notebook", "jupyter-lab"])
def test_the_commands_binder_may_run_are_in_the_venv(needed: str):
    assert (VENV / "bin" / needed).exists(), f"{needed} is not in .venv: see tools/requirements.in"

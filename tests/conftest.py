"""pytest options for the notebook harness, and the timing report it writes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "target" / "notebook-report.json"
_timings: dict[str, dict] = {}


def pytest_addoption(parser):
    parser.addoption("--param-set", default=os.environ.get("CONCLAB_PARAM_SET", "quick"),
                     help="parameter set applied in each `parameters` cell ('default' injects none)")
    parser.addoption("--notebook", action="append", default=[],
                     help="run only this notebook (name or stem, e.g. 00-index); repeatable")
    parser.addoption("--cell-timeout", type=int, default=int(os.environ.get("CONCLAB_CELL_TIMEOUT", "900")),
                     help="seconds one cell may run (the first cell compiles dependencies)")


def record_timing(name: str, entry: dict) -> None:
    _timings[name] = entry


def pytest_sessionfinish(session, exitstatus):
    if not _timings:
        return
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    try:
        old = json.loads(REPORT.read_text())
    except (OSError, ValueError):
        old = {}
    notebooks = old.get("notebooks", {})
    notebooks.update(_timings)
    REPORT.write_text(json.dumps({"notebooks": notebooks}, indent=2))

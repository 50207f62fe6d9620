"""Runs tests/notebooks/async-helper.ipynb, the harness's own check of `conclab::lab::rt`
in a real evcxr kernel: async code written in cells runs through the helper twice without
changing the kernel's thread count; a body that never finishes and one that blocks its
thread each end in a clear `RtError`, and the next cell runs; the helper still works after
a bare top-level `.await` has switched the kernel into async mode."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import record_timing
from nbtools import ROOT, execute, lab_meta, read, tags
from test_notebooks import async_problems, cell_problems, output_text

NOTEBOOK = ROOT / "tests" / "notebooks" / "async-helper.ipynb"


def test_the_helper_notebook_is_committed_clean():
    nb = read(NOTEBOOK)
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            assert not c.get("outputs") and c.get("execution_count") is None, f"cell {i} has outputs"
            assert not async_problems(i, c), async_problems(i, c)
    assert any("demo-async-mode" in tags(c) for c in nb.cells)


def test_async_helper_in_a_kernel(request):
    wanted = request.config.getoption("--notebook")
    if wanted and NOTEBOOK.stem not in wanted:
        pytest.skip("not selected with --notebook")
    nb = read(NOTEBOOK)
    threads: dict = {}
    # Small cell timeout: a helper that hangs must fail this test, not stall the run.
    total, seconds = execute(nb, "default", min(request.config.getoption("--cell-timeout"), 300), threads,
                             cwd=NOTEBOOK.parent)
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    record_timing("tests/" + NOTEBOOK.stem, {
        "param_set": "default",
        "total_seconds": round(total, 2),
        "first_cell_seconds": round(seconds.get(code[0][0], 0.0), 3),
        "cells": [{"index": i, "seconds": round(seconds.get(i, 0.0), 3), "threads": list(threads.get(i, (None,) * 3))[1:]}
                  for i, _ in code],
    })
    problems = [p for i, c in code for p in cell_problems(i, c, threads.get(i))]
    for i, c in code:
        if c.get("execution_count") is None:
            problems.append(f"cell {i} did not run")
        want = lab_meta(c).get("rt_error")
        text = "\n".join(output_text(o) for o in c.get("outputs", []))
        if want and want not in text:
            problems.append(f"cell {i}: expected an RtError saying {want!r}, got {text[:300]!r}")
    # the thread counts were read around every cell after the first (which starts the process)
    assert all(threads.get(i, (None, None, None))[1] is not None for i, _ in code[1:]), threads
    assert not problems, "\n".join(problems)

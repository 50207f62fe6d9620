"""Executes every notebook headless on the `rust` kernel and checks what it shows.

Static checks (no kernel): kernelspec, no committed outputs, navigation, metadata of
tagged cells. Execution: quick parameters applied in each `parameters` cell; then
every cell's outputs are checked:
  - an error output only in cells tagged `raises-exception`, with the rustc code named
    in the cell's `conclab.rustc_error` metadata (and such a cell must fail);
  - no `panicked at` unless the cell is tagged `expect-panic`;
  - no `ParamError` box unless tagged `expect-param-error` (which must show one);
  - no stderr text unless tagged `expect-panic` (evcxr prints `?` errors there);
  - every cell tagged `figure` shows an SVG;
  - no `RunError` box (a failed run) unless tagged `expect-run-error`, no `RtError` box
    unless tagged `expect-rt-error` (each tag must show its box);
  - the process evcxr runs cells in has no more threads after a cell than before it
    (a thread or runtime left running), unless the cell is tagged `demo-async-mode`.
Static: no bare top-level `.await` in a lesson's code cell (it switches evcxr into async
mode for every later cell; async code goes through `rt::run`); only the harness's own
tests/notebooks/async-helper.ipynb may tag one `demo-async-mode`. Kernel metadata as JupyterLab writes it (tools/tidy_notebooks.py).
Per-cell and per-notebook wall times go to target/notebook-report.json.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import record_timing
from nbtools import (
    DEMO_ASYNC_TAG, KERNELSPEC, LANGUAGE_INFO, NOTEBOOKS, TIDY, bare_awaits, execute, lab_meta, linked_notebooks,
    nav_cells, nav_line, notebook_paths, read, tags,
)

PATHS = notebook_paths()
IDS = [p.stem for p in PATHS]
FINDINGS = "What this run shows:"
RUSTC_CODE = re.compile(r"\[(E\d{4})\]")


def selected(config, path: Path) -> bool:
    wanted = config.getoption("--notebook")
    return not wanted or path.stem in wanted or path.name in wanted


# ---------------------------------------------------------------- static checks

def test_notebooks_exist():
    assert PATHS, f"no notebooks in {NOTEBOOKS}"
    assert PATHS[0].name == "00-index.ipynb"


def async_problems(i, cell, demo_allowed: bool = True) -> list[str]:
    """A bare top-level `.await` is allowed only in a cell tagged to demonstrate it, and only
    where `demo_allowed` (the harness's own notebook; a lesson never switches a reader's kernel)."""
    lines = bare_awaits(cell.source)
    if DEMO_ASYNC_TAG in tags(cell):
        if not demo_allowed:
            return [f"cell {i} is tagged {DEMO_ASYNC_TAG}: a lesson notebook shows the trap as text; "
                    f"the kernel-level demo lives in tests/notebooks/async-helper.ipynb"]
        return [] if lines else [f"cell {i} is tagged {DEMO_ASYNC_TAG} but has no top-level `.await`"]
    return [
        f"cell {i}, line {n}: a top-level `.await` switches evcxr into async mode for every later cell "
        f"(and `tokio::spawn(..).await` can then hang the kernel): run async code with "
        f"`rt::run(Rt::multi(2), || async {{ .. }})`, or tag the cell {DEMO_ASYNC_TAG} if it demonstrates the trap"
        for n in lines
    ]


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_committed_form(path: Path):
    nb = read(path)
    tidy = f"run `python {TIDY}` (what JupyterLab changed is put back)"
    assert nb.metadata.get("kernelspec") == KERNELSPEC, f"kernelspec must be {KERNELSPEC}: {tidy}"
    assert nb.metadata.get("language_info") == LANGUAGE_INFO, f"language_info must be {LANGUAGE_INFO}: {tidy}"
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            assert not c.get("outputs"), f"cell {i} has committed outputs: {tidy}"
            assert c.get("execution_count") is None, f"cell {i} has an execution count: {tidy}"
            assert not async_problems(i, c, demo_allowed=False), async_problems(i, c, demo_allowed=False)[0]
            t = tags(c)
            if "raises-exception" in t:
                assert RUSTC_CODE.fullmatch(f"[{lab_meta(c).get('rustc_error', '')}]"), \
                    f"cell {i} is tagged raises-exception but has no conclab.rustc_error code (e.g. E0373)"
            if "parameters" in t:
                assert "quick" in lab_meta(c).get("param_sets", {}), f"parameters cell {i} has no quick param set"
            last = [ln for ln in c.source.strip().splitlines() if ln.strip()][-1:] or [""]
            if re.search(r"\.figure(_n\(\s*\d+\s*\))?(\(\))?\s*$", last[0]) and "expect-param-error" not in t:
                assert "figure" in t, f"cell {i} ends in .figure() or .figure_n(..) but is not tagged `figure`"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_navigation(path: Path):
    nb = read(path)
    i = PATHS.index(path)
    navs = nav_cells(nb)
    assert navs == [0, len(nb.cells) - 1], "the first and last cells must be navigation cells (run tools/tidy_notebooks.py)"
    want = nav_line(PATHS, i)
    for j in navs:
        assert nb.cells[j].source == want, f"navigation out of date in cell {j}: run tools/tidy_notebooks.py"


def test_index_links_every_notebook():
    linked = linked_notebooks(read(PATHS[0]))
    names = {p.name for p in PATHS[1:]}
    assert linked >= names, f"index does not link {sorted(names - linked)}"
    assert linked <= names | {PATHS[0].name}, f"index links missing notebooks {sorted(linked - names)}"


# ---------------------------------------------------------------- execution

def output_text(out) -> str:
    if out.output_type == "stream":
        return out.text
    if out.output_type == "error":
        return "\n".join([out.ename, out.evalue, *out.traceback])
    return "\n".join(str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))


def cell_problems(i, cell, threads=None) -> list[str]:
    """What is wrong with an executed cell's outputs; `threads` is `(pid, before, after)`,
    the thread counts of the kernel's cell process around it (see nbtools.execute)."""
    t, outs, problems = tags(cell), cell.get("outputs", []), []
    where = f"cell {i} ({cell.source.strip().splitlines()[0][:60] if cell.source.strip() else ''!r})"
    errors = [o for o in outs if o.output_type == "error"]
    text = "\n".join(output_text(o) for o in outs)
    if "raises-exception" in t:
        want = lab_meta(cell).get("rustc_error")
        codes = set(RUSTC_CODE.findall("\n".join(output_text(o) for o in errors)))
        if not errors:
            problems.append(f"{where}: should fail to compile with {want} but ran")
        elif want not in codes:
            problems.append(f"{where}: expected rustc {want}, got {sorted(codes) or 'no code'}: {output_text(errors[0])[:300]}")
    elif errors:
        problems.append(f"{where}: error: {output_text(errors[0])[:500]}")
    if "panicked at" in text and "expect-panic" not in t:
        problems.append(f"{where}: a panic: {text[text.index('panicked at'):][:300]}")
    has_param_error = "ParamError:" in text
    if "expect-param-error" in t and not has_param_error:
        problems.append(f"{where}: tagged expect-param-error but shows no ParamError")
    want_param = lab_meta(cell).get("param_error")
    if "expect-param-error" in t and has_param_error and want_param and f"ParamError: {want_param} " not in text:
        problems.append(f"{where}: expected a ParamError about {want_param!r}: {text[text.index('ParamError:'):][:200]}")
    if has_param_error and "expect-param-error" not in t:
        problems.append(f"{where}: {text[text.index('ParamError:'):][:300]}")
    stderr = "".join(o.text for o in outs if o.output_type == "stream" and o.name == "stderr").strip()
    if stderr and not {"expect-panic", "raises-exception"} & set(t):
        problems.append(f"{where}: stderr: {stderr[:300]}")
    for kind, tag in (("RunError", "expect-run-error"), ("RtError", "expect-rt-error")):
        shown = f"{kind}:" in text
        if tag in t and not shown:
            problems.append(f"{where}: tagged {tag} but shows no {kind}")
        if shown and tag not in t:
            problems.append(f"{where}: {text[text.index(kind + ':'):][:300]}")
    if threads is not None and DEMO_ASYNC_TAG not in t:
        pid, before, after = threads
        if before is not None and after is not None and after > before:
            problems.append(
                f"{where}: left {after - before} thread(s) running in the kernel's cell process "
                f"(pid {pid}: {before} threads before the cell, {after} after): join every thread and shut "
                f"down every runtime or pool before the cell ends"
            )
    svgs = [str(o.get("data", {}).get("image/svg+xml", "")) for o in outs if "image/svg+xml" in o.get("data", {})]
    if "figure" in t and not svgs:
        problems.append(f"{where}: tagged figure but shows no SVG")
    if any("could not be drawn" in svg for svg in svgs):
        problems.append(f"{where}: the figure could not be drawn")
    last = ([ln for ln in cell.source.strip().splitlines() if ln.strip()] or [""])[-1]
    if "figure" in t and re.search(r"\.figure\(\)\s*$", last) and svgs and FINDINGS not in text:
        problems.append(f"{where}: the main figure shows no findings ('{FINDINGS}'): implement Report::findings")
    if any("figure error:" in svg for svg in svgs):
        problems.append(f"{where}: the figure reports a builder misuse (a 'figure error:' line)")
    return problems


def committed_numbers(nb) -> list:
    """Each cell's number in the committed notebook; an injected parameter cell gets the
    number of the parameters cell it follows, with a '+'."""
    out, n = [], -1
    for c in nb.cells:
        injected = "injected-parameters" in tags(c)
        n += 0 if injected else 1
        out.append(f"{n}+" if injected else n)
    return out


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_execute(path: Path, request):
    if not selected(request.config, path):
        pytest.skip("not selected with --notebook")
    param_set = request.config.getoption("--param-set")
    nb = read(path)
    threads: dict = {}
    try:
        total, seconds = execute(nb, param_set, request.config.getoption("--cell-timeout"), threads)
    except KeyError as e:
        raise pytest.UsageError(str(e)) from None
    labels = committed_numbers(nb)
    cells = [
        {"index": labels[i], "tags": tags(c), "seconds": round(seconds.get(i, 0.0), 3),
         "first_line": (c.source.strip().splitlines() or [""])[0][:80],
         "threads": list(threads.get(i, (None, None, None)))[1:]}
        for i, c in enumerate(nb.cells) if c.cell_type == "code"
    ]
    code_times = sorted(c["seconds"] for c in cells)
    record_timing(path.stem, {
        "param_set": param_set,
        "total_seconds": round(total, 2),
        "first_cell_seconds": cells[0]["seconds"] if cells else None,
        "median_cell_seconds": code_times[len(code_times) // 2] if code_times else None,
        "cells": cells,
    })
    problems = [
        p for i, c in enumerate(nb.cells) if c.cell_type == "code" for p in cell_problems(labels[i], c, threads.get(i))
    ]
    assert not problems, "\n".join(problems)

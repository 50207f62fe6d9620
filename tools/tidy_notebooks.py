#!/usr/bin/env python3
"""Keeps the notebooks in their committed form: navigation cells (first and last) that
match the notebook list, no outputs, no execution counts, and the kernel metadata exactly
as JupyterLab writes it for the lab's `rust` kernel (kernelspec and language_info), so that
opening a notebook in the lab does not change it. Run it after working in JupyterLab.

    tools/tidy_notebooks.py          rewrite notebooks/ in place
    tools/tidy_notebooks.py --check  only report what would change (exit 1 if anything)
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nbtools import KERNELSPEC, LANGUAGE_INFO, nav_cells, nav_line, notebook_paths, read  # noqa: E402


def tidy(path: Path, paths: list[Path]) -> bool:
    nb = read(path)
    before = nbformat.writes(nb)
    want = nav_line(paths, paths.index(path))
    navs = nav_cells(nb)
    if not navs or navs[0] != 0:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(want))
    if nav_cells(nb)[-1] != len(nb.cells) - 1:
        nb.cells.append(nbformat.v4.new_markdown_cell(want))
    for i in nav_cells(nb):
        nb.cells[i].source = want
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
            c.metadata.pop("execution", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = dict(LANGUAGE_INFO)
    after = nbformat.writes(nb)
    if after != before:
        if "--check" not in sys.argv:
            path.write_text(after + ("" if after.endswith("\n") else "\n"))
        return True
    return False


def main() -> int:
    paths = notebook_paths()
    changed = [p.name for p in paths if tidy(p, paths)]
    verb = "would change" if "--check" in sys.argv else "tidied"
    for name in changed:
        print(f"{verb}: {name}")
    return 1 if changed and "--check" in sys.argv else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Executes notebooks on the rust kernel and writes standalone HTML with their figures.

    tools/render.py                      every notebook, default parameters, into build/html
    tools/render.py --param-set quick    the quick parameters the tests use
    tools/render.py --out DIR 00-index   chosen notebooks into DIR

The notebooks in notebooks/ are not modified (outputs stay out of git).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nbconvert import HTMLExporter  # noqa: E402

from nbtools import ROOT, execute, notebook_paths, read  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="names or stems; all when none")
    ap.add_argument("--param-set", default="default")
    ap.add_argument("--out", default=str(ROOT / "build" / "html"))
    ap.add_argument("--cell-timeout", type=int, default=900)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [p for p in notebook_paths() if not args.notebooks or p.stem in args.notebooks or p.name in args.notebooks]
    exporter = HTMLExporter(template_name="lab")
    t_all = time.monotonic()
    for p in paths:
        nb = read(p)
        total, _ = execute(nb, args.param_set, args.cell_timeout)
        html, _ = exporter.from_notebook_node(nb)
        target = out / (p.stem + ".html")
        target.write_text(html)
        print(f"{p.name}: {total:.1f} s -> {target}")
    print(f"rendered {len(paths)} notebook(s) in {time.monotonic() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The papermill translator for the `rust` kernel (tools/papermill-rust): typed values,
refusals before any kernel starts, and one notebook run with injected parameters."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from nbtools import NOTEBOOKS, conclab_papermill as cp, notebook_paths, read

ROOT = Path(__file__).resolve().parents[1]
PAPERMILL = Path(sys.executable).parent / "papermill"
PATHS_FOR_PARAMS = notebook_paths()


def papermill(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    assert PAPERMILL.exists(), f"{PAPERMILL} missing: run scripts/setup.sh (it installs papermill and the translator)"
    return subprocess.run([str(PAPERMILL), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- values to Rust

@pytest.mark.parametrize("value, rust_type, expect", [
    (8, "usize", "8"), ("8", "u64", "8"), (8.0, "u32", "8"), (-3, "i64", "-3"),
    (2, "f64", "2.0"), (0.5, "f64", "0.5"), ("1e-3", "f64", "0.001"),
    (True, "bool", "true"), ("false", "bool", "false"),
    ("a \"b\"", "String", '"a \\"b\\"".to_string()'), ("x", "&str", '"x"'),
    ([1, 4, 16], "Vec<usize>", "vec![1, 4, 16]"), ("1,4", "Vec<usize>", "vec![1, 4]"),
    ([0.5, 2], "Vec<f64>", "vec![0.5, 2.0]"), ([], "Vec<u64>", "vec![]"),
    ("9007199254740993.0", "u64", "9007199254740993"), (42, "String", '"42".to_string()'),
    ("a\tb\r", "&'static str", '"a\\tb\\r"'), ([[1], [2, 3]], "Vec<Vec<u8>>", "vec![vec![1], vec![2, 3]]"),
])
def test_values_become_typed_rust(value, rust_type, expect):
    assert cp.literal(value, rust_type) == expect


@pytest.mark.parametrize("value, rust_type, says", [
    (8.5, "usize", "whole number"), (-1, "u64", "0..="), (256, "u8", "0..=255"), ("eight", "usize", "whole"),
    (True, "usize", "whole"), ("nan", "f64", "finite"), ("yes", "bool", "true or false"), ([3], "String", "string"),
    ([1, -2], "Vec<usize>", "'p[1]'"), (5, "Vec<usize>", "list"), (1, "Option<u8>", "cannot set"),
    (1e39, "f32", "f32's range"), ("[[1,2],[3]]", "Vec<Vec<u8>>", "list of lists"),
])
def test_values_that_do_not_fit_are_refused_with_the_type(value, rust_type, says):
    with pytest.raises(cp.ParameterError, match=None) as e:
        cp.literal(value, rust_type, "p")
    assert says in str(e.value), str(e.value)


def test_applied_values_keep_mut_and_the_type_as_written_and_two_cells_may_not_share_a_name():
    cell = nbformat.v4.new_code_cell("// n\nlet mut s: &'static str = \"a\";\nlet bad = 3;",
                                     metadata={"tags": ["parameters"]})
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert cp.apply(nb, {"s": "b"}) == ["let mut s: &'static str = \"b\";"]
    with pytest.raises(cp.ParameterError, match="not `let name: Type = value;` on one line: let bad = 3;"):
        cp.apply(nb, {"bad": 4})
    # A second application shadows the first; its comment is not help text.
    cp.apply(nb, {"s": "c"})
    assert cp.declared(nb)["s"].help == "n" and nb.cells[0].source.endswith('let mut s: &\'static str = "c";')
    twice = nbformat.v4.new_code_cell("let s: u8 = 1;", metadata={"tags": ["parameters"]})
    nb.cells.append(twice)
    with pytest.raises(cp.ParameterError, match="two parameters cells"):
        cp.declared(nb)


def test_declarations_read_types_defaults_and_help():
    src = "// Tasks: 1..=16\nlet a: usize = 4;\nlet b: Vec<f64> = vec![0.5];\n\n// Time, ms\nlet mut c: u64 = X::default().c;"
    d = cp.declarations(src)
    assert [(x.name, x.rust_type, x.default) for x in d] == [
        ("a", "usize", "4"), ("b", "Vec<f64>", "vec![0.5]"), ("c", "u64", "X::default().c")]
    assert d[0].help == d[1].help == "Tasks: 1..=16" and d[2].help == "Time, ms"


@pytest.mark.parametrize("path", PATHS_FOR_PARAMS, ids=[p.stem for p in PATHS_FOR_PARAMS])
def test_every_parameter_of_the_lab_has_a_type_the_translator_can_set(path: Path):
    nb = read(path)
    for d in cp.declared(nb).values():
        cp.literal([] if d.rust_type.startswith("Vec<") else "1", d.rust_type, d.name)
    # The harness's parameter sets are checked by the same rules.
    sets: dict[str, dict] = {}
    for c in nb.cells:
        if "parameters" in c.metadata.get("tags", []):
            for name, values in c.metadata.get("conclab", {}).get("param_sets", {}).items():
                sets.setdefault(name, {}).update(values)
    for values in sets.values():
        cp.check(nb, values)


# ---------------------------------------------------------------- papermill itself

def test_papermill_refuses_a_wrong_name_before_the_kernel_starts(tmp_path: Path):
    out = tmp_path / "out.ipynb"
    t0 = time.monotonic()
    r = papermill("-k", "rust", "-p", "tl_taks", "8", "notebooks/01-intro.ipynb", str(out))
    assert r.returncode != 0
    assert "no parameter 'tl_taks' (did you mean 'tl_tasks'?)" in r.stderr, r.stderr[-2000:]
    assert "tl_tasks: usize" in r.stderr, "the error lists the notebook's parameters with their types"
    assert "Executing" not in r.stderr and not out.exists(), "no kernel may start"
    assert time.monotonic() - t0 < 30


def test_papermill_refuses_a_wrong_type_before_the_kernel_starts(tmp_path: Path):
    out = tmp_path / "out.ipynb"
    r = papermill("-k", "rust", "-p", "tl_work_ms", "2.5", "notebooks/01-intro.ipynb", str(out))
    assert r.returncode != 0
    assert "parameter 'tl_work_ms' is a u64: 2.5 is not a whole number" in r.stderr, r.stderr[-2000:]
    assert "Executing" not in r.stderr and not out.exists()


def test_papermill_lists_every_section_s_parameters():
    r = papermill("--help-notebook", "notebooks/07-case-study.ipynb")
    assert r.returncode == 0, r.stderr
    for line in ("ss_connections: Vec<usize>", "ov_loads: Vec<f64>", "cp_service_ms: u64"):
        assert line in r.stdout, r.stdout


def test_papermill_runs_a_notebook_with_injected_parameters(tmp_path: Path):
    out = tmp_path / "00-index.ipynb"
    r = papermill("-k", "rust", "--cwd", str(NOTEBOOKS), "-y", "{counts: [1, 8], samples: 3}",
                  "notebooks/00-index.ipynb", str(out), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "let counts: Vec<usize> = vec![1, 8];" in injected[0].source
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert params.source.rstrip().endswith("let counts: Vec<usize> = vec![1, 8];\nlet samples: usize = 3;")
    # The experiment ran with them: its figure names the parameters it ran with.
    figure = next(c for c in nb.cells if "figure" in c.metadata.get("tags", []))
    svg = "".join(o.get("data", {}).get("image/svg+xml", "") for o in figure.outputs)
    assert "counts=[1,8]" in svg and "samples=3" in svg, svg[-1500:]

"""The harness's own checks, on synthetic cells: each rule must catch what it is for."""
from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_output

from nbtools import inject_parameters
from test_notebooks import cell_problems


def cell(tags=(), outputs=(), **meta):
    md = {"tags": list(tags)}
    if meta:
        md["conclab"] = meta
    c = new_code_cell("x", metadata=md)
    c.outputs = list(outputs)
    return c


def err(text):
    return new_output("error", ename="Error", evalue=text, traceback=[text])


SVG = new_output("display_data", data={"image/svg+xml": "<svg/>", "text/plain": "fig"})
PARAM_ERR = new_output("display_data", data={"text/html": "<div>", "text/plain": "ParamError: threads must be 1..=4, got 0"})


def test_clean_cell_passes():
    assert cell_problems(0, cell(outputs=[new_output("stream", name="stdout", text="ok")])) == []


def test_error_output_fails_unless_expected_with_that_code():
    assert cell_problems(0, cell(outputs=[err("[E0277] Error: cannot be sent")]))
    ok = cell(["raises-exception"], [err("[E0277] Error: `Rc<i32>` cannot be sent")], rustc_error="E0277")
    assert cell_problems(0, ok) == []
    wrong = cell(["raises-exception"], [err("[E0373] Error: borrowed")], rustc_error="E0277")
    assert "expected rustc E0277" in cell_problems(0, wrong)[0]
    compiled = cell(["raises-exception"], [], rustc_error="E0277")
    assert "ran" in cell_problems(0, compiled)[0]


def test_panic_text_fails_unless_tagged():
    out = new_output("stream", name="stderr", text="thread 'x' panicked at src/lib.rs:1:1")
    assert cell_problems(0, cell(outputs=[out]))
    assert cell_problems(0, cell(["expect-panic"], [out])) == []


def test_param_error_must_be_expected_and_expected_ones_must_appear():
    assert cell_problems(0, cell(outputs=[PARAM_ERR]))
    assert cell_problems(0, cell(["expect-param-error"], [PARAM_ERR])) == []
    assert cell_problems(0, cell(["expect-param-error"], []))


def test_stderr_text_fails():
    out = new_output("stream", name="stderr", text="counts must be 1..=4096, got 0")
    assert cell_problems(0, cell(outputs=[out]))


def test_figure_cell_needs_svg():
    assert cell_problems(0, cell(["figure"], []))
    assert cell_problems(0, cell(["figure"], [SVG])) == []


def test_parameters_are_injected_after_tagged_cells():
    nb = nbformat.v4.new_notebook(cells=[
        cell(["parameters"], param_sets={"quick": "let n = 1;", "big": "let n = 9;"}),
        new_code_cell("run(n)"),
    ])
    assert inject_parameters(nb, "big") == 1
    assert [c.source for c in nb.cells] == ["x", "let n = 9;", "run(n)"]
    assert nb.cells[1].metadata["tags"] == ["injected-parameters"]
    nb2 = nbformat.v4.new_notebook(cells=[cell(["parameters"], param_sets={"quick": "q"})])
    assert inject_parameters(nb2, "default") == 0 and len(nb2.cells) == 1


def test_param_error_must_name_the_expected_parameter():
    good = cell(["expect-param-error"], [PARAM_ERR], param_error="threads")
    assert cell_problems(0, good) == []
    wrong = cell(["expect-param-error"], [PARAM_ERR], param_error="cpu_b")
    assert "cpu_b" in cell_problems(0, wrong)[0]


def test_undrawable_figure_fails():
    bad = new_output("display_data", data={"image/svg+xml": "<svg><text>figure could not be drawn: x</text></svg>"})
    assert cell_problems(0, cell(["figure"], [bad]))


def test_cells_are_numbered_as_committed():
    from test_notebooks import committed_numbers
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("m"),
        cell(["parameters"], param_sets={"quick": "q"}),
        new_code_cell("run"),
    ])
    inject_parameters(nb, "quick")
    assert committed_numbers(nb) == [0, 1, "1+", 2]

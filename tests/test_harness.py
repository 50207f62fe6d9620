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


def test_a_main_figure_needs_findings():
    bare = cell(["figure"], [SVG])
    bare.source = "r.figure()"
    assert "no findings" in cell_problems(0, bare)[0]
    found = new_output("display_data", data={"image/svg+xml": "<svg/>", "text/plain": "t\nWhat this run shows:\n• x"})
    good = cell(["figure"], [found])
    good.source = "r.figure()"
    assert cell_problems(0, good) == []
    other = cell(["figure"], [SVG])
    other.source = "r.figure_n(1)"
    assert cell_problems(0, other) == []


def test_parameters_are_applied_in_their_cells():
    first = cell(["parameters"], param_sets={"quick": {"n": 1}, "big": {"n": 9, "m": [2, 3]}})
    first.source = "// how many\nlet n: usize = 4;"
    second = cell(["parameters"], param_sets={"quick": {}, "big": {"m": [5]}})
    second.source = "let m: Vec<f64> = vec![1.0];"
    nb = nbformat.v4.new_notebook(cells=[first, new_code_cell("run(n)"), second])
    assert inject_parameters(nb, "big") == 2
    assert len(nb.cells) == 3 and nb.cells[1].source == "run(n)"
    lines = nb.cells[0].source.splitlines()
    assert lines[1] == "let n: usize = 4;" and lines[-1] == "let n: usize = 9;", lines
    # A set's value for a later cell's parameter goes to that cell (the later set wins).
    assert nb.cells[2].source.splitlines()[-1] == "let m: Vec<f64> = vec![5.0];", nb.cells[2].source
    assert nb.cells[0].metadata["tags"] == ["parameters"]
    nb2 = nbformat.v4.new_notebook(cells=[cell(["parameters"], param_sets={"quick": {}})])
    assert inject_parameters(nb2, "default") == 0 and len(nb2.cells) == 1


def test_a_param_set_with_a_wrong_name_or_type_is_refused():
    import pytest
    from nbtools import conclab_papermill
    c = cell(["parameters"], param_sets={"bad": {"threads": 2}, "worse": {"n": -1}})
    c.source = "let n: usize = 4;"
    nb = nbformat.v4.new_notebook(cells=[c])
    with pytest.raises(conclab_papermill.ParameterError, match="no parameter 'threads'"):
        inject_parameters(nb, "bad")
    with pytest.raises(conclab_papermill.ParameterError, match="usize"):
        inject_parameters(nb, "worse")
    assert nb.cells[0].source == "let n: usize = 4;", "nothing is applied when a value is refused"


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
        cell(["parameters"], param_sets={"quick": {}}),
        new_code_cell("run"),
    ])
    inject_parameters(nb, "quick")
    assert committed_numbers(nb) == [0, 1, 2]


# ---------------------------------------------------------------- async mode and threads

def test_bare_await_is_found_only_outside_async_bodies():
    from nbtools import bare_awaits
    assert bare_awaits("let x = f().await;") == [1]
    assert bare_awaits("let a = 1;\nlet x = { g().await };") == [2]
    assert bare_awaits("rt::run(Rt::multi(2), || async { f().await })") == []
    assert bare_awaits("async fn f() -> u32 { g().await }\nlet x = 1;") == []
    assert bare_awaits("let fut = async move { let v = { h().await }; v };") == []
    assert bare_awaits("rt::run(Rt::current(), || async { 1 });\nlet y = z.await;") == [2]
    # text that only mentions it is not code
    assert bare_awaits('// x.await\nlet s = "f().await"; /* g().await */ let c = \'a\';') == []
    assert bare_awaits('let s = r#"x.await"#;\nlet t: &\'static str = "";') == []
    assert bare_awaits("f()\n    .await;") == [2]


def test_async_mode_cells_must_be_tagged_and_tags_must_be_used():
    from test_notebooks import async_problems
    bad = new_code_cell("let v = tokio::spawn(async { 5 }).await;")
    assert "top-level `.await`" in async_problems(3, bad)[0]
    assert "rt::run" in async_problems(3, bad)[0]
    demo = new_code_cell("f().await", metadata={"tags": ["demo-async-mode"]})
    assert async_problems(3, demo) == []
    assert "lesson notebook" in async_problems(3, demo, demo_allowed=False)[0]
    unused = new_code_cell("rt::run(Rt::current(), || async { f().await })", metadata={"tags": ["demo-async-mode"]})
    assert "no top-level" in async_problems(3, unused)[0]


def test_threads_left_running_fail_the_cell_unless_it_demonstrates_async_mode():
    assert "left 2 thread(s) running" in cell_problems(0, cell(), (4242, 3, 5))[0]
    assert cell_problems(0, cell(), (4242, 3, 3)) == []
    assert cell_problems(0, cell(), (4242, 5, 3)) == []
    assert cell_problems(0, cell(), (4242, None, 5)) == [], "no count before (first cell, restart): no verdict"
    assert cell_problems(0, cell(["demo-async-mode"]), (4242, 3, 5)) == []


def test_rt_error_must_be_expected_and_expected_ones_must_appear():
    rt_err = new_output("display_data", data={"text/plain": "RtError: the async body did not finish within 0.2 s"})
    assert cell_problems(0, cell(outputs=[rt_err]))
    assert cell_problems(0, cell(["expect-rt-error"], [rt_err])) == []
    assert cell_problems(0, cell(["expect-rt-error"], []))
    debug_form = new_output("execute_result", data={"text/plain": "Err(RtError: the async body panicked: boom)"})
    assert cell_problems(0, cell(outputs=[debug_form]))


def test_the_cell_process_is_the_kernels_child_running_its_binary_and_threads_are_counted():
    import os
    import subprocess
    import sys
    import threading
    import time

    from nbtools import cell_process, child_pids, settled_thread_count, thread_count

    me = os.getpid()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in child_pids(me)
        assert cell_process(me) == child.pid, "the child runs the same binary as its parent"
        assert cell_process(None) is None
    finally:
        child.kill()
        child.wait()
    n = thread_count(me)
    done = threading.Event()
    t = threading.Thread(target=done.wait)
    t.start()
    assert thread_count(me) == n + 1
    threading.Timer(0.2, done.set).start()  # the waiter ends 0.2 s from now
    t0 = time.monotonic()
    assert settled_thread_count(me, n + 1, limit=5.0) <= n + 1 + 1  # the timer thread itself
    t.join()
    assert settled_thread_count(me, n, limit=5.0) == n
    assert time.monotonic() - t0 < 5.0
    assert thread_count(2**22 + 12345) is None


def test_committed_metadata_is_what_jupyterlab_writes_and_failures_name_the_tidy_command(tmp_path):
    import re

    import pytest

    import test_notebooks
    from nbtools import KERNELSPEC, LANGUAGE_INFO, TIDY

    assert KERNELSPEC["display_name"] == "Rust (Concurrency Lab)"  # as scripts/setup.sh names the kernel
    assert LANGUAGE_INFO["name"] == "Rust" and LANGUAGE_INFO["file_extension"] == ".rs"  # evcxr's kernel_info
    # what a notebook saved from an older lab set-up carries
    old = {"kernelspec": {"display_name": "Rust", "language": "rust", "name": "rust"}, "language_info": {"name": "rust"}}
    path = tmp_path / "old.ipynb"
    nbformat.write(nbformat.v4.new_notebook(metadata=old), str(path))
    with pytest.raises(AssertionError, match=re.escape(TIDY)):
        test_notebooks.test_committed_form(path)

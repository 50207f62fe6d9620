"""Papermill's side of conclab_papermill: the translator for the `rust` kernel.

Papermill (2.x) loads plugins through entry points for engines and I/O handlers, not for
translators. This module is the target of an engine entry point (`conclab`, see
pyproject.toml): papermill imports it while it starts, and importing it registers
`RustTranslator` for the kernel `rust`. Import papermill, not this module, first (this
module is imported while papermill's engine registry is being built).

Papermill's translator interface receives only the values, not the notebook; the
translator finds the notebook being parameterized in its caller's frame
(`papermill.parameterize.parameterize_notebook`; papermill is pinned in
tools/requirements.txt, and tests/test_papermill.py checks that this still works).
"""
from __future__ import annotations

import inspect as _inspect

from papermill.engines import NBClientEngine
from papermill.exceptions import PapermillException
from papermill.models import Parameter
from papermill.translators import Translator, papermill_translators

from conclab_papermill import ParameterError, apply, declarations, declared


# The papermill functions that hold the notebook in a local `nb` when they call a translator.
CALLERS = ("parameterize_notebook", "_infer_parameters")


def _notebook_in_caller():
    """The notebook papermill is working on: `nb` in the frame of one of CALLERS."""
    frame = _inspect.currentframe()
    try:
        while frame is not None:
            nb = frame.f_locals.get("nb") if frame.f_code.co_name in CALLERS else None
            if nb is not None and hasattr(nb, "cells"):
                return nb
            frame = frame.f_back
    finally:
        del frame
    return None


class PapermillParameterError(ParameterError, PapermillException):
    """A refused parameter, as papermill reports it: it stops before the kernel starts."""


class RustTranslator(Translator):
    """Papermill's translator for the `rust` kernel: typed `let`s in the declaring cells."""

    @classmethod
    def codify(cls, parameters, comment="Parameters"):
        nb = _notebook_in_caller()
        if nb is None:
            raise PapermillParameterError(
                "the rust translator needs the notebook (papermill's parameterize_notebook); "
                "this papermill version does not pass it")
        try:
            added = apply(nb, dict(parameters))
        except ParameterError as e:
            raise PapermillParameterError(str(e)) from None
        listed = "\n".join(f"//   {line}" for line in added)
        return f"// {comment}: appended, with their types, to the parameters cell that declares each\n{listed}\n"

    @classmethod
    def inspect(cls, parameters_cell):
        """Every parameter of the notebook (papermill passes only the first parameters cell;
        the notebook is in its caller's frame), for `--help-notebook` and its unknown-name check."""
        nb = _notebook_in_caller()
        found = list(declared(nb).values()) if nb is not None else declarations(parameters_cell.source)
        return [Parameter(name=d.name, inferred_type_name=d.rust_type, default=d.default, help=d.help)
                for d in found]


class ConclabEngine(NBClientEngine):
    """papermill's nbclient engine under another name; its entry point loads this module."""


papermill_translators.register("rust", RustTranslator)

"""Papermill parameters for the lab's Rust notebooks (the `rust` kernel, evcxr).

Papermill injects parameters by asking a *translator* for the kernel's language to turn
`{"tl_tasks": 8}` into code. It has translators for Python, R, Julia and others, none for
Rust, where a value needs its type (`let tl_tasks: usize = 8;` — an untyped `8` would be
an `i32`, and the next cell's `usize` use would not compile). The types are in the
notebook's `parameters` cells, which this module reads:

- every `let name: Type = value;` line of a cell tagged `parameters` declares a parameter
  (the `//` comment lines above it are its help text);
- `apply(nb, values)` checks every name and value against those declarations — an
  unknown name or a value that does not fit the type raises `ParameterError` naming the
  parameter and what it accepts — and only then appends the typed `let`s to the cell that
  declares each one, as a reader would edit it. The lab's notebooks have one parameters
  cell per section; a value injected after the first would be overwritten by its own
  section's cell, so each goes to its own cell;
- `conclab_papermill_plugin.RustTranslator` plugs that into papermill: `papermill -k rust
  -p tl_tasks 8 in.ipynb out.ipynb` checks and applies the values while papermill prepares
  the notebook, before any kernel starts.

This module does not import papermill: the test harness applies its parameter sets with
the same `apply`.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from decimal import Decimal

LET = re.compile(r"^\s*let\s+(mut\s+)?([A-Za-z_]\w*)\s*:\s*(.+?)\s*=\s*(.+?);\s*(?://.*)?$")
# Comments the translator and the harness write above the lines they append: not help text.
APPLIED = ("injected by papermill", "parameter set ")
INTS = {
    "u8": (0, 2**8 - 1), "u16": (0, 2**16 - 1), "u32": (0, 2**32 - 1), "u64": (0, 2**64 - 1),
    "usize": (0, 2**64 - 1), "i8": (-(2**7), 2**7 - 1), "i16": (-(2**15), 2**15 - 1),
    "i32": (-(2**31), 2**31 - 1), "i64": (-(2**63), 2**63 - 1), "isize": (-(2**63), 2**63 - 1),
}
FLOATS = ("f32", "f64")


class ParameterError(ValueError):
    """A parameter the notebook does not declare, or a value its type cannot hold."""


@dataclass
class Declared:
    name: str
    rust_type: str  # as written in the cell
    default: str
    help: str
    cell: int
    mutable: bool = False


def parameter_cells(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells)
            if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]


def declarations(source: str, cell: int = 0) -> list[Declared]:
    """The `let name: Type = value;` lines of one parameters cell, with the comments above each."""
    out, comments, after_let = [], [], False
    for line in source.splitlines():
        s = line.strip()
        if s.startswith("//"):
            # A comment after a `let` starts the next group's help; one above several `let`s
            # describes them all.
            text = s.lstrip("/").strip()
            comments = [] if text.startswith(APPLIED) else ([] if after_let else comments) + [text]
            after_let = False
            continue
        m = LET.match(line)
        if m:
            out.append(Declared(m.group(2), m.group(3).strip(), m.group(4), " ".join(comments), cell, bool(m.group(1))))
            after_let = True
        elif not s:
            comments, after_let = [], False
    return out


def unreadable(source: str) -> list[str]:
    """`let` lines of a parameters cell that are not `let name: Type = value;` on one line."""
    return [line.strip() for line in source.splitlines() if re.match(r"\s*let\b", line) and not LET.match(line)]


def declared(nb) -> dict[str, Declared]:
    """Every parameter of a notebook by name. Within a cell a later `let` of a name shadows
    an earlier one (that is how values are applied); two cells declaring one name would
    make "the cell that declares it" ambiguous, and are refused."""
    out: dict[str, Declared] = {}
    for i in parameter_cells(nb):
        for d in declarations(nb.cells[i].source, i):
            if d.name in out:
                if out[d.name].cell != i:
                    raise ParameterError(f"parameter {d.name!r} is declared in two parameters cells "
                                         f"({out[d.name].cell} and {i}); each name may have one")
                continue  # an applied value: the declaration keeps its default and help
            out[d.name] = d
    return out


def _number(value, want_int: bool):
    """An int or float from a JSON/YAML value or a string (`papermill -r` passes strings);
    whole numbers written as text stay exact (`9007199254740993.0` is not rounded)."""
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if want_int and re.fullmatch(r"[+-]?\d+(\.0*)?", text):
            return int(Decimal(text))
        return float(text)
    if isinstance(value, (int, float)):
        return value
    raise TypeError


def literal(value, rust_type: str, name: str = "value") -> str:
    """`value` as a Rust expression of type `rust_type`; ParameterError if it does not fit."""
    t = re.sub(r"\s+", "", rust_type).replace("&'static", "&")  # `&'static str` reads as `&str`

    def refuse(what: str) -> ParameterError:
        return ParameterError(f"parameter {name!r} is a {t}: {value!r} is not {what}")

    if t in INTS:
        lo, hi = INTS[t]
        try:
            v = _number(value, True)
        except (TypeError, ValueError):
            raise refuse(f"a whole number in {lo}..={hi}") from None
        if isinstance(v, float):
            if not v.is_integer():
                raise refuse(f"a whole number in {lo}..={hi}")
            v = int(v)
        if not lo <= v <= hi:
            raise refuse(f"in {lo}..={hi}")
        return str(v)
    if t in FLOATS:
        try:
            v = float(_number(value, False))
        except (TypeError, ValueError):
            raise refuse("a number") from None
        if not math.isfinite(v):
            raise refuse("a finite number")
        if t == "f32" and abs(v) > 3.4028235e38:
            raise refuse("within f32's range (±3.4e38)")
        text = repr(v)
        return text if any(c in text for c in ".e") else f"{text}.0"
    if t == "bool":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower()
        raise refuse("true or false")
    if t in ("String", "&str"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # `papermill -p name 42` parses 42 as a number
        if not isinstance(value, str):
            raise refuse("a string")
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
        quoted = f'"{escaped}"'
        return f"{quoted}.to_string()" if t == "String" else quoted
    m = re.fullmatch(r"Vec<(.+)>", t)
    if m:
        items = value
        if isinstance(value, str):
            if m.group(1).startswith("Vec<"):
                raise refuse("a list of lists (give it as YAML: -y '{name: [[1, 2], [3]]}')")
            text = value.strip().removeprefix("vec!").strip("[]() ")
            items = [x for x in (s.strip() for s in text.split(",")) if x]
        if not isinstance(items, (list, tuple)):
            raise refuse("a list (YAML `[1, 2]`, or the text `1,2`)")
        return "vec![" + ", ".join(literal(x, m.group(1), f"{name}[{i}]") for i, x in enumerate(items)) + "]"
    raise ParameterError(f"parameter {name!r} has the type {t}, which papermill cannot set from outside; "
                         "edit its parameters cell instead")


def check(nb, values: dict) -> list[tuple[Declared, str]]:
    """Every value checked against the notebook's declarations, before anything changes."""
    known = declared(nb)
    if not known:
        raise ParameterError("this notebook has no `parameters` cell with `let name: Type = value;` lines")
    unknown = [n for n in values if n not in known]
    if unknown:
        skipped = [line for i in parameter_cells(nb) for line in unreadable(nb.cells[i].source)]
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, known, n=1)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ParameterError(f"this notebook has no parameter {', '.join(hints)}; its parameters are: "
                             + ", ".join(f"{d.name}: {d.rust_type}" for d in known.values())
                             + (f" (these lines of its parameters cells are not `let name: Type = value;` on one line: "
                                f"{'; '.join(skipped)})" if skipped else ""))
    return [(known[n], literal(v, known[n].rust_type, n)) for n, v in values.items()]


def apply(nb, values: dict, note: str = "injected by papermill") -> list[str]:
    """Checks every value, then appends `let name: Type = value;` to the parameters cell that
    declares each name (so it shadows the default above it); returns the lines added."""
    checked = check(nb, values)
    by_cell: dict[int, list[str]] = {}
    for d, lit in checked:
        by_cell.setdefault(d.cell, []).append(f"let {'mut ' if d.mutable else ''}{d.name}: {d.rust_type} = {lit};")
    for i, lines in by_cell.items():
        c = nb.cells[i]
        c.source = c.source.rstrip() + f"\n// {note}:\n" + "\n".join(lines)
    return [line for lines in by_cell.values() for line in lines]

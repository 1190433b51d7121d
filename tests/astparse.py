"""Parse source files for the tests that check imports."""

from __future__ import annotations

import ast
import gc
from pathlib import Path


def parse_file(path: Path) -> ast.Module:
    """``ast.parse`` of ``path`` with the garbage collector paused.

    CPython 3.11's parser fails with "AST constructor recursion depth mismatch" when
    the collector runs finalizers in the middle of a parse, and earlier tests in a
    long run leave such garbage behind.
    """
    source = path.read_text()
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source, filename=str(path))
    finally:
        if enabled:
            gc.enable()

"""Hints to SQLite's query planner, written so that other databases read the plain SQL.

SQLite plans without statistics (nothing runs ANALYZE), so where two indexes could serve a
statement it may pick the one that reads far more rows. A term written on `+column` cannot
use an index on that column (SQLite's documented way to steer the planner); PostgreSQL has
no unary + for most types, so it gets the column itself.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement


class not_indexed(FunctionElement[Any]):
    """`column`, which SQLite is not to search an index by in this term."""

    inherit_cache = True

    def __init__(self, column: ColumnElement[Any]) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(not_indexed)
def _plain(element: not_indexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(not_indexed, "sqlite")
def _unary_plus(element: not_indexed, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{compiler.process(element.clauses, **kw)}"

"""Kind `sql`: rows of the platform's database, children deleted before their parents.

Tables are reflected when the target is built so that a misspelt table or column stops
start-up instead of a purge that silently finds nothing. Every statement is built with
SQLAlchemy Core from reflected tables, values bound as parameters: the file supplies names
only, never SQL text. Deletes pick primary keys with LIMIT (`DELETE ... WHERE pk IN (SELECT
pk ... LIMIT n)`), so a batch stays a short transaction even on a very large table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Engine,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    and_,
    cast,
    delete,
    func,
    inspect,
    make_url,
    select,
    tuple_,
)
from sqlalchemy import types as sqltypes
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from agegate.db import SQLITE_BEGIN, make_engine
from agegate.remediation.targets.base import PurgeContext, TargetConfigError, TargetError
from agegate.remediation.targets.config import COMMON_KEYS, Fields
from agegate.remediation.targets.ids import AccountIds, IdPattern

# How an account column compares (docs/purge-targets.md, "Exactness"). Text is compared byte
# for byte beside the column's own `=` (which a case-insensitive collation or citext bends;
# the `=` stays for the index). Integers and UUIDs compare as values, so only their one
# canonical spelling is accepted: `7`, never `007`, which would reach the same row.
TEXT, INTEGER, UUID = "text", "integer", "uuid"
CANONICAL = {
    INTEGER: "0|[1-9][0-9]{0,18}",
    UUID: "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
}


@dataclass(frozen=True)
class Parent:
    table: str
    column: str  # in the child table
    references: str  # in the parent table


@dataclass(frozen=True)
class TableSpec:
    """A table keyed by account (`account_column`) or reached through its `parent`."""

    table: str
    account_column: str | None = None
    parent: Parent | None = None


class SQLTarget:
    kind = "sql"

    def __init__(
        self, name: str, url: str, tables: list[TableSpec], schema: str | None, pool_size: int
    ) -> None:
        self.name = name
        self.specs = {spec.table: spec for spec in tables}
        self.schema = schema
        self.order = _deletion_order(tables)
        self.engine: Engine = make_engine(url, pool_size)
        try:
            self.tables = self._reflect()
        except BaseException:
            self.engine.dispose()
            raise
        self.comparison = {
            name: _comparison(self.tables[name].c[spec.account_column])
            for name, spec in self.specs.items()
            if spec.account_column is not None
        }
        kinds = sorted({k for k in self.comparison.values() if k in CANONICAL})
        if len(kinds) > 1:
            self.engine.dispose()
            raise TargetConfigError(
                f"account columns compare as {' and '.join(kinds)}: no account id has a "
                "canonical form in both; key the tables by one kind of column"
            )
        self.ids = (
            AccountIds(
                IdPattern.parse(CANONICAL[kinds[0]]),
                source=f"the canonical form of its {kinds[0]} account column",
            )
            if kinds
            else AccountIds()
        )

    @classmethod
    def from_config(cls, config: dict[str, Any], location: str) -> SQLTarget:
        fields = Fields(config, location, (*COMMON_KEYS, "url", "tables", "schema", "pool_size"))
        url = _database_url(fields)
        pool_size = fields.integer("pool_size", 2, 1, 32)
        schema = config.get("schema")
        if schema is not None and (not isinstance(schema, str) or not schema):
            fields.problem("schema: expected a non-empty string")
        tables = [_table_spec(fields, entry, i) for i, entry in enumerate(fields.items("tables"))]
        specs = [spec for spec in tables if spec is not None]
        _check_graph(fields, specs)
        fields.raise_problems()
        try:
            return cls(config["name"], url, specs, schema, pool_size)
        except TargetConfigError as exc:
            lines = str(exc).splitlines()
            raise TargetConfigError("\n".join(f"{location}: {line}" for line in lines)) from None

    def _reflect(self) -> dict[str, Table]:
        """Load the configured tables; refuse a missing table or column with every one named."""
        try:
            tables, problems = self._reflect_tables()
        except SQLAlchemyError as exc:
            raise TargetConfigError(f"cannot check the tables: {_reason(exc)}") from None
        if problems:
            raise TargetConfigError("\n".join(problems))
        return tables

    def _reflect_tables(self) -> tuple[dict[str, Table], list[str]]:
        existing = set(inspect(self.engine).get_table_names(schema=self.schema))
        present = [name for name in self.specs if name in existing]
        metadata = MetaData(schema=self.schema)
        metadata.reflect(bind=self.engine, only=present, resolve_fks=False)
        tables = {name: metadata.tables[_key(self.schema, name)] for name in present}
        where = f" in schema {self.schema!r}" if self.schema else ""
        problems = [
            f"table {name!r} does not exist{where}" for name in self.specs if name not in existing
        ]
        for name, spec in self.specs.items():
            if name not in tables:
                continue
            columns = [(name, spec.account_column)]
            if spec.parent is not None:
                columns += [(name, spec.parent.column), (spec.parent.table, spec.parent.references)]
            missing = False
            for table, column in columns:
                if column is not None and table in tables and column not in tables[table].c:
                    problems.append(f"table {table!r} has no column {column!r}")
                    missing = True
            if not missing:
                problems += _exactness_problems(tables, spec)
            if not tables[name].primary_key.columns:
                problems.append(f"table {name!r} has no primary key (needed to delete in batches)")
        return tables, list(dict.fromkeys(problems))

    def _owned(
        self, name: str, account_id: str, windows: dict[str, Any] | None = None
    ) -> ColumnElement[bool]:
        """Rows of `name` that belong to the account, through the parent chain if need be;
        with `windows`, only those under the given keys of each root table."""
        table, spec = self.tables[name], self.specs[name]
        if spec.parent is None:
            owned = self._account_is(name, account_id)
            if windows is not None:
                owned = owned & self._pk(name).in_(windows[name])
            return owned
        parent = self.tables[spec.parent.table]
        keys = select(parent.c[spec.parent.references]).where(
            self._owned(spec.parent.table, account_id, windows)
        )
        return table.c[spec.parent.column].in_(keys)

    def _pk(self, name: str) -> Any:
        pk = list(self.tables[name].primary_key.columns)
        return pk[0] if len(pk) == 1 else tuple_(*pk)

    def _windows(self, account_id: str, limit: int) -> dict[str, Any]:
        """The first `limit` rows of each root table for the account, as subqueries. A batch
        works under these keys only, so each statement reaches a bounded set of rows through
        the indexes instead of joining the account's whole history (quadratic as it grows)."""
        windows = {}
        for name, spec in self.specs.items():
            if spec.parent is None:
                pk = list(self.tables[name].primary_key.columns)
                windows[name] = (
                    select(*pk).where(self._account_is(name, account_id)).order_by(*pk).limit(limit)
                )
        return windows

    def _account_is(self, name: str, account_id: str) -> ColumnElement[bool]:
        """The root table's rows of exactly this account, whatever the column's collation."""
        column = self.tables[name].c[self.specs[name].account_column or ""]
        comparison = self.comparison[name]
        if comparison == INTEGER:
            return column == int(account_id)
        if comparison == UUID:
            return column == uuid.UUID(account_id)
        if self.engine.dialect.name == "postgresql":
            exact = cast(column, Text).collate("C") == account_id
        else:
            exact = column.collate("BINARY") == account_id
        return and_(column == account_id, exact)

    def check(self) -> None:
        try:
            _, problems = self._reflect_tables()
        except SQLAlchemyError as exc:
            raise TargetError(f"{self.name}: {_reason(exc)}") from None
        if problems:
            raise TargetError(f"{self.name}: {'; '.join(problems)}")

    def count(self, account_id: str) -> int:
        self.ids.checked(account_id)
        try:
            with self.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
                return sum(
                    conn.execute(
                        select(func.count())
                        .select_from(self.tables[name])
                        .where(self._owned(name, account_id))
                    ).scalar_one()
                    for name in self.order
                )
        except SQLAlchemyError as exc:
            raise TargetError(f"{self.name}: {_reason(exc)}") from None

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        self.ids.checked(account_id)
        deleted = 0
        try:
            with self.engine.begin() as conn:
                windows = self._windows(account_id, limit)
                # Deepest tables first: a table is only reached once all its descendants in
                # the window are gone (a table that filled the batch stops it).
                for name in self.order:
                    wanted = limit - deleted
                    if wanted <= 0:
                        break
                    table = self.tables[name]
                    pk = list(table.primary_key.columns)
                    chosen = select(*pk).where(self._owned(name, account_id, windows)).limit(wanted)
                    deleted += conn.execute(
                        delete(table).where(self._pk(name).in_(chosen))
                    ).rowcount
        except SQLAlchemyError as exc:
            raise TargetError(f"{self.name}: {_reason(exc)}") from None
        return deleted

    def close(self) -> None:
        self.engine.dispose()


def _database_url(fields: Fields) -> str:
    text = fields.string("url")
    if not text:
        return ""
    try:
        url = make_url(text)
    except ArgumentError:
        # Never echo the URL: it may carry a password from the environment.
        fields.problem("url: not a database URL (expected postgresql://… or sqlite:///…)")
        return ""
    backend = url.get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        fields.problem(f"url: unsupported database {backend!r}: use postgresql or sqlite")
        return ""
    if url.drivername == "postgresql":  # psycopg 3 is the driver we ship
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _table_spec(fields: Fields, entry: Any, index: int) -> TableSpec | None:
    table = fields.child(entry, f"tables[{index}]", ("table", "account_column", "parent"))
    if table is None:
        return None
    name = table.string("table")
    if ("account_column" in entry) == ("parent" in entry):
        table.problem("give exactly one of account_column and parent")
        return None
    if "account_column" in entry:
        column = table.string("account_column")
        return TableSpec(name, account_column=column) if name and column else None
    parent = table.child(entry["parent"], "parent", ("table", "column", "references"))
    if parent is None:
        return None
    keys = parent.string("table"), parent.string("column"), parent.string("references")
    return TableSpec(name, parent=Parent(*keys)) if name and all(keys) else None


def _check_graph(fields: Fields, specs: list[TableSpec]) -> None:
    names = [spec.table for spec in specs]
    for name in sorted({n for n in names if names.count(n) > 1}):
        fields.problem(f"tables: {name!r} is listed more than once")
    by_name = {spec.table: spec for spec in specs}
    orphans = [s for s in specs if s.parent is not None and s.parent.table not in by_name]
    for spec in orphans:
        assert spec.parent is not None
        fields.problem(
            f"tables: {spec.table!r} has parent {spec.parent.table!r}, which is not listed"
        )
    if orphans:
        return
    for spec in specs:
        seen = {spec.table}
        current = spec
        while current.parent is not None:
            current = by_name[current.parent.table]
            if current.table in seen:
                fields.problem(f"tables: parents of {spec.table!r} form a cycle")
                return
            seen.add(current.table)


def _comparison(column: Column[Any]) -> str | None:
    if isinstance(column.type, sqltypes.Integer):
        return INTEGER
    if isinstance(column.type, sqltypes.Uuid):
        return UUID
    if isinstance(column.type, sqltypes.String):
        return TEXT
    return None


def _exactness_problems(tables: dict[str, Table], spec: TableSpec) -> list[str]:
    """Why this table's rows could be matched for another account: an account column that
    compares loosely, or a parent column that more than one parent row can hold."""
    problems = []
    if spec.account_column is not None:
        column = tables[spec.table].c[spec.account_column]
        if _comparison(column) is None:
            loose = (
                "compares numerically, so '7', '7.0' and '7e0' are one account"
                if isinstance(column.type, sqltypes.Numeric | sqltypes.Float)
                else f"has type {column.type}, which agegate cannot compare exactly"
            )
            problems.append(
                f"table {spec.table!r}: account column {spec.account_column!r} {loose}; key "
                "accounts by a text, integer or uuid column"
            )
    if spec.parent is not None and spec.parent.table in tables:
        parent = tables[spec.parent.table]
        if not _unique_alone(parent, spec.parent.references):
            problems.append(
                f"table {spec.table!r}: parent column {spec.parent.table}."
                f"{spec.parent.references} is not unique on its own (no primary key, unique "
                "constraint or unique index of that column alone), so a row could hang from "
                "another account's parent; reference a unique column such as the primary key"
            )
    return problems


def _unique_alone(table: Table, name: str) -> bool:
    """Whether `name` alone is unique in `table`: its primary key, a unique constraint, or a
    unique index without a WHERE clause (a partial index leaves the other rows free)."""
    if [c.name for c in table.primary_key.columns] == [name]:
        return True
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and [c.name for c in constraint.columns] == [
            name
        ]:
            return True
    return any(
        index.unique
        and [c.name for c in index.columns] == [name]
        and not any(
            key.endswith("_where") and value is not None
            for key, value in index.dialect_kwargs.items()
        )
        for index in table.indexes
    )


def _deletion_order(specs: list[TableSpec]) -> list[str]:
    """Tables deepest first; the listed order breaks ties."""
    by_name = {spec.table: spec for spec in specs}

    def depth(spec: TableSpec) -> int:
        return 0 if spec.parent is None else 1 + depth(by_name[spec.parent.table])

    ranked = sorted(enumerate(specs), key=lambda item: (-depth(item[1]), item[0]))
    return [spec.table for _, spec in ranked]


def _key(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's first line: it names the failure without the statement or the URL."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else 'no detail'}"

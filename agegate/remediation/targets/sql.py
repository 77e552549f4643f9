"""Kind `sql`: rows of the platform's database, children deleted before their parents.

Tables are reflected when the target is built so that a misspelt table or column stops
start-up instead of a purge that silently finds nothing. Every statement is built with
SQLAlchemy Core from reflected tables, values bound as parameters: the file supplies names
only, never SQL text. Deletes pick primary keys with LIMIT (`DELETE ... WHERE pk IN (SELECT
pk ... LIMIT n)`), so a batch stays a short transaction even on a very large table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    MetaData,
    Table,
    delete,
    func,
    inspect,
    make_url,
    select,
    tuple_,
)
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from agegate.db import SQLITE_BEGIN, make_engine
from agegate.remediation.targets.base import (
    PurgeContext,
    TargetConfigError,
    TargetError,
    checked_account_id,
)
from agegate.remediation.targets.config import COMMON_KEYS, Fields


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
            for table, column in columns:
                if column is not None and table in tables and column not in tables[table].c:
                    problems.append(f"table {table!r} has no column {column!r}")
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
            assert spec.account_column is not None
            owned = table.c[spec.account_column] == account_id
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
                assert spec.account_column is not None
                table = self.tables[name]
                pk = list(table.primary_key.columns)
                windows[name] = (
                    select(*pk)
                    .where(table.c[spec.account_column] == account_id)
                    .order_by(*pk)
                    .limit(limit)
                )
        return windows

    def check(self) -> None:
        try:
            _, problems = self._reflect_tables()
        except SQLAlchemyError as exc:
            raise TargetError(f"{self.name}: {_reason(exc)}") from None
        if problems:
            raise TargetError(f"{self.name}: {'; '.join(problems)}")

    def count(self, account_id: str) -> int:
        checked_account_id(account_id)
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
        checked_account_id(account_id)
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

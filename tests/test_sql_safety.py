"""Data never runs as code (issue 23, item 1): the quoting helpers, and a walk over every SQL string that
``calib/`` and ``trainer/`` build by interpolation.

The allowed forms of an interpolated value are documented in ``calib/sqlutil.py``; this test is their
enforcement. A new f-string SQL with, say, a signal name in it fails here with its file and line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from calib.sqlutil import lock, locked_connection, sql_ident, sql_list, sql_literal

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("calib", "trainer")

# What makes a string "SQL": a keyword that only SQL text holds, in upper case as the project writes it.
_SQL_WORDS = re.compile(r"\b(SELECT|FROM|WHERE|INSERT|CREATE|COPY|JOIN|PRAGMA|ATTACH|DELETE|UPDATE\s+\w+\s+SET|"
                        r"UNION ALL|GROUP BY|ORDER BY|TRY_CAST|json_extract|read_parquet|unnest)\b")
_HELPERS = {"sql_literal", "sql_list", "sql_ident"}
_NUMBERS = {"int", "float", "len"}
_NUMERIC_SPEC = re.compile(r"^[<>=^]?[+\- ]?#?0?\d*[,_]?(\.\d+)?[dfeEgG%n]$")

# ------------------------------------------------------------------------------------------ the helpers

HOSTILE = [
    "it's", 'say "hi"', "back\\slash", "semi;colon", "dash -- comment", "/* block */", "new\nline", "nul\0byte",
    "ünïcødé ☃", "emoji 🤖", "rtl \u202e", "$1 ?", "%s %d", "{}", "'); DROP TABLE episodes; --",
    "x' || (SELECT 1) || '", "\\'", "''", "'", "\r\n\t",
]


@pytest.mark.parametrize("s", HOSTILE)
def test_sql_literal_round_trips(s: str):
    con = duckdb.connect()
    assert con.execute(f"SELECT {sql_literal(s)}").fetchone()[0] == s
    assert con.execute(f"SELECT {sql_list([s, 'b'])}").fetchone()[0] == [s, "b"]
    if "\0" not in s:
        assert con.execute(f"SELECT 1 AS {sql_ident(s)}").description[0][0] == s
    # one statement, whatever the value holds
    assert len(duckdb.extract_statements(f"SELECT {sql_literal(s)}")) == 1


def test_sql_literal_edges():
    assert sql_literal(None) == "NULL"
    assert duckdb.connect().execute(f"SELECT {sql_list([])}").fetchone()[0] == []
    with pytest.raises(TypeError):
        sql_literal(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sql_ident("a\0b")


def test_locked_connection_reaches_no_file(tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    con = locked_connection()
    con.register("t", pa.table({"a": [1]}))
    lock(con)
    assert con.execute("SELECT a FROM t").fetchone()[0] == 1
    con.execute("CREATE TEMP TABLE x AS SELECT 2 AS b")  # in-memory work still runs
    for sql in [f"SELECT * FROM read_text({sql_literal(str(secret))})",
                f"COPY (SELECT 1) TO {sql_literal(str(tmp_path / 'out.csv'))}",
                "COPY (SELECT 1) TO '.tmp/x.csv'",
                f"ATTACH {sql_literal(str(tmp_path / 'db.duckdb'))}",
                "SET enable_external_access = true", "SET temp_directory = '.tmp'"]:
        with pytest.raises(duckdb.Error):
            con.execute(sql)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.txt"]


# ------------------------------------------------------------------------------------------ the walk


def _sql_text(node: ast.AST) -> str:
    """The constant text of a string template (f-string parts, or a str constant)."""
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return ""


class _Checker(ast.NodeVisitor):
    """Collects (line, source of the value) for each interpolated value that is not an allowed form."""

    def __init__(self, source: str, consts: dict[str, str]):
        self.source = source
        self.consts = consts  # module-level NAME -> its string value (to know that a template is SQL)
        self.bad: list[tuple[int, str]] = []
        self.loop_vars: list[set[str]] = [set()]

    # -- scopes: loop variables over constants are internal identifiers
    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        const_loops = set()
        for sub in ast.walk(node):
            if isinstance(sub, (ast.For, ast.comprehension)) and isinstance(sub.target, ast.Name) \
                    and self._constant_iterable(sub.iter):
                const_loops.add(sub.target.id)
        self.loop_vars.append(const_loops)
        self.generic_visit(node)
        self.loop_vars.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Raise(self, node: ast.Raise) -> None:
        """An error message may quote SQL words ("use SELECT"); it is text for people, never executed."""

    def _constant_iterable(self, node: ast.AST) -> bool:
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return all(isinstance(e, ast.Constant) for e in node.elts)
        if isinstance(node, ast.Name):
            return node.id.isupper()
        if isinstance(node, ast.Attribute):
            return node.attr.isupper()
        return False

    # -- the forms
    def allowed(self, node: ast.AST, spec: ast.AST | None = None) -> bool:
        if spec is not None and isinstance(spec, ast.JoinedStr) and _NUMERIC_SPEC.match(_sql_text(spec)):
            return True
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.Name):
            return (node.id.isupper() or node.id.endswith("_sql") or node.id == "where"
                    or node.id in self.loop_vars[-1])
        if isinstance(node, ast.Attribute):
            return node.attr.isupper() or node.attr.endswith("_sql")
        if isinstance(node, ast.Call):
            fn = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            return fn in _HELPERS or fn in _NUMBERS or fn.endswith("_sql")
        if isinstance(node, ast.IfExp):
            return self.allowed(node.body) and self.allowed(node.orelse)
        if isinstance(node, ast.JoinedStr):  # a nested f-string: each of its values must be allowed
            return all(self.allowed(v.value, v.format_spec) for v in node.values if isinstance(v, ast.FormattedValue))
        return False

    def _flag(self, node: ast.AST) -> None:
        self.bad.append((node.lineno, ast.get_source_segment(self.source, node) or ast.dump(node)))

    def _is_sql(self, template: ast.AST) -> bool:
        if isinstance(template, ast.Name) and template.id in self.consts:
            return bool(_SQL_WORDS.search(self.consts[template.id]))
        return bool(_SQL_WORDS.search(_sql_text(template)))

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        if self._is_sql(node):
            for v in node.values:
                if isinstance(v, ast.FormattedValue) and not self.allowed(v.value, v.format_spec):
                    self._flag(v.value)
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Mod) and self._is_sql(node.left):
            args = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
            for a in args:
                if not self.allowed(a):
                    self._flag(a)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "format" and self._is_sql(f.value):
            for a in [*node.args, *(k.value for k in node.keywords)]:
                if not self.allowed(a):
                    self._flag(a)
        if (isinstance(f, ast.Attribute) and f.attr == "replace" and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("$")
                and not self.allowed(node.args[1])):
            self._flag(node.args[1])
        self.generic_visit(node)


def _module_consts(tree: ast.Module) -> dict[str, str]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = node.value.value
    return out


def check_source(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    checker = _Checker(source, _module_consts(tree))
    checker.visit(tree)
    return checker.bad


def test_every_interpolated_sql_value_is_an_allowed_form():
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50  # the walk sees the packages
    bad = [f"{p.relative_to(ROOT)}:{line}: {{{src}}}" for p in files for line, src in check_source(p.read_text())]
    assert not bad, ("SQL built from values that are not constants, internal identifiers or calib.sqlutil "
                     "helpers (bind them as parameters):\n" + "\n".join(bad))


def test_the_walk_catches_what_it_must():
    """The checker itself: each of these is the kind of line that let a dump write files."""
    bad = check_source('''
def f(con, name, runs, path):
    con.execute(f"SELECT * FROM signals WHERE signal = '{name}'")
    con.execute("SELECT * FROM episodes WHERE run_id = '%s'" % runs)
    con.execute("SELECT json_extract(info, '{}') FROM episodes".format(path))
    con.execute(_T.replace("$x", name))
    con.execute(f"SELECT {name!r}")
''')
    assert [line for line, _ in bad] == [3, 4, 5, 6, 7]
    ok = check_source('''
TABLES = ("episodes", "turns")
def g(con, name, n, where):
    con.execute(f"SELECT * FROM signals WHERE signal = {sql_literal(name)}")
    for t in TABLES:
        con.execute(f"SELECT count(*) FROM {t} LIMIT {int(n)} -- {n:.1f}")
    con.execute(f"SELECT * FROM episodes WHERE true {where}")
    msg = f"no run {name} in the store"  # not SQL
''')
    assert ok == []

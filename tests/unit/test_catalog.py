"""golemd.host.apps (load_app, describe_type) and golemd.model.catalog (check_args).

The supervisor refuses bad calls from the description alone, so what
describe_type writes down and what check_args makes of it go together.
Agent types register in a process-wide registry: every type here gets a
unique name. No `from __future__ import annotations` in this file: the
annotations here are real objects; string annotations are tested with
source compiled under that import.
"""

import functools
import sys
import textwrap
import typing
import uuid
from typing import Any, Optional

import pytest

from golemd.host.apps import describe_type, load_app, load_apps
from golemd.model.catalog import check_args
from golemd.sdk import agent, registered_types


def uniq(base: str = "T") -> str:
    return f"{base}_{uuid.uuid4().hex[:10]}"


def methods(desc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in desc["methods"]}


def sig_of(cls: type, name: str) -> dict[str, Any]:
    return methods(describe_type(cls))[name]


def ok(sig: dict[str, Any], *args: Any) -> None:
    problem = check_args("T.m", sig, list(args))
    assert problem is None, problem


def bad(sig: dict[str, Any], *args: Any) -> str:
    problem = check_args("T.m", sig, list(args))
    assert problem is not None, f"{args!r} should not fit {sig['signature']}"
    assert problem.startswith("T.m" + sig["signature"]), problem
    return problem


# -- describe_type ---------------------------------------------------------------

def test_describe_public_methods_only():
    name = uniq("Counter")

    @agent(name=name)
    class Counter:
        """Counts things."""

        limit = 10  # not a method

        def __init__(self, name: str):
            self.n = 0

        def increment(self, by: int = 1) -> int:
            """Add `by`."""
            self.n += by
            return self.n

        def get(self) -> int:
            return self.n

        def _helper(self) -> None:
            pass

        def __len__(self) -> int:
            return self.n

        @property
        def value(self) -> int:
            return self.n

        def save_snapshot(self) -> bytes:
            return b""

        def load_snapshot(self, data: bytes) -> None:
            pass

    desc = describe_type(Counter)
    assert desc["name"] == name
    assert desc["module"] == __name__
    assert desc["durable"] is True
    assert desc["doc"] == "Counts things."
    assert [m["name"] for m in desc["methods"]] == ["get", "increment"]
    inc = methods(desc)["increment"]
    assert inc["doc"] == "Add `by`."
    assert inc["signature"] == "(by: int = 1) -> int"
    assert inc["params"] == [{"name": "by", "kind": "POSITIONAL_OR_KEYWORD", "annotation": "int",
                              "has_default": True}]
    assert methods(desc)["get"]["signature"] == "() -> int"
    assert methods(desc)["get"]["params"] == []
    assert desc["constructor"]["signature"] == "(name: str)"
    assert desc["constructor"]["params"] == [{"name": "name", "kind": "POSITIONAL_OR_KEYWORD",
                                              "annotation": "str", "has_default": False}]


def test_describe_name_and_durable():
    @agent
    class PlainNamedAfterClass_e1c4:  # noqa: N801
        pass

    assert describe_type(PlainNamedAfterClass_e1c4)["name"] == "PlainNamedAfterClass_e1c4"
    name = uniq("Renamed")

    @agent(name=name, durable=False)
    class Whatever:
        def ping(self) -> str:
            return "pong"

    desc = describe_type(Whatever)
    assert desc["name"] == name
    assert desc["durable"] is False
    assert registered_types()[name] is Whatever


def test_describe_without_init_is_a_singleton_constructor():
    @agent(name=uniq())
    class NoInit:
        def ping(self) -> None:
            pass

    desc = describe_type(NoInit)
    assert desc["constructor"]["signature"] == "()"
    assert desc["constructor"]["params"] == []
    assert check_args("NoInit", desc["constructor"], []) is None
    assert "takes 0 arguments, 1 given" in check_args("NoInit", desc["constructor"], ["x"])


def test_describe_static_and_class_methods():
    @agent(name=uniq())
    class Tools:
        @staticmethod
        def add(a: int, b: int) -> int:
            """Static."""
            return a + b

        @classmethod
        def make(cls, n: int) -> str:
            return str(n)

        def inst(self, n: int) -> int:
            return n

    m = methods(describe_type(Tools))
    assert set(m) == {"add", "make", "inst"}
    # staticmethod: nothing dropped; classmethod: cls dropped; method: self dropped
    assert [p["name"] for p in m["add"]["params"]] == ["a", "b"]
    assert m["add"]["signature"] == "(a: int, b: int) -> int"
    assert m["add"]["doc"] == "Static."
    assert [p["name"] for p in m["make"]["params"]] == ["n"]
    assert m["make"]["signature"] == "(n: int) -> str"
    assert [p["name"] for p in m["inst"]["params"]] == ["n"]
    ok(m["add"], 1, 2)
    assert "takes 2 arguments, 1 given" in bad(m["add"], 1)
    ok(m["make"], 1)


def test_describe_inherited_methods():
    class Base:
        def hello(self, who: str) -> str:
            return who

        def _private(self) -> None:
            pass

    @agent(name=uniq())
    class Child(Base):
        def own(self) -> None:
            pass

    assert [m["name"] for m in describe_type(Child)["methods"]] == ["hello", "own"]


def test_describe_parameter_kinds_and_defaults():
    @agent(name=uniq())
    class Kinds:
        def __init__(self, name: str, n: int = 3, *rest: Any, flag: bool = False, **kw: Any):
            pass

        def plain(self, a, b="x"):  # noqa: ANN001, ANN202
            pass

    desc = describe_type(Kinds)
    ctor = desc["constructor"]
    assert ctor["signature"] == "(name: str, n: int = 3, *rest: Any, flag: bool = False, **kw: Any)"
    assert [(p["name"], p["kind"], p["has_default"]) for p in ctor["params"]] == [
        ("name", "POSITIONAL_OR_KEYWORD", False), ("n", "POSITIONAL_OR_KEYWORD", True),
        ("rest", "VAR_POSITIONAL", False), ("flag", "KEYWORD_ONLY", True), ("kw", "VAR_KEYWORD", False)]
    plain = methods(desc)["plain"]
    assert plain["signature"] == "(a, b='x')"
    assert [p["annotation"] for p in plain["params"]] == [None, None]


def test_describe_annotation_text():
    @agent(name=uniq())
    class Ann:
        def m(self, a: list[int], b: Optional[str], c: int | None, d: typing.List[int],  # noqa: UP006, UP045
              e: dict[str, int], f: None, g: Any) -> tuple[int, str]:
            return (1, "")

    params = {p["name"]: p["annotation"] for p in sig_of(Ann, "m")["params"]}
    assert params == {"a": "list[int]", "b": "Optional[str]", "c": "int | None", "d": "List[int]",
                      "e": "dict[str, int]", "f": "None", "g": "Any"}
    assert sig_of(Ann, "m")["signature"].endswith("-> tuple[int, str]")


def test_describe_string_annotations():
    # `from __future__ import annotations`: every annotation is a string
    name = uniq("Future")
    src = textwrap.dedent(f"""
        from __future__ import annotations
        from typing import Optional
        from golemd.sdk import agent

        @agent(name={name!r})
        class Future:
            def __init__(self, name: str, size: int = 2):
                pass

            def m(self, a: int, b: float, c: list[int], d: int | None, e: Optional[str], f: Unknown) -> int:
                return 0
    """)
    ns: dict[str, Any] = {"__name__": "golemd_future_test_module"}
    exec(compile(src, "<future>", "exec"), ns)  # noqa: S102
    desc = describe_type(ns["Future"])
    assert desc["constructor"]["signature"] == "(name: str, size: int = 2)"
    m = methods(desc)["m"]
    assert m["signature"] == "(a: int, b: float, c: list[int], d: int | None, e: Optional[str], f: Unknown) -> int"
    ok(m, 1, 2, [3], None, None, object())
    ok(m, 1, 2.5, [], 4, "s", "anything")
    assert "argument 1 (a) must be int" in bad(m, "1", 2, [3], None, None, 0)
    assert "argument 2 (b) must be float" in bad(m, 1, "2", [3], None, None, 0)
    assert "argument 3 (c) must be list[int]" in bad(m, 1, 2, {}, None, None, 0)
    assert "argument 4 (d) must be int | None" in bad(m, 1, 2, [], "x", None, 0)
    assert "argument 5 (e) must be Optional[str]" in bad(m, 1, 2, [], None, 5, 0)
    assert check_args(name, desc["constructor"], ["n"]) is None
    assert "must be str" in check_args(name, desc["constructor"], [1])


def test_string_annotations_check_like_real_ones():
    name = uniq("FutureTyping")
    src = textwrap.dedent(f"""
        from __future__ import annotations
        import typing
        from golemd.sdk import agent

        @agent(name={name!r})
        class FutureTyping:
            def m(self, a: typing.Optional[int], b: typing.List[int]) -> None:
                pass
    """)
    ns: dict[str, Any] = {"__name__": "golemd_future_typing_test_module"}
    exec(compile(src, "<future>", "exec"), ns)  # noqa: S102
    m = methods(describe_type(ns["FutureTyping"]))["m"]
    ok(m, None, [1])
    bad(m, "not an int", [1])
    bad(m, 1, "not a list")


def test_describe_keyword_only_and_positional_only_separators():
    @agent(name=uniq())
    class Sep:
        def kw(self, *, need: int) -> None:
            pass

        def pos(self, a: int, /, b: int) -> None:
            pass

    m = methods(describe_type(Sep))
    assert m["kw"]["signature"] == "(*, need: int) -> None"
    assert m["pos"]["signature"] == "(a: int, /, b: int) -> None"


def test_describe_includes_decorated_public_methods():
    @agent(name=uniq())
    class Cached:
        @functools.cache  # noqa: B019
        def table(self) -> list[int]:
            return [1, 2]

    assert "table" in methods(describe_type(Cached))


# -- check_args: arity ----------------------------------------------------------

@pytest.fixture(scope="module")
def arity() -> dict[str, dict[str, Any]]:
    @agent(name=uniq("Arity"))
    class Arity:
        def none(self) -> None:
            pass

        def one(self, a) -> None:  # noqa: ANN001
            pass

        def two(self, a, b) -> None:  # noqa: ANN001
            pass

        def opt(self, a, b=1, c=2) -> None:  # noqa: ANN001
            pass

        def var(self, a, *rest) -> None:  # noqa: ANN001, ANN002
            pass

        def onlyvar(self, *rest) -> None:  # noqa: ANN002
            pass

        def kwreq(self, a, *, k) -> None:  # noqa: ANN001
            pass

        def kwopt(self, a, *, k=1, **more) -> None:  # noqa: ANN001, ANN003
            pass

        def posonly(self, a, /, b=2) -> None:  # noqa: ANN001
            pass

    return methods(describe_type(Arity))


def test_arity_exact(arity):
    ok(arity["none"])
    assert "takes 0 arguments, 1 given" in bad(arity["none"], 1)
    ok(arity["one"], "x")
    assert "takes 1 argument, 0 given" in bad(arity["one"])
    assert "takes 1 argument, 2 given" in bad(arity["one"], 1, 2)
    ok(arity["two"], 1, 2)
    assert "takes 2 arguments, 1 given" in bad(arity["two"], 1)
    assert "takes 2 arguments, 3 given" in bad(arity["two"], 1, 2, 3)


def test_arity_defaults(arity):
    for n in (1, 2, 3):
        ok(arity["opt"], *range(n))
    assert "takes 1 to 3 arguments, 0 given" in bad(arity["opt"])
    assert "takes 1 to 3 arguments, 4 given" in bad(arity["opt"], 1, 2, 3, 4)
    ok(arity["posonly"], 1)
    ok(arity["posonly"], 1, 2)
    bad(arity["posonly"])
    bad(arity["posonly"], 1, 2, 3)


def test_arity_varargs(arity):
    assert "takes at least 1 arguments, 0 given" in bad(arity["var"])
    for n in (1, 2, 10):
        ok(arity["var"], *range(n))
    ok(arity["onlyvar"])
    ok(arity["onlyvar"], *range(50))


def test_arity_keyword_only(arity):
    problem = bad(arity["kwreq"], 1)
    assert "keyword-only" in problem and "(k)" in problem
    bad(arity["kwreq"], 1, 2)
    # keyword-only with a default, and **kwargs, are no obstacle
    ok(arity["kwopt"], 1)
    bad(arity["kwopt"], 1, 2)


# -- check_args: annotations ----------------------------------------------------

@pytest.fixture(scope="module")
def typed() -> dict[str, dict[str, Any]]:
    class Custom:
        pass

    @agent(name=uniq("Typed"))
    class Typed:
        def i(self, x: int) -> None: pass
        def f(self, x: float) -> None: pass
        def s(self, x: str) -> None: pass
        def b(self, x: bool) -> None: pass
        def by(self, x: bytes) -> None: pass
        def li(self, x: list) -> None: pass
        def d(self, x: dict) -> None: pass
        def t(self, x: tuple) -> None: pass
        def n(self, x: None) -> None: pass
        def oi(self, x: int | None) -> None: pass
        def opt(self, x: Optional[int]) -> None: pass  # noqa: UP045
        def optl(self, x: Optional[list[int]]) -> None: pass  # noqa: UP045
        def gl(self, x: list[int]) -> None: pass
        def tl(self, x: typing.List[str]) -> None: pass  # noqa: UP006
        def td(self, x: typing.Dict[str, int]) -> None: pass  # noqa: UP006
        def gt(self, x: tuple[int, ...]) -> None: pass
        def dn(self, x: dict[str, int | None]) -> None: pass
        def ln(self, x: list[int | str] | None) -> None: pass
        def union(self, x: int | str) -> None: pass
        def anything(self, x: Any) -> None: pass
        def custom(self, x: Custom) -> None: pass
        def literal(self, x: typing.Literal["a"]) -> None: pass
        def multi(self, a: int, b: str, c: float = 0.0) -> None: pass

    return methods(describe_type(Typed))


ALL_VALUES = [0, 1, -5, 2**63, 1.5, "s", "", True, False, None, b"b", [], [1], ["a"], {}, {"k": 1}, (1,)]


@pytest.mark.parametrize(("method", "accepted"), [
    ("i", [0, 1, -5, 2**63, True, False]),
    ("f", [0, 1, -5, 2**63, 1.5, True, False]),  # float accepts int
    ("s", ["s", ""]),
    ("b", [True, False]),
    ("by", [b"b"]),
    ("li", [[], [1], ["a"]]),
    ("d", [{}, {"k": 1}]),
    ("t", [[], [1], ["a"], (1,)]),  # tuples arrive as msgpack arrays
    ("n", [None]),
    ("oi", [0, 1, -5, 2**63, True, False, None]),
    ("opt", [0, 1, -5, 2**63, True, False, None]),
    ("optl", [[], [1], ["a"], None]),
    ("gl", [[], [1], ["a"]]),  # list[int] is checked as list
    ("tl", [[], [1], ["a"]]),
    ("td", [{}, {"k": 1}]),
    ("gt", [[], [1], ["a"], (1,)]),
    ("dn", [{}, {"k": 1}]),  # the | inside the brackets is not the annotation's own
    ("ln", [[], [1], ["a"], None]),
    ("union", [0, 1, -5, 2**63, True, False, "s", ""]),
    ("anything", ALL_VALUES),
    ("custom", ALL_VALUES),
    ("literal", ALL_VALUES),
])
def test_annotations(typed, method, accepted):
    sig = typed[method]
    for value in ALL_VALUES:
        problem = check_args("T.m", sig, [value])
        if any(value is a or (type(value) is type(a) and value == a) for a in accepted):
            assert problem is None, f"{method}: {value!r} refused: {problem}"
        else:
            assert problem is not None, f"{method}: {value!r} accepted"
            assert "argument 1 (x) must be" in problem
            assert type(value).__name__ in problem


def test_annotation_message_names_the_argument(typed):
    sig = typed["multi"]
    ok(sig, 1, "a")
    ok(sig, 1, "a", 2)
    problem = bad(sig, 1, 2)
    assert "argument 2 (b) must be str, got int 2" in problem
    problem = bad(sig, 1, "a", "zz" * 100)
    assert "argument 3 (c) must be float, got str" in problem
    assert len(problem) < 200  # the value is shortened
    # arity is reported before types
    assert "takes 2 to 3 arguments, 1 given" in bad(sig, "wrong")


def test_unknown_annotation_text_lets_anything_through():
    sig = {"signature": "(x: Weird[int])", "params": [
        {"name": "x", "kind": "POSITIONAL_OR_KEYWORD", "annotation": "Weird[int]", "has_default": False}]}
    for value in ALL_VALUES:
        ok(sig, value)


# -- load_app ---------------------------------------------------------------------

@pytest.fixture
def isolated_import_state(monkeypatch):
    """load_app edits sys.path and sys.modules: give them back afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_load_app_file(tmp_path, isolated_import_state):
    mod = uniq("app").lower()
    helper = uniq("helper").lower()
    type_name = uniq("FileAgent")
    (tmp_path / f"{helper}.py").write_text("GREETING = 'hi'\n")
    path = tmp_path / f"{mod}.py"
    path.write_text(textwrap.dedent(f"""
        from golemd.sdk import agent
        from {helper} import GREETING  # a sibling module

        @agent(name={type_name!r})
        class FileAgent:
            def __init__(self, name: str):
                self.name = name

            def hello(self) -> str:
                return GREETING
    """))
    load_app(str(path))
    module = sys.modules[mod]
    assert module.__file__ == str(path)
    cls = registered_types()[type_name]
    assert cls.__module__ == mod
    desc = describe_type(cls)
    assert desc["module"] == mod
    assert desc["constructor"]["signature"] == "(name: str)"
    assert [m["name"] for m in desc["methods"]] == ["hello"]
    # loading again (reload) works and keeps the type
    load_app(str(path))
    assert type_name in registered_types()
    assert load_apps([str(path)])[type_name]["module"] == mod


def test_load_app_import_error_propagates(tmp_path, isolated_import_state):
    mod = uniq("broken").lower()
    path = tmp_path / f"{mod}.py"
    path.write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(RuntimeError, match="boom at import"):
        load_app(str(path))
    assert mod not in sys.modules
    path.write_text("def (:\n")
    with pytest.raises(SyntaxError):
        load_app(str(path))
    assert mod not in sys.modules


def test_load_app_missing_file(tmp_path, isolated_import_state):
    with pytest.raises(ImportError, match="does not exist"):
        load_app(str(tmp_path / "nope.py"))


def test_load_app_never_shadows_another_module(tmp_path, isolated_import_state):
    import json

    path = tmp_path / "json.py"
    path.write_text("X = 1\n")
    load_app(str(path))
    assert sys.modules["json"] is json
    assert sys.modules["golemd_app_json"].X == 1
    assert sys.path[0] != str(tmp_path)  # its folder cannot shadow what others import


def test_load_app_dotted_module(tmp_path, monkeypatch, isolated_import_state):
    pkg = uniq("pkg").lower()
    type_name = uniq("ModAgent")
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / pkg / "agents.py").write_text(textwrap.dedent(f"""
        from golemd.sdk import agent

        @agent(name={type_name!r})
        class ModAgent:
            def ping(self) -> str:
                return "pong"
    """))
    monkeypatch.chdir(tmp_path)
    load_app(f"{pkg}.agents")
    assert registered_types()[type_name].__module__ == f"{pkg}.agents"
    with pytest.raises(ImportError):
        load_app(f"{pkg}.missing")

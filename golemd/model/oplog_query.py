"""The oplog's query language (`golemctl agent oplog --query`, the `oplog`
op's `query`): a few terms, all of which an entry must match.

    term      := ["-"] (FIELD ":" value | value)
    value     := WORD | '"' phrase '"'      (in a phrase, \\" is a quote and \\\\ a backslash)

- A bare term matches an entry that has it anywhere in its text (its kind,
  key, method, detail, arguments, result, error, effect), case-insensitive.
- `FIELD:value` matches one field. The names (FIELDS): `kind`, `key` (or
  `idempotency_key`), `method`, `code` (an error's code) and `effect` (an
  effect's kind) match the whole value, case-insensitive, where `*` stands
  for any run of characters (`kind:effect*`, `key:call-*`); `args`,
  `result`, `error` (`CODE: message`), `target` (whom an effect acts on)
  and `detail` match a part of the text, as a bare term does. Values are
  shown as golemctl shows them: Python literals with double-quoted strings.
- Terms are separated by spaces and all must match (AND). A leading `-`
  negates a term (`-kind:started`). There is no OR and no grouping.
- Quotes make a phrase (`"no hat left"`, `error:"no hat"`); a quoted term
  is always bare, so text with a colon or a leading `-` is searched quoted.
  A quote inside a word is an ordinary character (`Inventory("main")`).
- An unknown field, a field without a value or an unclosed quote is a
  QueryError; an empty query matches every entry.

Pure: imports only the model. The `oplog` op parses and filters with it in
the daemon; nothing else does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any

from golemd.model.agent_id import format_literal

# field name as written -> the field it reads
FIELDS = {"kind": "kind", "key": "key", "idempotency_key": "key", "method": "method", "code": "code",
          "effect": "effect", "args": "args", "result": "result", "error": "error", "target": "target",
          "detail": "detail"}
EXACT = frozenset({"kind", "key", "method", "code", "effect"})
"""Fields matched as a whole (with `*`); the others by a part of their text."""


class QueryError(ValueError):
    """The query cannot be parsed: the message says where and why."""


@dataclass(frozen=True, slots=True)
class Term:
    field: str | None  # a FIELDS value; None: anywhere
    value: str  # casefolded
    negated: bool = False
    _pattern: re.Pattern[str] | None = _field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.field in EXACT:  # compiled once, not per entry
            object.__setattr__(self, "_pattern", _glob(self.value))

    def matches(self, entry: Mapping[str, Any]) -> bool:
        texts = texts_of(entry, self.field)
        if self._pattern is not None:
            hit = any(self._pattern.fullmatch(t.casefold()) for t in texts)
        else:
            hit = any(self.value in t.casefold() for t in texts)
        return hit != self.negated


@dataclass(frozen=True, slots=True)
class Query:
    terms: tuple[Term, ...] = ()

    def matches(self, entry: Mapping[str, Any]) -> bool:
        return all(t.matches(entry) for t in self.terms)


def parse(text: str) -> Query:
    """The query in `text`, or QueryError."""
    terms: list[Term] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return Query(tuple(terms))
        start = i
        negated = text[i] == "-"
        if negated:
            i += 1
            if i >= n or text[i].isspace():
                raise QueryError(f"a '-' at {start + 1} needs a term right after it")
        if text[i] == '"':
            value, i = _phrase(text, i)
            terms.append(Term(None, value.casefold(), negated))
            continue
        j = i
        while j < n and not text[j].isspace():
            j += 1
        word = text[i:j]
        name, colon, value = word.partition(":")
        if not colon:
            terms.append(Term(None, word.casefold(), negated))
            i = j
            continue
        field = FIELDS.get(name.casefold())
        if field is None:
            raise QueryError(f"unknown field {name!r} at {i + 1} (fields: {', '.join(FIELDS)}); "
                             "quote the term to search for text with a colon")
        if value.startswith('"'):
            value, j = _phrase(text, i + len(name) + 1)
        elif not value:
            raise QueryError(f"field {name!r} at {i + 1} needs a value ({name}:VALUE)")
        terms.append(Term(field, value.casefold(), negated))
        i = j


def _phrase(text: str, i: int) -> tuple[str, int]:
    """The phrase whose opening quote is at `i`, and where the text after it starts."""
    out: list[str] = []
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "\\" and j + 1 < len(text) and text[j + 1] in '"\\':
            out.append(text[j + 1])
            j += 2
            continue
        if c == '"':
            if j + 1 < len(text) and not text[j + 1].isspace():
                raise QueryError(f"a space must follow the phrase closed at {j + 1}")
            return "".join(out), j + 1
        out.append(c)
        j += 1
    raise QueryError(f"the quote at {i + 1} is not closed")


def _glob(value: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in re.split(r"\*+", value)), re.DOTALL)


# --- an entry's text, field by field ------------------------------------------------


def _literal(value: Any) -> str:
    return format_literal(value)


def _args(values: Any) -> str:
    return ", ".join(_literal(v) for v in values) if isinstance(values, (list, tuple)) else _literal(values)


def _error(err: Any) -> str:
    if not isinstance(err, Mapping):
        return ""
    return f"{err.get('code') or err.get('type') or ''}: {err.get('message', '')}"


def _effect(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    eff = entry.get("effect")
    return eff if isinstance(eff, Mapping) else {}


def _str(value: Any) -> list[str]:
    return [] if value is None else [str(value)]


def _effect_args(entry: Mapping[str, Any]) -> list[str]:
    request = _effect(entry).get("request")
    if isinstance(request, Mapping) and "args" in request:
        return [_args(request["args"])]
    return []


def _results(entry: Mapping[str, Any]) -> list[str]:
    return [_literal(m["result"]) for m in (entry, _effect(entry)) if "result" in m]


def _errors(entry: Mapping[str, Any]) -> list[str]:
    return [_error(m["error"]) for m in (entry, _effect(entry)) if "error" in m]


def _codes(entry: Mapping[str, Any]) -> list[str]:
    return [str(m["error"]["code"]) for m in (entry, _effect(entry))
            if isinstance(m.get("error"), Mapping) and m["error"].get("code") is not None]


_TEXTS: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "kind": lambda e: _str(e.get("kind")),
    "key": lambda e: _str(e.get("idempotency_key")),
    "method": lambda e: _str(e.get("method")),
    "code": _codes,
    "effect": lambda e: _str(_effect(e).get("kind")),
    "args": lambda e: ([_args(e["args"])] if "args" in e else []) + _effect_args(e),
    "result": _results,
    "error": _errors,
    "target": lambda e: _str(_effect(e).get("target")),
    "detail": lambda e: _str(e.get("detail")),
}


def texts_of(entry: Mapping[str, Any], field: str | None) -> list[str]:
    """The texts a term on `field` (None: a bare term) is matched against."""
    if field is not None:
        return _TEXTS[field](entry)
    out = [t for get in _TEXTS.values() for t in get(entry)]
    request = _effect(entry).get("request")
    if request is not None:
        out.append(_literal(request))
    return out


def newest_from(n: int, last: int | None) -> int:
    """Where the newest `last` of `n` entries start (None: all, 0: none)."""
    if last is None:
        return 0
    return max(n - last, 0) if last else n

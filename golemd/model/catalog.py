"""The loaded agent types as plain data, and the argument checks made with it.

The supervisor refuses an unknown method or arguments that cannot fit the
signature before anything is enqueued; it does so from the description the
template process sent, without importing agent code.
"""

from __future__ import annotations

import functools
from typing import Any

_SIMPLE: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "bytes": (bytes,),
    "list": (list,),
    "tuple": (list, tuple),
    "dict": (dict,),
    "None": (type(None),),
    "NoneType": (type(None),),
}


@functools.lru_cache(maxsize=1024)
def _allowed(annotation: str | None) -> tuple[type, ...] | None:
    """Types an annotation admits, or None when we cannot tell (then anything goes)."""
    if not annotation:
        return None
    text = annotation.strip().replace("typing.", "")
    if text.startswith("Optional[") and text.endswith("]"):
        text = text[len("Optional["):-1] + " | None"
    out: list[type] = []
    for part in _members(text):
        part = part.strip()
        base = part.split("[", 1)[0].strip()
        if base in ("List", "Dict", "Tuple"):
            base = base.lower()
        if base not in _SIMPLE:
            return None
        out.extend(_SIMPLE[base])
    return tuple(out)


def _members(union: str) -> list[str]:
    """The members of `A | B[C | D]`: A and B[C | D]; a `|` inside brackets is the member's own."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(union):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(union[start:i])
            start = i + 1
    parts.append(union[start:])
    return parts


def check_args(what: str, sig: dict[str, Any], args: list[Any]) -> str | None:
    """Why `args` cannot be passed positionally to `sig`, or None if they can."""
    cached = _PLANS.get(id(sig))
    if cached is None or cached[0] is not sig:
        # On every invocation's path: worked out once per signature. Kept
        # beside the signature, not in it: the catalog goes out on the wire.
        if len(_PLANS) > 10_000:
            _PLANS.clear()
        cached = _PLANS[id(sig)] = (sig, _plan(sig))
    positional, varargs, kwonly_required, required, allowed = cached[1]
    if kwonly_required:
        return f"{what}{sig['signature']} needs keyword-only arguments ({', '.join(kwonly_required)}), which cannot be passed"
    n = len(args)
    if n < required or (not varargs and n > len(positional)):
        if varargs:
            want = f"at least {required}"
        elif required == len(positional):
            want = str(required)
        else:
            want = f"{required} to {len(positional)}"
        return f"{what}{sig['signature']} takes {want} argument{'s' if want != '1' else ''}, {n} given"
    for i, (p, types, value) in enumerate(zip(positional, allowed, args, strict=False), 1):
        if types is None or isinstance(value, types):
            continue
        return (f"{what}{sig['signature']}: argument {i} ({p['name']}) must be "
                f"{p['annotation']}, got {type(value).__name__} {value!r:.60}")
    return None


# A signature worked out for check_args: its positional parameters, whether
# it takes *args, its keyword-only parameters without a default, how many
# positional ones are required, and the types each positional one admits.
_Plan = tuple[list[dict[str, Any]], bool, list[str], int, list[tuple[type, ...] | None]]
_PLANS: dict[int, tuple[dict[str, Any], _Plan]] = {}


def _plan(sig: dict[str, Any]) -> _Plan:
    positional = [p for p in sig["params"] if p["kind"] in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")]
    varargs = any(p["kind"] == "VAR_POSITIONAL" for p in sig["params"])
    kwonly_required = [p["name"] for p in sig["params"]
                       if p["kind"] == "KEYWORD_ONLY" and not p["has_default"]]
    required = sum(1 for p in positional if not p["has_default"])
    return positional, varargs, kwonly_required, required, [_allowed(p["annotation"]) for p in positional]

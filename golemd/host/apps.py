"""Import apps (files or modules) and describe the agent types they register.

Runs only in the template process (zygote): the supervisor never imports
agent code. The description it sends is plain data (see catalog.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from typing import Any

from golemd.sdk import registered_types, spec_of

RESERVED_METHODS = frozenset({"save_snapshot", "load_snapshot"})


def load_app(app: str) -> None:
    """Import one app: a path to a .py file, or a dotted module name."""
    if app.endswith(".py") or os.sep in app:
        path = os.path.abspath(app)
        if not os.path.isfile(path):
            raise ImportError(f"app file {app!r} does not exist")
        directory, filename = os.path.split(path)
        name = filename[:-3] if filename.endswith(".py") else filename
        # The module keeps its file's name, so that pickled agents refer to it
        # by a name that survives restarts; unless that name is another
        # module's (random.py, types.py...): then a name of our own, as stable.
        if _taken(name, path):
            name = f"golemd_app_{name}"
        # Its folder goes at the end of sys.path: its sibling imports work,
        # and it cannot shadow a module that agents or golemd rely on.
        if directory not in sys.path:
            sys.path.append(directory)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load app file {app!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        importlib.import_module(app)


def _taken(name: str, path: str) -> bool:
    """Is `name` the name of a module other than the file at `path`?"""
    if name in sys.stdlib_module_names:
        return True
    existing = sys.modules.get(name)
    if existing is not None:
        return os.path.abspath(getattr(existing, "__file__", "") or "") != path
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and os.path.abspath(spec.origin or "") != path


def _param(p: inspect.Parameter) -> dict[str, Any]:
    return {"name": p.name, "kind": p.kind.name, "annotation": _annotation(p.annotation),
            "has_default": p.default is not inspect.Parameter.empty}


def _annotation(ann: Any) -> str | None:
    if ann is inspect.Parameter.empty or ann is inspect.Signature.empty:
        return None
    if isinstance(ann, str):
        return ann
    if isinstance(ann, type):
        return ann.__name__
    return str(ann).replace("typing.", "")


def _render(params: list[inspect.Parameter], returns: Any) -> str:
    """The signature as source would write it (string annotations unquoted)."""
    parts = []
    kinds = [p.kind for p in params]
    for i, p in enumerate(params):
        if p.kind == p.KEYWORD_ONLY and inspect.Parameter.VAR_POSITIONAL not in kinds \
                and (i == 0 or params[i - 1].kind != p.KEYWORD_ONLY):
            parts.append("*")
        text = {"VAR_POSITIONAL": "*", "VAR_KEYWORD": "**"}.get(p.kind.name, "") + p.name
        ann = _annotation(p.annotation)
        if ann:
            text += f": {ann}"
        if p.default is not inspect.Parameter.empty:
            text += f" = {p.default!r}" if ann else f"={p.default!r}"
        parts.append(text)
        if p.kind == p.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind != p.POSITIONAL_ONLY):
            parts.append("/")
    ret = _annotation(returns)
    return f"({', '.join(parts)})" + (f" -> {ret}" if ret else "")


def _signature(obj: Any, drop_self: bool) -> dict[str, Any]:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return {"signature": "(*args)", "params": [
            {"name": "args", "kind": "VAR_POSITIONAL", "annotation": None, "has_default": False}]}
    params = list(sig.parameters.values())
    if drop_self and params:
        params = params[1:]
    return {"signature": _render(params, sig.return_annotation), "params": [_param(p) for p in params]}


def describe_type(cls: type[object]) -> dict[str, Any]:
    spec = spec_of(cls)
    methods = []
    for name in sorted(dir(cls)):
        if name.startswith("_") or name in RESERVED_METHODS:
            continue
        raw = inspect.getattr_static(cls, name)
        if isinstance(raw, (staticmethod, classmethod)):
            member, drop = getattr(cls, name), False
        elif inspect.isfunction(raw):
            member, drop = raw, True
        elif callable(raw) and not isinstance(raw, type):
            # A decorated method (functools.cache and the like): describe what
            # an instance would call.
            member, drop = getattr(raw, "__wrapped__", raw), inspect.isfunction(getattr(raw, "__wrapped__", None))
        else:
            continue
        limit = getattr(member, "__golem_timeout__", None) or spec.timeout
        methods.append({"name": name, "doc": inspect.getdoc(member), "timeout": limit,
                        **_signature(member, drop)})
    init = cls.__init__ if cls.__init__ is not object.__init__ else (lambda self: None)
    return {
        "name": spec.name,
        "module": cls.__module__,
        "qualname": cls.__qualname__,
        "durable": spec.durable,
        "memory_limit_mb": spec.memory_limit_mb,
        "cpu_limit": spec.cpu_limit,
        "doc": inspect.getdoc(cls),
        "constructor": _signature(init, True),
        "methods": methods,
    }


def load_apps(apps: list[str]) -> dict[str, dict[str, Any]]:
    """Import every app; return {type name: description}."""
    for app in apps:
        load_app(app)
    return {name: describe_type(cls) for name, cls in registered_types().items()}

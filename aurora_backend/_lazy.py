"""Names a package exports but imports on first use (PEP 562), so that importing it stays cheap.

``import aurora_backend`` must work without configured Django settings and without loading
a driver (a settings module imports it to name the ENGINE); the public names that need
Django are resolved by the package's ``__getattr__`` the first time they are read, then
kept in the package's namespace like any other attribute.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, lazy: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for ``lazy``: {name: module}.

    A name whose module is ``package.name`` is that submodule itself.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError("module %r has no attribute %r" % (package, name))
        value: Any = importlib.import_module(module)
        if module != "%s.%s" % (package, name):
            value = getattr(value, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(lazy))

    return __getattr__, __dir__

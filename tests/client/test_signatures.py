"""Client and AsyncClient differ only in `await`: same methods, same parameters, same defaults."""

from __future__ import annotations

import inspect

import pytest

from clipforge.client import AsyncClient, AsyncGenerationHandle, Client, GenerationHandle


def public_methods(cls: type) -> dict[str, object]:
    return {name: fn for name, fn in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}


def shape(fn: object) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("sync, async_", [(Client, AsyncClient), (GenerationHandle, AsyncGenerationHandle)])
def test_sync_and_async_signatures_match(sync: type, async_: type):
    sync_methods, async_methods = public_methods(sync), public_methods(async_)
    assert sync_methods.keys() == async_methods.keys()
    for name, fn in sync_methods.items():
        assert shape(fn) == shape(async_methods[name]), name
        assert not inspect.iscoroutinefunction(fn)
        assert inspect.iscoroutinefunction(async_methods[name]), f"{async_.__name__}.{name} should be async"
    assert shape(sync.__init__) == shape(async_.__init__)


def test_context_managers():
    assert hasattr(Client, "__enter__") and hasattr(Client, "__exit__")
    assert inspect.iscoroutinefunction(AsyncClient.__aenter__) and inspect.iscoroutinefunction(AsyncClient.__aexit__)

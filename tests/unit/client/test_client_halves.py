"""The sync and async clients are thin, symmetric halves over one core, with one send loop each."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import airflow_provider_venice.client as client_package
from airflow_provider_venice.client import AsyncVeniceClient, VeniceClient

PACKAGE = Path(client_package.__file__).parent
# The async half's names for the sync half's context-manager and closing methods.
ASYNC_NAME = {"__enter__": "__aenter__", "__exit__": "__aexit__", "close": "aclose"}


def _class_node(module: str, name: str) -> ast.ClassDef:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    return next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name)


@pytest.mark.parametrize(("module", "name"), [("_sync", "VeniceClient"), ("_async", "AsyncVeniceClient")])
def test_each_half_has_exactly_one_send_loop(module: str, name: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    loops = [node for node in ast.walk(tree) if isinstance(node, ast.While)]
    assert len(loops) == 1
    senders = [
        node.name
        for node in ast.walk(_class_node(module, name))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(isinstance(inner, ast.While) for inner in ast.walk(node))
    ]
    assert senders == ["_send"]


def _methods(cls: type) -> set[str]:
    return {
        name
        for name, value in vars(cls).items()
        if callable(value) or isinstance(value, property) or inspect.isfunction(value)
    } - {"__init__", "__repr__", "is_closed"}


def test_the_halves_have_the_same_methods() -> None:
    sync_names = {ASYNC_NAME.get(name, name) for name in _methods(VeniceClient)}
    assert sync_names == _methods(AsyncVeniceClient)


def test_the_halves_send_through_the_core_only() -> None:
    for module in ("_sync", "_async"):
        source = (PACKAGE / f"{module}.py").read_text()
        assert "httpx.Request(" not in source  # requests are built by the core
        assert "Authorization" not in source


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_client_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 400

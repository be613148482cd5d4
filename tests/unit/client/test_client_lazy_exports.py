"""The client package loads its public names on first use, and every one of them is there."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_provider_venice.client as client_package

INIT = Path(client_package.__file__)


def _type_checking_names() -> set[str]:
    """Names the package re-exports for type checkers (its ``if TYPE_CHECKING:`` imports)."""
    tree = ast.parse(INIT.read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If))
    return {alias.asname or alias.name for node in block.body for alias in node.names}


def test_the_names_for_type_checkers_and_for_run_time_are_the_same():
    assert _type_checking_names() == set(client_package.__all__)


@pytest.mark.parametrize("name", client_package.__all__)
def test_every_public_name_resolves_to_its_home_module(name):
    value = getattr(client_package, name)
    home = client_package._HOME_OF[name]
    assert value is getattr(sys.modules[f"airflow_provider_venice.client.{home}"], name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        client_package.Nope  # noqa: B018


def test_importing_the_package_loads_no_submodule_until_a_name_is_used():
    code = (
        "import sys, airflow_provider_venice.client as c\n"
        "before = sorted(m for m in sys.modules if m.startswith('airflow_provider_venice.client.'))\n"
        "c.VeniceClient\n"
        "after = sorted(m for m in sys.modules if m.startswith('airflow_provider_venice.client.'))\n"
        "print(before, '_sync' in ' '.join(after), '_models' in ' '.join(after))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["[]", "True", "True"]

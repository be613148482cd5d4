from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from emulator_helpers import KEY, T2V, valid_body

from airflow_provider_venice.testing import pytest_plugin

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx

    from airflow_provider_venice.testing import VeniceEmulator


# The plugin's fixtures, as users get them with pytest_plugins in their root conftest.py.
venice_emulator = pytest_plugin.venice_emulator
venice_emulator_server = pytest_plugin.venice_emulator_server


@pytest.fixture
def client(venice_emulator: VeniceEmulator) -> Iterator[httpx.Client]:
    with venice_emulator.client(api_key=KEY) as http:
        yield http


@pytest.fixture
def queue(client: httpx.Client) -> Any:
    """Queue a valid job for ``model`` and return the queue response body."""

    def _queue(model: str = T2V, **changes: Any) -> dict[str, Any]:
        response = client.post("/video/queue", json=valid_body(model, **changes))
        assert response.status_code == 200, response.text
        return dict(response.json())

    return _queue

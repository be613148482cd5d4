"""Fixtures of the Venice page's tests: a metadata DB with Airflow's tables, and a client of the page.

The client replaces three dependencies of the app: the signed-in user (Airflow's ``get_user``), the
DAGs that user may read (the auth manager's answer), and the DB session (this SQLite).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.integration import s3_fixtures
from tests.unit.plugins.metadata import Seeder, empty, make_engine, page_app

aws_env = s3_fixtures.aws_env
moto_s3 = s3_fixtures.moto_s3
BUCKET = s3_fixtures.BUCKET
DAGS = {"dag_a", "dag_b"}


@pytest.fixture(scope="session")
def engine() -> sa.Engine:
    """One in-memory SQLite with every Airflow table, for the whole session."""
    return make_engine()


@pytest.fixture
def db(engine: sa.Engine) -> Seeder:
    """The metadata DB, emptied, and a way to add what the provider records."""
    empty(engine)
    return Seeder(engine)


@pytest.fixture
def page(db: Seeder) -> Iterator[Callable[..., TestClient]]:
    """Make a client of the page for a user who may read ``dags`` (``DAGS`` by default)."""
    clients: list[TestClient] = []

    def make(dags: set[str] | None = None, *, signed_in: bool = True) -> TestClient:
        app = page_app(db.sessions, DAGS if dags is None else dags, signed_in=signed_in)
        client = TestClient(app, follow_redirects=False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()

"""An Airflow metadata database for the Venice page's tests and benchmark: SQLite, tables from the models.

The page is nothing but queries of Airflow's metadata, so its tests need the real tables. They are
made with ``Base.metadata.create_all`` (a second or two, once per process) rather than ``airflow db
migrate`` (a minute of migrations); the models are the schema the queries are written against, and
the same on every Airflow version the matrix runs. Rows are added with the models' own tables.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from airflow_provider_venice.lifecycle.assets import DEFAULT_ASSET_ALIAS
from airflow_provider_venice.lifecycle.record import RECORD_KEY
from airflow_provider_venice.lifecycle.stores import variable_key
from airflow_provider_venice.version_compat import AIRFLOW_V_3_3_PLUS

TABLES = (
    "asset_alias_asset_event",
    "asset_event",
    "asset_alias",
    "asset",
    "variable",
    "xcom",
    "rendered_task_instance_fields",
    "task_instance",
    *(("task_state_store",) if AIRFLOW_V_3_3_PLUS else ()),
)


def make_engine(url: str = "sqlite://") -> sa.Engine:
    """Create an engine on ``url`` (in memory by default, one connection shared) with every Airflow table."""
    from airflow.models import import_all_models
    from airflow.models.base import Base

    import_all_models()
    options: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if url == "sqlite://":
        options["poolclass"] = StaticPool
    engine = sa.create_engine(url, **options)
    Base.metadata.create_all(engine)
    return engine


def empty(engine: sa.Engine) -> None:
    """Delete the rows of every table the page reads."""
    with engine.begin() as connection:
        for name in TABLES:
            connection.execute(sa.text(f"DELETE FROM {name}"))


class Seeder:
    """Adds what the provider records when it pays for and delivers videos."""

    def __init__(self, engine: sa.Engine) -> None:
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self._alias_id: int | None = None
        self._asset = 0

    def _alias(self, session: Session) -> int:
        from airflow.models.asset import AssetAliasModel

        if self._alias_id is None:
            alias = AssetAliasModel(name=DEFAULT_ASSET_ALIAS)
            session.add(alias)
            session.flush()
            self._alias_id = alias.id
        return self._alias_id

    def videos(self, rows: list[dict[str, Any]]) -> list[int]:
        """Add one asset event per row (through the alias); return their ids.

        A row names ``dag_id``, ``run_id``, ``task_id``, ``map_index``, ``at`` (a datetime) and any
        extra keys (``s3_uri``, ``poster_uri``, ``model``, ``queue_id``, ``quote_usd``, ...).
        """
        from airflow.models.asset import AssetEvent, AssetModel, asset_alias_asset_event_association_table

        with self.sessions.begin() as session:
            alias_id = self._alias(session)
            self._asset += 1
            asset = AssetModel(name=f"s3://bucket/{self._asset}.mp4", uri=f"s3://bucket/{self._asset}.mp4")
            session.add(asset)
            session.flush()
            events = []
            for row in rows:
                extra = {
                    k: v
                    for k, v in row.items()
                    if k not in ("dag_id", "run_id", "task_id", "map_index", "at")
                }
                event = AssetEvent(
                    asset_id=asset.id,
                    extra=extra,
                    source_dag_id=row["dag_id"],
                    source_run_id=row.get("run_id", "run_1"),
                    source_task_id=row.get("task_id", "generate"),
                    source_map_index=row.get("map_index", -1),
                    timestamp=row.get("at", datetime.now(UTC)),
                )
                events.append(event)
            session.add_all(events)
            session.flush()
            link = asset_alias_asset_event_association_table
            session.execute(sa.insert(link), [{"alias_id": alias_id, "event_id": e.id} for e in events])
            return [e.id for e in events]

    def record(self, task: dict[str, Any], record: dict[str, Any], *, store: str = "variable") -> None:
        """Add a job record the way the provider keeps it: in a Variable, or in the task state store (3.3)."""
        from airflow.models.variable import Variable

        task = {"map_index": -1, **task}
        with self.sessions.begin() as session:
            if store == "variable":
                envelope = {"try_number": 1, "task": task, "updated_at": time.time(), "record": record}
                session.add(Variable(key=variable_key(task), val=json.dumps(envelope)))
            else:
                from airflow.models.task_state_store import TaskStateStoreModel

                session.execute(
                    sa.insert(TaskStateStoreModel.__table__).values(
                        dag_run_id=1,
                        key=RECORD_KEY,
                        value=json.dumps(record),
                        updated_at=datetime.now(UTC),
                        **task,
                    )
                )

    def return_value(self, task: dict[str, Any], value: dict[str, Any]) -> None:
        """Add a task instance's ``return_value`` XCom."""
        from airflow.models.xcom import XComModel

        with self.sessions.begin() as session:
            session.execute(
                sa.insert(XComModel.__table__).values(
                    dag_run_id=1,
                    key="return_value",
                    value=XComModel.serialize_value(value),
                    timestamp=datetime.now(UTC),
                    **{"map_index": -1, **task},
                )
            )

    def rendered(self, task: dict[str, Any], fields: dict[str, Any]) -> None:
        """Add a task instance's rendered template fields."""
        from airflow.models.renderedtifields import RenderedTaskInstanceFields

        with self.sessions.begin() as session:
            session.execute(
                sa.insert(RenderedTaskInstanceFields.__table__).values(
                    rendered_fields=fields, **{"map_index": -1, **task}
                )
            )

    def task_instance(self, task: dict[str, Any], state: str, operator: str | None = None) -> None:
        """Add a task instance in ``state`` (of the ``operator`` class, when given)."""
        from airflow.models.taskinstance import TaskInstance

        with self.sessions.begin() as session:
            session.execute(
                sa.insert(TaskInstance.__table__).values(
                    pool="default_pool", state=state, operator=operator, **{"map_index": -1, **task}
                )
            )

    def dag_run(self, dag_id: str, run_id: str, state: str) -> None:
        """Add a DAG run in ``state``."""
        from airflow.models.dagrun import DagRun

        with self.sessions.begin() as session:
            session.execute(
                sa.insert(DagRun.__table__).values(
                    dag_id=dag_id,
                    run_id=run_id,
                    state=state,
                    run_type="manual",
                    clear_number=0,
                    data_interval_end=None,
                    logical_date=None,
                    run_after=datetime.now(UTC),
                )
            )


def page_app(sessions: sessionmaker[Session], dags: set[str] | None, *, signed_in: bool = True) -> Any:
    """Build the page's app on ``sessions``, signed in as a viewer who may read ``dags`` (unless not)."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.common.db.common import _get_session
    from airflow.api_fastapi.core_api.security import get_user

    from airflow_provider_venice.plugins.access import readable_dag_ids
    from airflow_provider_venice.plugins.app import create_app

    def session() -> Iterator[Session]:
        with sessions() as opened:
            yield opened

    app = create_app()
    app.dependency_overrides[_get_session] = session
    if signed_in:
        app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="viewer", role="viewer")
        app.dependency_overrides[readable_dag_ids] = lambda: set(dags or ())
    return app


def job_record(
    stage: str, queue_id: str | None, *, quote_usd: float = 1.0, model: str = "wan", at: float | None = None
) -> dict[str, Any]:
    """Return a job record at ``stage`` (with a job when ``queue_id`` is given)."""
    moment = time.time() if at is None else at
    record: dict[str, Any] = {"stage": stage, "stage_at": moment, "destination": "s3://bucket/key.mp4"}
    if queue_id is not None:
        record["job"] = {"model": model, "queue_id": queue_id, "download_url": None, "quote_usd": quote_usd}
        record["queued_at"] = moment
    return record

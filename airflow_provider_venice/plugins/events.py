"""Delivered videos, read from the asset events each delivery adds through the ``venice-videos`` alias.

Every query starts from the alias's rows of ``asset_alias_asset_event`` (its primary key is
``(alias_id, event_id)``), so it walks that index in event id order and never the whole event table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_provider_venice.lifecycle.assets import DEFAULT_ASSET_ALIAS

if TYPE_CHECKING:
    from collections.abc import Collection

    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Video:
    """One delivered video, as its asset event tells it."""

    event_id: int
    dag_id: str | None
    run_id: str | None
    task_id: str | None
    map_index: int
    delivered_at: datetime
    s3_uri: str | None
    poster_uri: str | None
    model: str | None
    queue_id: str | None
    quote_usd: float | None
    duration_s: float | None
    width: int | None
    height: int | None


@dataclass(frozen=True)
class VideoFilter:
    """What the videos list shows: readable DAGs, and optionally one DAG, one model, a date range."""

    dag_ids: Collection[str]
    dag_id: str | None = None
    model: str | None = None
    since: date | None = None
    until: date | None = None


@dataclass(frozen=True)
class SpendGroup:
    """Delivered spend of one DAG on one model on one day (UTC)."""

    dag_id: str
    model: str
    day: str
    usd: float
    videos: int


def _extra(key: str) -> Any:
    return sa.type_coerce(_models().AssetEvent.extra, sa.JSON)[key]


def _models() -> Any:
    from airflow.models import asset

    return asset


def _link() -> Any:
    return _models().asset_alias_asset_event_association_table


def _newest_first(query: Any) -> Any:
    """Order by the alias link's event id: the walk of its primary key backwards, no sort."""
    return query.order_by(_link().c.event_id.desc())


def _alias_events(columns: list[Any]) -> Any:
    models = _models()
    link = _link()
    return (
        sa.select(*columns)
        .select_from(models.AssetEvent)
        .join(link, link.c.event_id == models.AssetEvent.id)
        .join(models.AssetAliasModel, models.AssetAliasModel.id == link.c.alias_id)
        .where(models.AssetAliasModel.name == DEFAULT_ASSET_ALIAS)
    )


def _video_columns() -> list[Any]:
    event = _models().AssetEvent
    return [
        event.id,
        event.source_dag_id,
        event.source_run_id,
        event.source_task_id,
        event.source_map_index,
        event.timestamp,
        _extra("s3_uri").as_string(),
        _extra("poster_uri").as_string(),
        _extra("model").as_string(),
        _extra("queue_id").as_string(),
        _extra("quote_usd").as_float(),
        _extra("duration_s").as_float(),
        _extra("width").as_integer(),
        _extra("height").as_integer(),
    ]


def _video(row: Any) -> Video:
    event_id, dag_id, run_id, task_id, map_index, *rest = row
    return Video(event_id, dag_id, run_id, task_id, -1 if map_index is None else map_index, *rest)


def _filtered(query: Any, where: VideoFilter) -> Any:
    event = _models().AssetEvent
    query = query.where(event.source_dag_id.in_(sorted(where.dag_ids)))
    if where.dag_id:
        query = query.where(event.source_dag_id == where.dag_id)
    if where.model:
        query = query.where(_extra("model").as_string() == where.model)
    if where.since:
        query = query.where(event.timestamp >= _midnight(where.since))
    if where.until:
        query = query.where(event.timestamp < _midnight(where.until + timedelta(days=1)))
    return query


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def recent_videos(session: Session, where: VideoFilter, *, before: int | None, limit: int) -> list[Video]:
    """Return up to ``limit`` videos, newest first, whose event id is below ``before`` (keyset paging)."""
    query = _filtered(_alias_events(_video_columns()), where)
    if before is not None:
        query = query.where(_link().c.event_id < before)
    rows = session.execute(_newest_first(query).limit(limit))
    return [_video(row) for row in rows]


def video_by_id(session: Session, event_id: int, dag_ids: Collection[str]) -> Video | None:
    """Return the video of one asset event, when the user may read its DAG."""
    event = _models().AssetEvent
    query = _alias_events(_video_columns()).where(event.id == event_id)
    row = session.execute(query.where(event.source_dag_id.in_(sorted(dag_ids)))).first()
    return _video(row) if row else None


def video_of_task(session: Session, dag_id: str, run_id: str, task_id: str, map_index: int) -> Video | None:
    """Return the newest video a task instance delivered, or None."""
    event = _models().AssetEvent
    query = _alias_events(_video_columns()).where(
        event.source_dag_id == dag_id,
        event.source_run_id == run_id,
        event.source_task_id == task_id,
        event.source_map_index == map_index,
    )
    row = session.execute(_newest_first(query).limit(1)).first()
    return _video(row) if row else None


def video_by_queue_id(session: Session, queue_id: str, dag_ids: Collection[str]) -> Video | None:
    """Return the newest video delivered for a Venice job, when the user may read its DAG."""
    event = _models().AssetEvent
    query = _alias_events(_video_columns()).where(
        _extra("queue_id").as_string() == queue_id, event.source_dag_id.in_(sorted(dag_ids))
    )
    row = session.execute(_newest_first(query).limit(1)).first()
    return _video(row) if row else None


def delivered_spend(session: Session, where: VideoFilter) -> list[SpendGroup]:
    """Sum the quotes of delivered videos per DAG, model and day (UTC).

    A job announced twice (a task that delivered, then ran again) counts once a day: the rows are made
    distinct on the job's queue_id first.
    """
    event = _models().AssetEvent
    day = sa.func.date(event.timestamp)
    model = _extra("model").as_string()
    jobs = (
        _filtered(
            _alias_events(
                [
                    event.source_dag_id.label("dag_id"),
                    model.label("model"),
                    day.label("day"),
                    _extra("queue_id").as_string().label("queue_id"),
                    _extra("quote_usd").as_float().label("usd"),
                ]
            ),
            where,
        )
        .distinct()
        .subquery()
    )
    query = sa.select(
        jobs.c.dag_id, jobs.c.model, jobs.c.day, sa.func.sum(jobs.c.usd), sa.func.count()
    ).group_by(jobs.c.dag_id, jobs.c.model, jobs.c.day)
    return [
        SpendGroup(str(dag), str(name or "unknown"), str(when), float(usd or 0.0), int(count))
        for dag, name, when, usd, count in session.execute(query)
    ]

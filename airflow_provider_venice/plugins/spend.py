"""Spend over a range: delivered videos' quotes, and separately jobs paid but not delivered."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from airflow_provider_venice.plugins.records import NOT_DELIVERED

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_venice.plugins.events import SpendGroup
    from airflow_provider_venice.plugins.records import JobEntry

Row = tuple[str, float, int, float, int]
"""A table row: name, delivered USD, videos, paid-not-delivered USD, jobs."""


@dataclass(frozen=True)
class SpendReport:
    """Totals over a range, and the same per day (every day of the range), per DAG and per model."""

    since: date
    until: date
    delivered_usd: float
    videos: int
    at_risk_usd: float
    at_risk_jobs: int
    by_day: list[Row]
    by_dag: list[Row]
    by_model: list[Row]


def _day(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).date().isoformat()


def paid_not_delivered(records: Iterable[JobEntry], since: date, until: date) -> list[JobEntry]:
    """Return the records of jobs queued (paid) in the range that have not reached S3."""
    first, last = since.isoformat(), until.isoformat()
    return [
        item
        for item in records
        if item.paid
        and item.stage in NOT_DELIVERED
        and item.queued_at
        and first <= _day(item.queued_at) <= last
    ]


class _Tally:
    """A running sum of USD and a count."""

    __slots__ = ("count", "usd")

    def __init__(self) -> None:
        self.usd = 0.0
        self.count = 0

    def add(self, usd: float, count: int = 1) -> None:
        self.usd += usd
        self.count += count


Tallies = dict[str, dict[str, _Tally]]


def _tallies() -> Tallies:
    return {"day": defaultdict(_Tally), "dag": defaultdict(_Tally), "model": defaultdict(_Tally)}


def _rows(delivered: dict[str, _Tally], risk: dict[str, _Tally], names: Iterable[str]) -> list[Row]:
    empty = _Tally()
    rows = []
    for name in names:
        done, open_ = delivered.get(name, empty), risk.get(name, empty)
        rows.append((name, done.usd, done.count, open_.usd, open_.count))
    return rows


def spend_report(
    groups: list[SpendGroup], records: Iterable[JobEntry], since: date, until: date
) -> SpendReport:
    """Add up the delivered groups and the unfinished paid jobs per day, DAG and model."""
    delivered, risk = _tallies(), _tallies()
    for group in groups:
        for axis, name in (("day", group.day), ("dag", group.dag_id), ("model", group.model)):
            delivered[axis][name].add(group.usd, group.videos)
    for item in paid_not_delivered(records, since, until):
        usd = item.quote_usd or 0.0
        day = _day(item.queued_at or 0.0)
        for axis, name in (("day", day), ("dag", item.dag_id), ("model", item.model or "unknown")):
            risk[axis][name].add(usd)
    days = [(since + timedelta(days=n)).isoformat() for n in range((until - since).days + 1)]
    return SpendReport(
        since=since,
        until=until,
        delivered_usd=sum(group.usd for group in groups),
        videos=sum(group.videos for group in groups),
        at_risk_usd=sum(tally.usd for tally in risk["day"].values()),
        at_risk_jobs=sum(tally.count for tally in risk["day"].values()),
        by_day=_rows(delivered["day"], risk["day"], days),
        by_dag=_rows(delivered["dag"], risk["dag"], sorted(set(delivered["dag"]) | set(risk["dag"]))),
        by_model=_rows(
            delivered["model"], risk["model"], sorted(set(delivered["model"]) | set(risk["model"]))
        ),
    )

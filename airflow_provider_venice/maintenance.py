"""``venice-job-records``: list and purge the job records kept in Airflow Variables (Airflow 3.1, 3.2).

On Airflow 3.3 the job records live in the task state store, which Airflow cleans up itself after its
retention period (``[state_store] default_retention_days``, 30 days by default). On 3.1 and 3.2 they are
Variables named ``venice_job_record_*`` (see :mod:`airflow_provider_venice.lifecycle.stores`), kept after
the job is completed so that a cleared task does not pay again. This command is their clean-up, run
where the ``airflow`` command runs (it needs the metadata database), for example daily:

``venice-job-records purge --older-than-days 30`` removes records of completed jobs last written more
than 30 days ago; ``--dry-run`` only lists them; ``venice-job-records list`` shows every record. A
record of a job that was paid for and not completed is never purged: it is money at risk, and the task
that resumes it needs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from airflow_provider_venice.job import Stage
from airflow_provider_venice.lifecycle.stores import KEY_PREFIX

DAY_S = 86400.0


@dataclass(frozen=True)
class RecordVariable:
    """One job record as stored: its Variable's key, the task it belongs to, its stage and age."""

    key: str
    task: dict[str, Any]
    stage: str | None
    queue_id: str | None
    updated_at: float | None

    @classmethod
    def read(cls, key: str, text: str | None) -> RecordVariable:
        """Read a record's Variable; what this provider did not write reads with no stage and no age."""
        try:
            envelope = json.loads(text or "")
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("record"), dict):
            return cls(key, {}, None, None, None)
        record = envelope["record"]
        job = record.get("job") if isinstance(record.get("job"), dict) else {}
        updated_at = envelope.get("updated_at")
        task = envelope.get("task")
        return cls(
            key,
            task if isinstance(task, dict) else {},
            record.get("stage") if isinstance(record.get("stage"), str) else None,
            job.get("queue_id") or None,
            float(updated_at) if isinstance(updated_at, int | float) else None,
        )

    def purgeable(self, now: float, older_than_days: float) -> bool:
        """Whether the record holds a completed job and was last written more than the given days ago."""
        return (
            self.stage == Stage.COMPLETED.value
            and self.updated_at is not None
            and now - self.updated_at > older_than_days * DAY_S
        )

    def describe(self, now: float) -> str:
        """One line: key, task, stage, queue_id and age."""
        age = f"{(now - self.updated_at) / DAY_S:.1f} days" if self.updated_at is not None else "unknown age"
        where = "{dag_id}/{run_id}/{task_id}[{map_index}]".format(**self.task) if self.task else "not ours"
        return f"{self.key}  {where}  {self.stage or '-'}  {self.queue_id or '-'}  {age}"


def main(argv: list[str] | None = None) -> int:
    """Run ``venice-job-records list`` or ``venice-job-records purge``."""
    parser = argparse.ArgumentParser(prog="venice-job-records", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="show every Venice job record kept in a Variable")
    purge = commands.add_parser("purge", help="remove records of completed jobs older than a retention")
    purge.add_argument("--older-than-days", type=float, default=30.0, help="retention (default 30 days)")
    purge.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    args = parser.parse_args(argv)
    if args.command == "purge" and args.older_than_days < 0:
        parser.error("--older-than-days: expected a number of days, 0 or more")

    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    now = time.time()
    with create_session() as session:
        found = session.scalars(select(Variable).where(Variable.key.startswith(KEY_PREFIX))).all()
        records = [(variable, RecordVariable.read(variable.key, variable.val)) for variable in found]
        if args.command == "list":
            for _, record in records:
                print(record.describe(now))
            print(f"{len(records)} Venice job records")
            return 0
        doomed = [pair for pair in records if pair[1].purgeable(now, args.older_than_days)]
        for variable, record in doomed:
            print(("would remove " if args.dry_run else "removing ") + record.describe(now))
            if not args.dry_run:
                session.delete(variable)
    print(
        f"{'would remove' if args.dry_run else 'removed'} {len(doomed)} of {len(records)} Venice job "
        f"records (completed, older than {args.older_than_days:g} days)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The first words of each video's prompt, from the task's rendered template fields.

Airflow keeps every task instance's rendered ``prompt`` in ``rendered_task_instance_fields`` (for
its last runs, ``[core] max_num_rendered_ti_fields_per_task``), keyed by the task instance: one
primary-key lookup per page of videos.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

TaskKey = tuple[str, str, str, int]
EXCERPT_CHARS = 80


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """Return the first words of ``text``, cut at a word boundary, with an ellipsis when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut + "…"


def prompt_excerpts(session: Session, tasks: Iterable[TaskKey]) -> dict[TaskKey, str]:
    """Return the prompt excerpt of each task instance that rendered a ``prompt``."""
    keys = sorted(set(tasks))
    if not keys:
        return {}
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rendered

    query = sa.select(
        Rendered.dag_id, Rendered.run_id, Rendered.task_id, Rendered.map_index, Rendered.rendered_fields
    ).where(sa.tuple_(Rendered.dag_id, Rendered.run_id, Rendered.task_id, Rendered.map_index).in_(keys))
    found = {}
    for dag_id, run_id, task_id, map_index, fields in session.execute(query):
        prompt = fields.get("prompt") if isinstance(fields, dict) else None
        if isinstance(prompt, str) and prompt:
            found[(dag_id, run_id, task_id, map_index)] = excerpt(prompt)
    return found

"""The Venice page's HTML: Jinja templates (autoescaped) rendered with relative links only.

The page runs in the Airflow UI's sandboxed iframe (no pop-ups, no top navigation) and behind any
``[api] base_url``, so every link and form targets the frame with a URL relative to the document.
``root`` leads from a document back to ``venice/`` (``""`` one level down, ``"../"`` two levels).
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_venice.plugins.records import JobEntry, age_s

if TYPE_CHECKING:
    import jinja2

    from airflow_provider_venice.plugins.events import Video

ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="currentColor" '
    'stroke-width="2"><rect x="2" y="5" width="14" height="14" rx="2"/><path d="M16 10l6-4v12l-6-4z"/></svg>'
)


def usd(value: float | None) -> str:
    """Format an amount in US dollars."""
    return "—" if value is None else f"${value:,.2f}"


def when(value: datetime | float | None) -> str:
    """Format a moment (a datetime or epoch seconds) in UTC."""
    if value is None:
        return "—"
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def age(job: JobEntry) -> str:
    """Say how long a job has been at its stage."""
    seconds = age_s(job, time.time())
    if seconds is None:
        return "—"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours // 24}d {hours % 24}h" if hours >= 24 else f"{hours}h {rest // 60}m"


def length_text(video: Video) -> str:
    """Say a video's duration and resolution."""
    parts = []
    if video.duration_s is not None:
        parts.append(f"{video.duration_s:g} s")
    if video.width and video.height:
        parts.append(f"{video.width} x {video.height}")
    return ", ".join(parts) or "—"


def task_href(root: str, dag_id: str | None, run_id: str | None, task_id: str | None, map_index: int) -> str:
    """Link a task instance in the Airflow UI (a sibling of ``venice/``), relative to the document."""
    dag, run, task = (quote(part or "", safe="") for part in (dag_id, run_id, task_id))
    mapped = f"/mapped/{map_index}" if map_index >= 0 else ""
    return f"{root}../dags/{dag}/runs/{run}/tasks/{task}{mapped}"


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        usd=usd, when=when, age=age, length_text=length_text, urlpart=lambda v: quote(v, safe="")
    )
    env.globals["task_href"] = task_href
    return env


def render(template: str, title: str, *, root: str = "", active: str = "", **context: Any) -> str:
    """Render one of the page's templates."""
    return _environment().get_template(template).render(title=title, root=root, active=active, **context)

"""The Venice page's FastAPI app: videos, spend, money at risk, one job, and the extra links' targets.

Every route needs a signed-in user (Airflow's ``get_user``: no credentials, 401) and shows only the
DAGs that user may read. Routes are sync: they run in the threadpool with one metadata DB session.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from urllib.parse import quote, urlencode

from airflow.api_fastapi.common.db.common import SessionDep  # noqa: TC002 (FastAPI reads it at run time)
from airflow.api_fastapi.core_api.security import GetUserDep  # noqa: TC002 (FastAPI reads it at run time)
from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from airflow_provider_venice.plugins import events, media, records
from airflow_provider_venice.plugins.access import ReadableDags, aws_conn_id
from airflow_provider_venice.plugins.chart import spend_chart
from airflow_provider_venice.plugins.lookup import task_outcome
from airflow_provider_venice.plugins.pages import ICON, render
from airflow_provider_venice.plugins.prompts import prompt_excerpts
from airflow_provider_venice.plugins.risk import NEXT_STEP, at_risk
from airflow_provider_venice.plugins.spend import spend_report

PAGE_SIZE = 50
MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30

Text = Annotated[str, Query()]
router = APIRouter()


def _date(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{name}: expected a date like 2026-01-31, got {value!r}") from None


def _readable(dags: set[str], dag_id: str) -> None:
    if dag_id not in dags:
        raise HTTPException(403, f"you may not read DAG {dag_id!r}")


@router.get("/", response_class=HTMLResponse)
def videos(
    session: SessionDep,
    dags: ReadableDags,
    dag_id: Text = "",
    model: Text = "",
    since: Text = "",
    until: Text = "",
    before: Annotated[int | None, Query()] = None,
) -> str:
    """List the most recent deliveries (keyset pages of PAGE_SIZE, newest first)."""
    where = events.VideoFilter(
        dags, dag_id or None, model or None, _date(since, "since"), _date(until, "until")
    )
    found = events.recent_videos(session, where, before=before, limit=PAGE_SIZE + 1)
    shown = found[:PAGE_SIZE]
    keys = {v.event_id: (v.dag_id or "", v.run_id or "", v.task_id or "", v.map_index) for v in shown}
    excerpts = prompt_excerpts(session, keys.values())
    form = {"dag_id": dag_id, "model": model, "since": since, "until": until}
    given = {name: value for name, value in form.items() if value}
    older = urlencode({**given, "before": shown[-1].event_id}) if len(found) > PAGE_SIZE else ""
    return render(
        "videos.html",
        "Videos",
        active="videos",
        videos=shown,
        prompts={event_id: excerpts.get(key) for event_id, key in keys.items()},
        form=form,
        dag_ids=sorted(dags),
        paged=before is not None,
        newest=urlencode(given),
        older=older,
    )


@router.get("/spend", response_class=HTMLResponse)
def spend(
    session: SessionDep,
    dags: ReadableDags,
    dag_id: Text = "",
    model: Text = "",
    since: Text = "",
    until: Text = "",
) -> str:
    """Show spend per day, DAG and model over a range (the last 30 days by default)."""
    last = _date(until, "until") or datetime.now(UTC).date()
    first = _date(since, "since") or last - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if not timedelta(0) <= last - first < timedelta(days=MAX_RANGE_DAYS):
        raise HTTPException(400, f"the range must run forwards and span at most {MAX_RANGE_DAYS} days")
    where = events.VideoFilter(dags, dag_id or None, model or None, first, last)
    jobs = [
        job
        for job in records.all_records(session, dags).items
        if (not dag_id or job.dag_id == dag_id) and (not model or job.model == model)
    ]
    risky = [item.job for item in at_risk(session, jobs)]
    report = spend_report(events.delivered_spend(session, where), risky, first, last)
    chart = spend_chart([(day, delivered, risk) for day, delivered, _, risk, _ in report.by_day])
    form = {"dag_id": dag_id, "model": model, "since": first.isoformat(), "until": last.isoformat()}
    return render(
        "spend.html", "Spend", active="spend", report=report, chart=chart, form=form, dag_ids=sorted(dags)
    )


@router.get("/at-risk", response_class=HTMLResponse)
def money_at_risk(session: SessionDep, dags: ReadableDags) -> str:
    """List every job paid (or maybe paid) and not delivered, or delivered and not released."""
    scan = records.all_records(session, dags)
    return render(
        "at_risk.html",
        "Money at risk",
        active="at-risk",
        items=at_risk(session, scan.items),
        capped=scan.capped,
    )


@router.get("/jobs/{queue_id}", response_class=HTMLResponse)
def job(queue_id: str, session: SessionDep, dags: ReadableDags) -> str:
    """Show one Venice job: stage, quote, model, task, and its video once delivered."""
    found = [r for r in records.all_records(session, dags).items if r.queue_id == queue_id]
    # the task that took the job furthest (a queue task's record stays at "queued" once it handed it on)
    record = max(found, key=lambda r: records.stage_rank(r.stage), default=None)
    video = events.video_by_queue_id(session, queue_id, dags)
    if record is None and video is None:
        raise HTTPException(404, f"no Venice job {queue_id!r} in the DAGs you may read")
    return render(
        "job.html",
        f"Venice job {queue_id}",
        root="../",
        queue_id=queue_id,
        record=record,
        video=video,
        stage=record.stage if record else "delivered",
        model=(record and record.model) or (video and video.model),
        quote_usd=(record and record.quote_usd) or (video and video.quote_usd),
        next_step=NEXT_STEP.get(record.stage) if record and not video else None,
    )


@router.get("/videos/{event_id}/poster")
def poster(event_id: int, session: SessionDep, dags: ReadableDags) -> Response:
    """Serve a video's poster frame from S3 (the browser never sees bucket credentials)."""
    video = events.video_by_id(session, event_id, dags)
    if video is None or not video.poster_uri:
        raise HTTPException(404, "no poster frame for this video")
    try:
        image = media.read_poster(aws_conn_id(), video.poster_uri, video.s3_uri)
    except media.NotOurs as exc:
        raise HTTPException(404, str(exc)) from None
    headers = {
        "Cache-Control": "private, max-age=3600",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
    }
    return Response(image.body, media_type=image.content_type, headers=headers)


@router.get("/videos/{event_id}/play")
def play(event_id: int, session: SessionDep, dags: ReadableDags) -> RedirectResponse:
    """Redirect to a presigned URL, made now, that plays the video inline."""
    video = events.video_by_id(session, event_id, dags)
    if video is None or not video.s3_uri:
        raise HTTPException(404, "no such video")
    return _play(video.s3_uri, video.queue_id)


def _play(s3_uri: str, queue_id: str | None) -> RedirectResponse:
    try:
        return RedirectResponse(media.play_url(aws_conn_id(), s3_uri, queue_id), status_code=307)
    except media.NotOurs as exc:
        raise HTTPException(404, str(exc)) from None


def _not_delivered(task: dict[str, object], record: records.JobEntry | None) -> HTMLResponse:
    page = render("not_delivered.html", "Not delivered yet", root="../", task=task, record=record)
    return HTMLResponse(page, status_code=404)


@router.get("/links/video", response_model=None)
def video_link(
    session: SessionDep, dags: ReadableDags, dag_id: Text, run_id: Text, task_id: Text, map_index: int = -1
) -> Response:
    """Serve the "Video" extra link: play the task instance's video, or say how far its job got."""
    _readable(dags, dag_id)
    outcome = task_outcome(session, dag_id, run_id, task_id, map_index)
    if outcome.s3_uri:
        return _play(outcome.s3_uri, outcome.queue_id)
    task = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}
    return _not_delivered(task, outcome.record)


@router.get("/links/job", response_model=None)
def job_link(
    session: SessionDep, dags: ReadableDags, dag_id: Text, run_id: Text, task_id: Text, map_index: int = -1
) -> Response:
    """Serve the "Venice job" extra link: redirect to the page of the task instance's job."""
    _readable(dags, dag_id)
    outcome = task_outcome(session, dag_id, run_id, task_id, map_index)
    if outcome.queue_id:
        return RedirectResponse(f"../jobs/{quote(outcome.queue_id, safe='')}", status_code=307)
    task = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}
    return _not_delivered(task, outcome.record)


@router.get("/static/icon.svg")
def icon(user: GetUserDep) -> Response:
    """Serve the navigation entry's icon."""
    return Response(ICON, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=86400"})


def create_app() -> FastAPI:
    """Build the app the plugin mounts at ``/venice``."""
    app = FastAPI(title="Venice", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(router)
    return app

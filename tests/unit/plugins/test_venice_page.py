"""The Venice page as a browser user gets it: auth, videos, spend, money at risk, links, posters, escaping."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from airflow_provider_venice.version_compat import AIRFLOW_V_3_3_PLUS
from tests.unit.plugins.conftest import BUCKET
from tests.unit.plugins.metadata import job_record

NOW = datetime.now(UTC)
TODAY = NOW.date()


def video(dag_id: str = "dag_a", queue_id: str = "q", **extra: Any) -> dict[str, Any]:
    row = {
        "dag_id": dag_id,
        "run_id": f"run_{queue_id}",
        "task_id": "generate",
        "s3_uri": f"s3://{BUCKET}/{queue_id}.mp4",
        "poster_uri": None,
        "model": "wan-2-7-text-to-video",
        "queue_id": queue_id,
        "quote_usd": 1.0,
        "duration_s": 5.0,
        "width": 1280,
        "height": 720,
        "at": NOW,
    }
    return {**row, **extra}


def task(
    dag_id: str = "dag_a", run_id: str = "run_1", task_id: str = "generate", map_index: int = -1
) -> dict[str, Any]:
    return {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}


def table(html: str, table_id: str) -> str:
    found = re.search(rf'<table id="{table_id}".*?</table>', html, re.DOTALL)
    assert found, table_id
    return found.group(0)


def urls(html: str) -> list[str]:
    return re.findall(r'(?:href|src|action)="([^"]*)"', html)


# --- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "",
        "spend",
        "at-risk",
        "jobs/q",
        "videos/1/poster",
        "videos/1/play",
        "static/icon.svg",
        "links/video?dag_id=d&run_id=r&task_id=t",
        "links/job?dag_id=d&run_id=r&task_id=t",
    ],
)
def test_every_route_refuses_a_request_without_credentials(page, path):
    response = page(signed_in=False).get("/" + path)
    assert response.status_code == 401


def test_the_plugin_mounts_the_app_and_adds_a_relative_nav_entry():
    from fastapi.testclient import TestClient

    from airflow_provider_venice.plugins.venice import VenicePlugin

    (mounted,) = VenicePlugin.fastapi_apps
    assert mounted["url_prefix"] == "/venice"
    (view,) = VenicePlugin.external_views
    assert view["href"] == "venice/"
    assert view["destination"] == "nav"
    assert not view["icon"].startswith("/")
    with TestClient(mounted["app"]) as client:
        assert client.get("/").status_code == 401


# --- videos -------------------------------------------------------------------------------------


def test_videos_list_newest_first_with_task_model_prompt_size_cost_and_uri(page, db):
    db.videos([video(queue_id="old", at=NOW - timedelta(hours=1)), video(queue_id="new", quote_usd=2.5)])
    db.rendered(task(run_id="run_new"), {"prompt": "a red fox runs through fresh snow " * 5})
    html = page().get("/").text
    rows = re.findall(r'data-queue-id="(\w+)"', html)
    assert rows == ["new", "old"]
    assert "a red fox runs through fresh snow a red fox" in html
    assert "…" in html
    assert "$2.50" in html
    assert "5 s, 1280 x 720" in html
    assert f"s3://{BUCKET}/new.mp4" in html
    assert 'href="../dags/dag_a/runs/run_new/tasks/generate"' in html


def test_a_user_who_may_read_one_dag_sees_only_its_videos_and_options(page, db):
    db.videos([video("dag_a", "qa"), video("dag_b", "qb"), video("dag_secret", "qs")])
    html = page({"dag_b"}).get("/").text
    assert re.findall(r'data-queue-id="(\w+)"', html) == ["qb"]
    assert "dag_a" not in html
    assert "dag_secret" not in html


def test_videos_filter_by_dag_model_and_date(page, db):
    yesterday = NOW - timedelta(days=1)
    db.videos([video("dag_a", "a2", model="kling", at=yesterday), video("dag_a", "a1"), video("dag_b", "b1")])
    client = page()

    def shown(**params: str) -> list[str]:
        return re.findall(r'data-queue-id="(\w+)"', client.get("/", params=params).text)

    assert shown(dag_id="dag_a") == ["a1", "a2"]
    assert shown(model="kling") == ["a2"]
    day = (TODAY - timedelta(days=1)).isoformat()
    assert shown(since=day, until=day) == ["a2"]
    assert shown(since=TODAY.isoformat()) == ["b1", "a1"]
    assert client.get("/", params={"since": "yesterday"}).status_code == 400


def test_videos_page_by_keyset_and_link_to_the_next_page(page, db):
    from airflow_provider_venice.plugins.app import PAGE_SIZE

    db.videos([video(queue_id=f"q{n:03d}") for n in range(PAGE_SIZE + 5)])
    client = page()
    first = client.get("/", params={"dag_id": "dag_a"}).text
    assert len(re.findall(r'class="venice-video"', first)) == PAGE_SIZE
    (older,) = re.findall(r'id="venice-next" data-testid="venice-next" href="\?([^"]+)"', first)
    query = parse_qs(older.replace("&amp;", "&"))
    assert query["dag_id"] == ["dag_a"]
    second = client.get("/", params={k: v[0] for k, v in query.items()}).text
    assert re.findall(r'data-queue-id="(\w+)"', second) == [f"q{n:03d}" for n in range(4, -1, -1)]
    assert 'id="venice-next"' not in second
    assert 'id="venice-newest"' in second


def test_prompts_and_ids_are_escaped(page, db):
    evil = '<script>alert("x")</script>'
    db.videos([video(queue_id="q1", model=evil, s3_uri=f's3://{BUCKET}/"><img src=x>.mp4')])
    db.rendered(task(run_id="run_q1"), {"prompt": evil})
    html = page().get("/").text
    assert "<script>" not in html
    assert "<img src=x>" not in html
    assert "&lt;script&gt;" in html


def test_every_url_on_every_page_is_relative(page, db):
    db.videos([video(queue_id="q1", poster_uri=f"s3://{BUCKET}/q1.jpg")])
    db.record(task(run_id="run_q2"), job_record("queued", "q2"))
    client = page()
    for path in ("/", "/spend", "/at-risk", "/jobs/q1", "/jobs/q2"):
        found = urls(client.get(path).text)
        assert found, path
        assert [u for u in found if u.startswith(("/", "http:", "https:", "//"))] == [], path


# --- posters and playing ------------------------------------------------------------------------


def test_poster_frames_are_served_through_the_app(page, db, moto_s3):
    moto_s3.put_object(Bucket=BUCKET, Key="q1.jpg", Body=b"\xff\xd8jpeg", ContentType="image/jpeg")
    (event_id,) = db.videos([video(queue_id="q1", poster_uri=f"s3://{BUCKET}/q1.jpg")])
    client = page()
    html = client.get("/").text
    assert f'src="videos/{event_id}/poster"' in html
    response = client.get(f"/videos/{event_id}/poster")
    assert response.status_code == 200
    assert response.content == b"\xff\xd8jpeg"
    assert response.headers["content-type"] == "image/jpeg"


def delivered(s3: Any, queue_id: str, key: str | None = None) -> None:
    """Put a video in the bucket the way the operators do: with its queue_id in the metadata."""
    s3.put_object(
        Bucket=BUCKET, Key=key or f"{queue_id}.mp4", Body=b"mp4", Metadata={"venice-queue-id": queue_id}
    )


def test_poster_that_is_not_an_image_or_not_beside_its_video_is_not_served(page, db, moto_s3):
    moto_s3.put_object(Bucket=BUCKET, Key="page.html", Body=b"<script>1</script>", ContentType="text/html")
    moto_s3.create_bucket(Bucket="elsewhere")
    moto_s3.put_object(Bucket="elsewhere", Key="p.jpg", Body=b"\xff\xd8", ContentType="image/jpeg")
    html_poster, other_bucket = db.videos(
        [
            video(queue_id="h1", poster_uri=f"s3://{BUCKET}/page.html"),
            video(queue_id="h2", poster_uri="s3://elsewhere/p.jpg"),
        ]
    )
    client = page()
    assert client.get(f"/videos/{html_poster}/poster").status_code == 404
    assert client.get(f"/videos/{other_bucket}/poster").status_code == 404


def test_only_a_video_the_operators_delivered_is_signed(page, db, moto_s3):
    # any task can return {"s3_uri": ...} or add an event through the alias: the page signs nothing for it
    moto_s3.put_object(Bucket=BUCKET, Key="salaries.csv", Body=b"secret")
    delivered(moto_s3, "other-job", key="theirs.mp4")
    db.return_value(task(task_id="g1"), {"s3_uri": f"s3://{BUCKET}/salaries.csv", "queue_id": "q1"})
    db.return_value(task(task_id="g2"), {"s3_uri": f"s3://{BUCKET}/theirs.mp4", "queue_id": "q2"})
    (event_id,) = db.videos([video(queue_id="q3", s3_uri=f"s3://{BUCKET}/salaries.csv")])
    client = page()
    for task_id in ("g1", "g2"):
        params = {"dag_id": "dag_a", "run_id": "run_1", "task_id": task_id}
        assert client.get("/links/video", params=params).status_code == 404
    assert client.get(f"/videos/{event_id}/play").status_code == 404


def test_playing_redirects_to_a_fresh_inline_presigned_url(page, db, moto_s3):
    delivered(moto_s3, "q1")
    (event_id,) = db.videos([video(queue_id="q1")])
    response = page().get(f"/videos/{event_id}/play")
    assert response.status_code == 307
    location = urlsplit(response.headers["location"])
    query = parse_qs(location.query)
    assert location.path.endswith("/q1.mp4") or location.path.endswith(f"/{BUCKET}/q1.mp4")
    assert query["response-content-type"] == ["video/mp4"]
    assert query["response-content-disposition"] == ["inline"]
    assert int(query["Expires"][0]) - time.time() < 600


def test_a_video_of_an_unreadable_dag_is_not_found(page, db, moto_s3):
    (event_id,) = db.videos([video("dag_secret", "qs", poster_uri=f"s3://{BUCKET}/qs.jpg")])
    client = page()
    assert client.get(f"/videos/{event_id}/play").status_code == 404
    assert client.get(f"/videos/{event_id}/poster").status_code == 404


# --- spend --------------------------------------------------------------------------------------


def test_spend_sums_delivered_quotes_per_dag_model_and_day_and_paid_not_delivered_apart(page, db):
    yesterday = NOW - timedelta(days=1)
    db.videos(
        [
            video("dag_a", "a1", quote_usd=1.25),
            video("dag_a", "a2", quote_usd=2.0, model="kling", at=yesterday),
            video("dag_b", "b1", quote_usd=0.5),
            video("dag_b", "b1", quote_usd=0.5),  # the same job announced twice counts once
            video("dag_secret", "s1", quote_usd=100.0),
        ]
    )
    db.record(task("dag_a", "run_x"), job_record("queued", "x1", quote_usd=3.0))
    db.record(task("dag_b", "run_y"), job_record("delivered", "y1", quote_usd=7.0))
    html = page().get("/spend").text
    assert re.search(r'id="venice-spend-total-delivered">\$3.75<', html)
    assert re.search(r'id="venice-spend-total-at-risk">\$3.00<', html)
    by_dag = table(html, "venice-spend-by-dag")
    assert re.search(
        r"<td>dag_a</td><td class=\"n\">\$3.25</td><td class=\"n\">2</td><td class=\"n\">\$3.00</td>", by_dag
    )
    assert re.search(r"<td>dag_b</td><td class=\"n\">\$0.50</td><td class=\"n\">1</td>", by_dag)
    assert "dag_secret" not in html
    by_model = table(html, "venice-spend-by-model")
    assert re.search(r"<td>kling</td><td class=\"n\">\$2.00</td>", by_model)
    by_day = table(html, "venice-spend-by-day")
    assert re.search(rf"<td>{TODAY.isoformat()}</td><td class=\"n\">\$1.75</td>", by_day)
    assert by_day.count("<tr><td>") == 30  # every day of the default range, spent or not


def test_spend_chart_draws_two_bars_a_day(page, db):
    db.videos([video(queue_id="a1", quote_usd=4.0)])
    html = page().get("/spend", params={"since": (TODAY - timedelta(days=6)).isoformat()}).text
    chart = html.split('<svg id="venice-spend-chart"')[1].split("</svg>")[0]
    assert chart.count('class="venice-bar venice-bar-delivered"') == 7
    assert chart.count('class="venice-bar venice-bar-at-risk"') == 7
    assert f"{TODAY.isoformat()}: $4.00 delivered" in chart


def test_spend_refuses_a_backward_or_huge_range(page):
    client = page()
    assert client.get("/spend", params={"since": "2026-02-01", "until": "2026-01-01"}).status_code == 400
    assert client.get("/spend", params={"since": "2020-01-01", "until": "2026-01-01"}).status_code == 400


# --- money at risk ------------------------------------------------------------------------------


def test_money_at_risk_lists_paid_undelivered_jobs_not_delivered_ones(page, db):
    db.record(task(run_id="r1"), job_record("queued", "paid1", at=time.time() - 7200))
    db.record(task(run_id="r2"), job_record("uploading", "paid2"))
    db.record(task(run_id="r3"), job_record("queueing", None))
    db.record(task(run_id="r4"), job_record("completed", "done"))
    db.record(task(run_id="r5"), job_record("delivered", "released_not"))
    db.record(task(run_id="r6"), job_record("delivered", "kept"))
    db.task_instance(task(run_id="r6"), "success")
    db.record(task("dag_secret", "r7"), job_record("queued", "secret"))
    html = page().get("/at-risk").text
    rows = re.findall(r'data-testid="venice-at-risk-row" data-queue-id="(\w*)" data-stage="(\w+)"', html)
    assert rows[0] == ("paid1", "queued")
    assert set(rows) == {
        ("paid1", "queued"),
        ("paid2", "uploading"),
        ("", "queueing"),
        ("released_not", "delivered"),
    }
    assert "2h 0m" in html
    assert "resumes this job" in html
    assert "Check your Venice account" in html
    assert 'href="../dags/dag_a/runs/r1/tasks/generate"' in html


def test_a_queue_task_that_handed_its_job_on_is_not_at_risk_once_it_was_settled(page, db):
    # step by step: the queue task's record stays at "queued"; a to-S3 task delivered and released it
    db.record(task(run_id="r1", task_id="queue"), job_record("queued", "vps", quote_usd=0.5))
    db.record(task(run_id="r1", task_id="deliver"), job_record("completed", "vps", quote_usd=0.5))
    # queue -> sensor -> complete: no further record, but the complete task released that very job
    db.record(task(run_id="r2", task_id="queue"), job_record("queued", "released", quote_usd=0.25))
    db.task_instance(task(run_id="r2", task_id="complete"), "success", "VeniceVideoCompleteOperator")
    db.return_value(
        task(run_id="r2", task_id="complete"), {"model": "wan", "queue_id": "released", "completed": True}
    )
    # the run succeeded (a leaf with trigger_rule="all_done"), but nothing delivered or released the job
    db.record(task(run_id="r3", task_id="queue"), job_record("queued", "stranded", quote_usd=2.0))
    db.task_instance(task(run_id="r3", task_id="queue"), "success", "VeniceVideoQueueOperator")
    db.task_instance(task(run_id="r3", task_id="notify"), "success", "EmptyOperator")
    db.dag_run("dag_a", "r3", "success")
    client = page({"dag_a"})
    rows = re.findall(r'data-testid="venice-at-risk-row" data-queue-id="(\w*)"', client.get("/at-risk").text)
    assert rows == ["stranded"]
    assert re.search(r'id="venice-spend-total-at-risk">\$2.00<', client.get("/spend").text)
    assert re.search(r'id="venice-job-stage"[^>]*>\s*completed', client.get("/jobs/vps").text)


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="the task state store is Airflow 3.3's")
def test_money_at_risk_reads_the_task_state_store_too(page, db):
    db.record(task(run_id="r1", map_index=2), job_record("queued", "stored"), store="state")
    db.record(task(run_id="r2"), job_record("queued", "variable"))
    html = page().get("/at-risk").text
    assert 'data-queue-id="stored"' in html
    assert 'data-queue-id="variable"' in html
    assert "tasks/generate/mapped/2" in html


def _forget_fernet() -> None:
    """Drop Airflow's cached Fernet (a function cache from 3.2 on, a module global in 3.1)."""
    from airflow.models import crypto

    if hasattr(crypto.get_fernet, "cache_clear"):
        crypto.get_fernet.cache_clear()
    if hasattr(crypto, "_fernet"):
        crypto._fernet = None


def test_money_at_risk_reads_encrypted_variables(page, db, monkeypatch):
    from cryptography.fernet import Fernet

    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    _forget_fernet()
    try:
        db.record(task(run_id="r1"), job_record("queued", "sealed"))
        with db.sessions() as session:
            assert session.execute(sa.text("SELECT is_encrypted FROM variable")).scalar_one()
        assert 'data-queue-id="sealed"' in page().get("/at-risk").text
    finally:
        _forget_fernet()


def test_nothing_at_risk_says_so(page, db):
    db.record(task(), job_record("completed", "done"))
    assert 'id="venice-nothing-at-risk"' in page().get("/at-risk").text


# --- one job, and the extra links' targets ------------------------------------------------------


def test_job_page_shows_a_delivered_job_with_its_video(page, db):
    (event_id,) = db.videos([video(queue_id="q1", poster_uri=f"s3://{BUCKET}/q1.jpg", quote_usd=0.75)])
    html = page().get("/jobs/q1").text
    assert 'data-queue-id="q1"' in html
    assert "$0.75" in html
    assert f"s3://{BUCKET}/q1.mp4" in html
    assert f'src="../videos/{event_id}/poster"' in html
    assert f'href="../videos/{event_id}/play"' in html


def test_job_page_of_an_undelivered_job_says_its_stage_and_what_next(page, db):
    db.record(task(run_id="r1"), job_record("queued", "q2", quote_usd=1.5))
    html = page().get("/jobs/q2").text
    assert 'id="venice-job-stage">queued<' in html
    assert "$1.50" in html
    assert "resumes this job" in html


def test_job_page_of_an_unknown_or_unreadable_job_is_not_found(page, db):
    db.record(task("dag_secret"), job_record("queued", "qs"))
    client = page()
    assert client.get("/jobs/nope").status_code == 404
    assert client.get("/jobs/qs").status_code == 404


def test_video_link_redirects_to_the_task_instances_video(page, db, moto_s3):
    db.return_value(
        task(run_id="manual__2026-01-01T00:00:00+00:00", map_index=1),
        {"s3_uri": f"s3://{BUCKET}/m1.mp4", "queue_id": "m1"},
    )
    delivered(moto_s3, "m1")
    params = {
        "dag_id": "dag_a",
        "run_id": "manual__2026-01-01T00:00:00+00:00",
        "task_id": "generate",
        "map_index": "1",
    }
    response = page().get("/links/video", params=params)
    assert response.status_code == 307
    assert "/m1.mp4" in response.headers["location"]
    assert "response-content-type=video%2Fmp4" in response.headers["location"]


def test_video_link_falls_back_to_the_asset_event(page, db, moto_s3):
    delivered(moto_s3, "q1")
    db.videos([video(queue_id="q1", run_id="run_9", map_index=0)])
    params = {"dag_id": "dag_a", "run_id": "run_9", "task_id": "generate", "map_index": "0"}
    response = page().get("/links/video", params=params)
    assert response.status_code == 307
    assert "/q1.mp4" in response.headers["location"]


def test_video_link_of_an_undelivered_task_says_how_far_its_job_got(page, db):
    db.record(task(run_id="r1"), job_record("queued", "q2"))
    client = page()
    response = client.get("/links/video", params={"dag_id": "dag_a", "run_id": "r1", "task_id": "generate"})
    assert response.status_code == 404
    assert "job q2 is not delivered yet" in response.text
    assert "<strong>queued</strong>" in response.text
    assert 'href="../jobs/q2"' in response.text
    nothing = client.get("/links/video", params={"dag_id": "dag_a", "run_id": "r9", "task_id": "generate"})
    assert "No Venice job is recorded" in nothing.text


def test_job_link_redirects_to_the_job_page_relative_to_the_link(page, db):
    db.record(task(run_id="r1", map_index=3), job_record("queued", "q/3"))
    params = {"dag_id": "dag_a", "run_id": "r1", "task_id": "generate", "map_index": "3"}
    response = page().get("/links/job", params=params)
    assert response.status_code == 307
    assert response.headers["location"] == "../jobs/q%2F3"


def test_links_check_the_dag_may_be_read(page, db):
    db.return_value(task("dag_secret"), {"s3_uri": f"s3://{BUCKET}/s.mp4", "queue_id": "s"})
    params = {"dag_id": "dag_secret", "run_id": "run_1", "task_id": "generate"}
    client = page()
    assert client.get("/links/video", params=params).status_code == 403
    assert client.get("/links/job", params=params).status_code == 403


def test_a_capped_scan_says_so_even_when_the_rows_read_were_other_dags(page, db, monkeypatch):
    from airflow_provider_venice.plugins import records

    monkeypatch.setattr(records, "SCAN_LIMIT", 3)
    monkeypatch.setattr(records.all_records, "__defaults__", (3,))
    for number in range(3):
        db.record(task("dag_secret", f"s{number}"), job_record("completed", f"s{number}"))
    db.record(task("dag_a", "r1"), job_record("queued", "mine"))
    html = page({"dag_a"}).get("/at-risk").text
    assert "Only the newest job records were read" in html

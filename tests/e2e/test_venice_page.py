"""The Venice page and the extra links in the real deployment, used as a person would use them.

This module runs after ``test_deployment`` on the same deployment (``conftest.deployment`` is shared by
the package) and looks at what the example DAGs left there: the videos their runs delivered,
and one job this module leaves paid and undelivered on purpose (``paid_not_delivered``). Run alone, it
first delivers one video itself.

Nobody gets in anonymously. Over HTTP: every page, the poster frames, the job pages and both extra
links' targets. In a headless Chromium, logged in as the viewer: the page inside the Airflow UI shows
the videos with their poster frames loaded, the spend chart and the job at risk; the "Video" extra link
on a task instance's Details tab leads to an mp4 that plays. Screenshots go to the test's ``tmp_path``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import pytest

from tests.e2e.browser import chromium_or_skip, logged_in_page, screenshot, url
from tests.e2e.deployment import TOKEN_COOKIE, VIEWER, Deployment

pytestmark = pytest.mark.e2e

TEXT_TO_VIDEO = "venice_text_to_video"
# The DAGs that pay Venice: no run of theirs may be going on while this module plants a fault.
PAYING_DAGS = ("venice_text_to_video", "venice_vps_step_by_step", "venice_batch_on_budget")
# The delivering task of each example DAG that pays: plain, mapped (batch) and to-S3 (VPS).
DELIVERING_TASKS = {
    "venice_text_to_video": "generate_video",
    "venice_batch_on_budget": "generate",
    "venice_vps_step_by_step": "deliver",
}
PAGES = ("venice/", "venice/spend", "venice/at-risk")
# Venice refuses to say how the job is doing (a permanent error): the try fails, its job stays paid.
REFUSED = {"endpoint": "/video/retrieve", "status": 400, "body": {"error": "e2e: refused on purpose"}}
# Set to a path to also save the README's screenshot of the page (scripts/screenshot_venice_page.py).
README_SCREENSHOT = "VENICE_README_SCREENSHOT"


@dataclass(frozen=True)
class Delivery:
    """A task instance that delivered a video, and what its result (XCom) says about the video."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    result: dict[str, Any]

    @property
    def queue_id(self) -> str:
        return str(self.result["queue_id"])

    @property
    def details_path(self) -> str:
        """The Airflow UI's Details tab of this task instance (where its extra links are)."""
        task = f"dags/{self.dag_id}/runs/{quote(self.run_id, safe='')}/tasks/{self.task_id}"
        return f"{task}/mapped/{self.map_index}/details" if self.map_index >= 0 else f"{task}/details"


def _result(deployment: Deployment, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, Any]:
    task = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
    params = {"map_index": map_index, "deserialize": True}
    body = deployment.api_json("GET", f"{task}/xcomEntries/return_value", params=params)
    result: dict[str, Any] = body["value"]
    return result


def _deliveries(deployment: Deployment) -> list[Delivery]:
    """Every video the successful runs of the example DAGs delivered (plain, mapped and to-S3 tasks)."""
    found = []
    for dag_id, task_id in DELIVERING_TASKS.items():
        runs = deployment.api_json(
            "GET", f"/dags/{dag_id}/dagRuns", params={"state": "success", "limit": 100}
        )
        for run in runs["dag_runs"]:
            run_id = run["dag_run_id"]
            for ti in deployment.task_instances(dag_id, run_id):
                if ti["task_id"] != task_id or ti["state"] != "success":
                    continue
                result = _result(deployment, dag_id, run_id, task_id, ti["map_index"])
                found.append(Delivery(dag_id, run_id, task_id, ti["map_index"], result))
    return found


def _wait_for_finished_run(deployment: Deployment, dag_id: str, run_id: str) -> str:
    def finished() -> str | None:
        state = deployment.run_state(dag_id, run_id)
        return state if state in {"success", "failed"} else None

    state: str = deployment.wait_for(f"{dag_id} run {run_id} to finish", finished, 240, dag_id=dag_id)
    return state


def _no_paying_run_going_on(deployment: Deployment) -> bool:
    going_on = {"state": ["queued", "running"], "limit": 100}
    body = deployment.api_json("GET", "/dags/~/dagRuns", params=going_on)
    return not [run for run in body["dag_runs"] if run["dag_id"] in PAYING_DAGS]


@pytest.fixture(scope="module")
def delivered(deployment: Deployment) -> list[Delivery]:
    """The videos the example DAGs delivered; when none was yet (this module alone), deliver one."""
    if not any(delivery.dag_id == TEXT_TO_VIDEO for delivery in _deliveries(deployment)):
        deployment.wait_for_run(TEXT_TO_VIDEO, deployment.trigger(TEXT_TO_VIDEO))
    return _deliveries(deployment)


@pytest.fixture(scope="module")
def paid_not_delivered(deployment: Deployment, delivered: list[Delivery]) -> dict[str, Any]:
    """A text-to-video run left with its job paid and not delivered: money at risk.

    The job is queued (paid), then Venice answers the first look at it with a 400, a permanent error:
    the task fails at once, without a retry, and nothing delivers or completes the job. Its job record
    stays at the stage ``queued``. No other paying run may be going on, or it could take the fault.
    """
    deployment.wait_for("no paying DAG run going on", lambda: _no_paying_run_going_on(deployment), 240, 2)
    jobs_before = len(deployment.emulator_jobs())
    deployment.emulator_admin("faults", {"faults": [REFUSED]})
    try:
        run_id = deployment.trigger(TEXT_TO_VIDEO)
        state = _wait_for_finished_run(deployment, TEXT_TO_VIDEO, run_id)
    finally:  # whatever happened, the fault does not outlive this fixture
        httpx.delete(f"{deployment.emulator_url}/_emulator/faults", timeout=10).raise_for_status()
    new_jobs = deployment.emulator_jobs()[jobs_before:]
    [ti] = deployment.task_instances(TEXT_TO_VIDEO, run_id)
    assert state == "failed", f"the run that was to fail after paying ended {state}: {ti}"
    assert ti["state"] == "failed", ti
    assert ti["try_number"] == 1, ti  # no retry: the error was permanent
    assert len(new_jobs) == 1, new_jobs  # paid exactly once
    [job] = new_jobs
    assert job["status"] in {"PROCESSING", "COMPLETED"}, job  # never completed (released) at Venice
    return {"dag_id": TEXT_TO_VIDEO, "run_id": run_id, "task_id": ti["task_id"], "queue_id": job["queue_id"]}


# --- over HTTP ------------------------------------------------------------------------------------


def test_nobody_gets_in_without_logging_in(deployment: Deployment) -> None:
    """Anonymous requests get 401, on Airflow's API as on the Venice page; a viewer's token gets in."""
    task = {"dag_id": TEXT_TO_VIDEO, "run_id": "r", "task_id": "generate_video", "map_index": -1}
    link = f"venice/links/video?{urlencode(task)}"
    for path in ("api/v2/dags", *PAGES, "venice/jobs/some-queue-id", link):
        response = deployment.request("GET", path, user=None, follow_redirects=False)
        assert response.status_code == 401, (path, response.status_code, response.text[:300])
    forged = deployment.request("GET", "venice/", user=None, headers={"Cookie": f"{TOKEN_COOKIE}=forged"})
    assert forged.status_code in {401, 403}, forged.status_code

    for path in PAGES:
        response = deployment.request("GET", path, user=VIEWER)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("text/html")
    token = deployment.token(VIEWER)  # the cookie the UI's login sets, as the page's iframe sends it
    by_cookie = deployment.request("GET", "venice/", user=None, headers={"Cookie": f"{TOKEN_COOKIE}={token}"})
    assert by_cookie.status_code == 200, by_cookie.status_code


def test_the_pages_show_the_videos_the_spend_and_the_money_at_risk(
    deployment: Deployment, delivered: list[Delivery], paid_not_delivered: dict[str, Any]
) -> None:
    videos = deployment.request("GET", "venice/", user=VIEWER).text
    at_risk = deployment.request("GET", "venice/at-risk", user=VIEWER).text
    # Every delivered video is listed, and none of them is at risk (delivered and released).
    unlisted = [delivery for delivery in delivered if f'data-queue-id="{delivery.queue_id}"' not in videos]
    risky = [delivery for delivery in delivered if delivery.queue_id in at_risk]
    assert not unlisted + risky, f"not among the videos: {unlisted}\ndelivered, yet at risk: {risky}"
    posters = re.findall(r'<img[^>]*data-testid="venice-poster"[^>]*src="([^"]+)"', videos)
    assert len(posters) >= len(delivered), posters
    for src in posters:
        image = deployment.request("GET", f"venice/{src}", user=VIEWER)
        assert image.status_code == 200, (src, image.status_code)
        assert image.headers["content-type"] == "image/jpeg"
        assert image.content[:3] == b"\xff\xd8\xff", src
    assert paid_not_delivered["queue_id"] not in videos  # not delivered: not among the videos

    spend = deployment.request("GET", "venice/spend", user=VIEWER).text
    assert 'data-testid="venice-spend-chart"' in spend
    assert re.search(r'class="venice-bar venice-bar-delivered"[^>]*height="(?!0\.0")', spend), "no spend bar"

    queue_id = paid_not_delivered["queue_id"]
    row = f'data-queue-id="{queue_id}" data-stage="queued"'
    assert row in at_risk, f"job {queue_id} (paid, not delivered) is not at risk:\n{at_risk[-3000:]}"

    job = deployment.request("GET", f"venice/jobs/{quote(queue_id, safe='')}", user=VIEWER)
    assert job.status_code == 200, job.text[:300]
    assert re.search(r'id="venice-job-stage">\s*queued', job.text), job.text[-2000:]


def _links(deployment: Deployment, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, str]:
    path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/links"
    links: dict[str, str] = deployment.api_json("GET", path, params={"map_index": map_index})["extra_links"]
    return links


def test_the_extra_links_lead_to_each_video_and_its_job(
    deployment: Deployment, delivered: list[Delivery], paid_not_delivered: dict[str, Any]
) -> None:
    """Every delivering task instance (plain, mapped, to-S3) has both links; "Video" is the right mp4."""
    for task in delivered:
        links = _links(deployment, task.dag_id, task.run_id, task.task_id, task.map_index)
        assert set(links) >= {"Video", "Venice job"}, (task, links)
        assert links["Video"].startswith("venice/links/video?"), links  # relative: works behind base_url
        assert f"map_index={task.map_index}" in links["Video"], links

        redirect = deployment.request("GET", links["Video"], user=VIEWER, follow_redirects=False)
        assert redirect.status_code == 307, (task, redirect.status_code, redirect.text[:300])
        signed = redirect.headers["location"]
        assert urlsplit(signed).netloc == urlsplit(deployment.s3_server.url).netloc, signed
        video = httpx.get(signed, timeout=30)  # presigned: no Airflow login, no AWS credentials
        assert video.status_code == 200, video.text[:300]
        assert video.headers["content-type"] == "video/mp4"
        assert "attachment" not in video.headers.get("content-disposition", "")  # plays inline
        assert hashlib.sha256(video.content).hexdigest() == task.result["sha256"], task

        job = deployment.request("GET", links["Venice job"], user=VIEWER, follow_redirects=True)
        assert job.status_code == 200, (task, job.status_code, job.text[:300])
        assert f'data-queue-id="{task.queue_id}"' in job.text, task

    at_risk = paid_not_delivered
    links = _links(deployment, at_risk["dag_id"], at_risk["run_id"], at_risk["task_id"], -1)
    missing = deployment.request("GET", links["Video"], user=VIEWER, follow_redirects=False)
    assert missing.status_code == 404, missing.status_code  # no video: a page saying how far it got
    assert at_risk["queue_id"] in missing.text, missing.text[-2000:]
    assert "queued" in missing.text, missing.text[-2000:]
    job = deployment.request("GET", links["Venice job"], user=VIEWER, follow_redirects=True)
    assert job.status_code == 200, job.text[:300]
    assert f'data-queue-id="{at_risk["queue_id"]}"' in job.text


# --- in a browser ---------------------------------------------------------------------------------


@pytest.mark.browser
def test_a_person_sees_the_page_and_plays_a_video_from_its_task(
    deployment: Deployment,
    delivered: list[Delivery],
    paid_not_delivered: dict[str, Any],
    tmp_path: Path,
) -> None:
    chromium_or_skip()
    from playwright.sync_api import expect

    with logged_in_page(deployment, VIEWER) as page:
        # The Venice page inside the Airflow UI (an iframe under the navigation), as the menu opens it.
        page.goto(url(deployment, "plugin/venice"))
        frame = page.frame_locator('iframe[title="Venice"]')
        if os.environ.get(README_SCREENSHOT):  # first, so that it is saved whatever is checked below
            _readme_screenshot(page, Path(os.environ[README_SCREENSHOT]))
            frame.locator("#venice-nav-videos").click()
        expect(frame.locator('[data-testid="venice-videos"]')).to_be_visible()  # rendered on the server
        rows = frame.locator('[data-testid="venice-video"]')
        listed = set(rows.evaluate_all("rows => rows.map(row => row.dataset.queueId)"))
        unlisted = [delivery for delivery in delivered if delivery.queue_id not in listed]
        assert not unlisted, f"not among the videos: {unlisted}"
        posters = frame.locator('img[data-testid="venice-poster"]')
        assert posters.count() >= len(delivered)
        for index in range(posters.count()):
            poster = posters.nth(index)
            poster.scroll_into_view_if_needed()  # posters load lazily
            expect(poster).to_have_js_property("complete", True)
            expect(poster).not_to_have_js_property("naturalWidth", 0)  # the JPEG arrived and decoded
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, tmp_path, "1-videos")

        frame.locator("#venice-nav-spend").click()
        chart = frame.locator('svg[data-testid="venice-spend-chart"]')
        expect(chart).to_be_visible()
        assert chart.locator("rect.venice-bar-delivered").count() >= 1
        screenshot(page, tmp_path, "2-spend")

        frame.locator("#venice-nav-at-risk").click()
        queue_id = paid_not_delivered["queue_id"]
        row = frame.locator(f'[data-testid="venice-at-risk-row"][data-queue-id="{queue_id}"]')
        expect(row).to_be_visible()
        expect(row).to_have_attribute("data-stage", "queued")
        screenshot(page, tmp_path, "3-money-at-risk")

        # A task that delivered a video: its Details tab has the "Video" extra link; follow it.
        task = next(delivery for delivery in delivered if delivery.dag_id == TEXT_TO_VIDEO)
        page.goto(url(deployment, task.details_path))
        link = page.get_by_role("link", name="Video", exact=True)
        expect(link).to_be_visible()
        expect(page.get_by_role("link", name="Venice job", exact=True)).to_be_visible()
        screenshot(page, tmp_path, "4-task-details")
        if link.get_attribute("target") == "_blank":  # Airflow 3.1 opens links in a new tab
            with page.context.expect_page() as opened:
                link.click()
            player = opened.value
        else:  # 3.2+: same-origin links open in the same tab
            link.click()
            player = page
        s3_host = urlsplit(deployment.s3_server.url).netloc
        player.wait_for_url(lambda address: urlsplit(address).netloc == s3_host)
        video = player.locator("video")  # Chromium shows a media document: one <video> element
        expect(video).to_have_count(1)
        # HAVE_CURRENT_DATA (2) or better: the browser fetched and decoded the mp4's first frame.
        player.wait_for_function("() => document.querySelector('video').readyState >= 2", polling=250)
        duration = video.evaluate("element => element.duration")
        assert duration > 0, duration
        assert duration == pytest.approx(task.result["duration_s"], abs=0.5), duration
        screenshot(player, tmp_path, "5-video", full_page=False)


def _readme_screenshot(page: Any, path: Path) -> None:
    """Save the README's picture, 1280 px wide: the Videos page in the Airflow UI, the Spend chart below.

    The Videos page is shot with the UI around it; the Spend page's chart (and its legend) is cut out of
    the frame and stacked below, over the continued navigation bar, into one PNG.
    """
    from playwright.sync_api import expect

    frame = page.frame_locator('iframe[title="Venice"]')
    frame.locator("#venice-nav-videos").click()
    expect(frame.locator("#venice-videos")).to_be_visible()
    for poster in frame.locator('img[data-testid="venice-poster"]').all():
        expect(poster).not_to_have_js_property("naturalWidth", 0)
    width = page.viewport_size["width"]
    videos = _bottom(frame.locator("#venice-videos"))
    top = page.screenshot(clip={"x": 0, "y": 0, "width": width, "height": min(videos, 860)})
    frame.locator("#venice-nav-spend").click()
    legend = frame.locator("#venice-spend-chart + p")
    expect(legend).to_be_visible()
    left = page.locator('iframe[title="Venice"]').bounding_box()["x"]
    upper = frame.locator("h1").bounding_box()["y"]
    clip = {"x": left, "y": upper, "width": width - left, "height": _bottom(legend) - upper}
    bottom = page.screenshot(clip=clip)
    nav, nav_width = page.evaluate(NAV_BAR)
    parts = (
        f'<img style="display:block" src="data:image/png;base64,{base64.b64encode(top).decode()}">'
        f'<img style="display:block;margin-left:{left}px" '
        f'src="data:image/png;base64,{base64.b64encode(bottom).decode()}">'
    )
    sheet = page.context.new_page()
    sheet.set_viewport_size({"width": width, "height": 100})
    background = f"linear-gradient(to right, {nav} {nav_width}px, #fff {nav_width}px)"
    sheet.set_content(f'<body style="margin:0;background:{background}">{parts}</body>')
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.screenshot(path=str(path), full_page=True)
    sheet.close()


def _bottom(locator: Any) -> float:
    box = locator.bounding_box()
    return float(box["y"] + box["height"] + 16)


# The colour and width of the Airflow UI's navigation bar (the first opaque box under the left edge).
NAV_BAR = """() => {
  for (let node = document.elementFromPoint(4, window.innerHeight - 4); node; node = node.parentElement) {
    const colour = getComputedStyle(node).backgroundColor;
    if (colour && colour !== "transparent" && !colour.endsWith(", 0)")) {
      return [colour, node.getBoundingClientRect().right];
    }
  }
  return ["#fff", 0];
}"""

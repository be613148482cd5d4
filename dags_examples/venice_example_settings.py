"""Settings shared by the example DAGs (read from the environment; no I/O at parse time).

``VENICE_VIDEO_BUCKET`` names the bucket the videos go to, under ``videos/<dag_id>/``. Every delivery
is announced through the provider's ``venice-videos`` asset alias, which ``venice_new_video_catalogue``
is scheduled on.
"""

from __future__ import annotations

import os

VIDEO_BUCKET = os.environ.get("VENICE_VIDEO_BUCKET", "venice-videos")


def video_key(suffix: str = ".mp4") -> str:
    """Return a templated key, unique per DAG run (and map index for mapped tasks), under ``videos/``.

    Runs triggered from the REST API or by an asset have no logical date (``ts_nodash`` is undefined
    for them), so the key falls back to the run's ``run_after`` time.
    """
    return (
        "videos/{{ dag.dag_id }}/{{ (dag_run.logical_date or dag_run.run_after) | ts_nodash }}"
        "{% if ti.map_index >= 0 %}-{{ ti.map_index }}{% endif %}" + suffix
    )

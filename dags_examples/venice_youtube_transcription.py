"""Transcribe a YouTube video and keep the transcript.

The URL is checked before the call (Venice transcribes YouTube videos only). Venice has been reported
to retire this endpoint; if it answers 410 Gone, the task fails at once with a message saying so.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_venice.operators.transcription import VeniceVideoTranscriptionOperator

with DAG(
    dag_id="venice_youtube_transcription",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    tags=["venice", "example"],
    params={"url": Param("https://www.youtube.com/watch?v=dQw4w9WgXcQ", type="string")},
):
    transcript = VeniceVideoTranscriptionOperator(task_id="transcribe", url="{{ params.url }}")

    @task
    def summarise(result: dict[str, Any]) -> dict[str, Any]:
        """Report the transcript's language and length (a stand-in for indexing or translation)."""
        words = len(result["transcript"].split())
        print(f"Transcript in {result.get('lang')}: {words} words.")
        return {"lang": result.get("lang"), "words": words}

    summarise(transcript.output)

"""Every example DAG parses without errors, without the network, boto3 or the client's heavy modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from airflow_provider_venice.version_compat import AIRFLOW_V_3_2_PLUS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "dags_examples"
# DagBag moved to the DAG processor in Airflow 3.2 (airflow.models.DagBag still works there, deprecated).
DAGBAG_MODULE = "airflow.dag_processing.dagbag" if AIRFLOW_V_3_2_PLUS else "airflow.models.dagbag"

# Runs in a fresh interpreter so that nothing imported by other tests hides an import at parse time.
_PARSE = r"""
import importlib.util, json, socket, sys
from pathlib import Path

def refuse(*args, **kwargs):
    raise AssertionError(f"network access at DAG parse time: {args!r}")

socket.socket.connect = refuse
socket.create_connection = refuse
folder = Path(sys.argv[1])
sys.path.insert(0, str(folder))  # as Airflow does for its dags folder
DagBag = importlib.import_module(sys.argv[2]).DagBag

bag = DagBag(dag_folder=str(folder), safe_mode=False)
found = {}
for dag in bag.dags.values():
    found.setdefault(Path(dag.fileloc).name, []).append(dag.dag_id)
errors = {Path(name).name: str(error)[-2000:] for name, error in bag.import_errors.items()}
heavy = {name: name in sys.modules for name in ("boto3", "botocore")}
heavy["client_modules"] = sorted(m for m in sys.modules if m.startswith("airflow_provider_venice.client."))
print(json.dumps({"dags": found, "errors": errors, **heavy}))
"""


def _parse() -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _PARSE, str(EXAMPLES), DAGBAG_MODULE],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_example_file_defines_its_dag_without_network_or_boto3():
    parsed = _parse()
    assert parsed["errors"] == {}
    assert parsed["dags"] == {
        "venice_batch_on_budget.py": ["venice_batch_on_budget"],
        "venice_image_to_video.py": ["venice_image_to_video"],
        "venice_new_video_catalogue.py": ["venice_new_video_catalogue"],
        "venice_text_to_video.py": ["venice_text_to_video"],
        "venice_video_upscale.py": ["venice_video_upscale"],
        "venice_vps_step_by_step.py": ["venice_vps_step_by_step"],
        "venice_youtube_transcription.py": ["venice_youtube_transcription"],
    }
    assert parsed["boto3"] is False
    assert parsed["botocore"] is False
    # the client loads lazily: parsing needs its errors, polling defaults and URL check, not the
    # pydantic models or the HTTP halves (they cost most of the parse time before they were lazy)
    assert parsed["client_modules"] == [
        "airflow_provider_venice.client._errors",
        "airflow_provider_venice.client._polling",
        "airflow_provider_venice.client._urls",
    ]


def test_every_example_has_a_module_docstring():
    for path in EXAMPLES.glob("venice_*.py"):
        source = path.read_text()
        assert source.lstrip().startswith('"""'), f"{path.name} has no module docstring"

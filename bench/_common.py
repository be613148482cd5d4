"""Helpers shared by the benchmarks: memory, sockets, emulator control, result files and tables."""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
PY = sys.executable
API_KEY = "sk-bench"


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size now (VmRSS) of a process."""
    return _status_kib(pid, "VmRSS") * 1024


def hwm_bytes(pid: int | str = "self") -> int:
    """Peak resident set size (VmHWM) of a process."""
    return _status_kib(pid, "VmHWM") * 1024


def cpu_seconds(pid: int | str = "self") -> float:
    """CPU time (user + system) a process has used so far, its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int | str, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def reset_hwm() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def venice_connection_env(base_url: str) -> str:
    """The ``AIRFLOW_CONN_VENICE_DEFAULT`` value pointing at an emulator."""
    return json.dumps({"conn_type": "venice", "password": API_KEY, "host": base_url})


def admin_url(base_url: str) -> str:
    return base_url.removesuffix("/api/v1") + "/_emulator"


def emulator_clock_offset(base_url: str) -> float:
    return float(httpx.get(admin_url(base_url) + "/clock", timeout=30).json()["offset_s"])


def emulator_calls(base_url: str) -> list[dict[str, Any]]:
    return list(httpx.get(admin_url(base_url) + "/calls", timeout=120).json()["calls"])


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on sorted values; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def save_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    data = {"benchmark": name, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **data}
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured markdown table."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if value != value:  # NaN
                return "n/a"
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for benchmark child processes: quiet Airflow, no example DAGs, no network."""
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow"))
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def mib(value: float) -> float:
    return value / (1024 * 1024)

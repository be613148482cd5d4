"""Benchmark 4: the cost of parsing a DAG file that uses every Venice operator, vs Airflow's own.

Each run is a fresh process that first imports what a DAG processor already has loaded (``airflow``,
``airflow.sdk`` and ``DagBag``), then times ``DagBag`` parsing one file, and counts the modules that
parsing imported. Sockets are watched: any DNS lookup or connect during the parse is recorded. The two
files (``bench/dags/``) have the same seven tasks; the baseline uses only ``EmptyOperator``.

Usage: ``python bench/parse_cost.py [--runs 11]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PY, child_env, median, save_result, table

DAGS = Path(__file__).resolve().parent / "dags"
FILES = {"venice": DAGS / "venice_all_operators.py", "baseline": DAGS / "airflow_sdk_only.py"}
HEAVY = (
    "boto3",
    "botocore",
    "s3transfer",
    "airflow.providers.amazon",
    "httpx",
    "pydantic",
    "airflow_provider_venice",
)


def child(path: str) -> None:
    import socket
    import time

    import airflow.sdk  # noqa: F401 - loaded in a DAG processor before any file is parsed
    from airflow.dag_processing.dagbag import DagBag

    network: list[str] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        network.append(f"connect {address}")
        return real_connect(self, address)

    def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        network.append(f"getaddrinfo {args[:2]}")
        return real_getaddrinfo(*args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    before = set(sys.modules)
    started = time.perf_counter()
    bag = DagBag(dag_folder=path, safe_mode=False)
    elapsed = time.perf_counter() - started
    new = sorted(set(sys.modules) - before)
    result = {
        "seconds": elapsed,
        "dags": len(bag.dags),
        "tasks": sum(len(d.tasks) for d in bag.dags.values()),
        "import_errors": {str(k): str(v)[-500:] for k, v in bag.import_errors.items()},
        "new_modules": len(new),
        "heavy": {
            prefix: sum(1 for m in new if m == prefix or m.startswith(prefix + ".")) for prefix in HEAVY
        },
        "network": network,
    }
    print("RESULT " + json.dumps(result))


def run_once(name: str) -> dict[str, Any]:
    out = subprocess.run(
        [PY, __file__, "--child", str(FILES[name])],
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    if result["import_errors"] or result["dags"] != 1:
        raise RuntimeError(f"{name}: the DAG did not parse: {result['import_errors']}")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, Any]]] = {"venice": [], "baseline": []}
    for _ in range(args.runs):  # interleaved, so drifting machine load hits both alike
        for name in runs:
            runs[name].append(run_once(name))
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            "median_ms": median([r["seconds"] * 1000 for r in results]),
            "min_ms": min(r["seconds"] * 1000 for r in results),
            "max_ms": max(r["seconds"] * 1000 for r in results),
            "new_modules": median([r["new_modules"] for r in results]),
            "tasks": results[0]["tasks"],
            "heavy": results[0]["heavy"],
            "network": sorted({n for r in results for n in r["network"]}),
        }
    ours, base = summary["venice"], summary["baseline"]
    added_ms = ours["median_ms"] - base["median_ms"]
    result = {
        "runs": args.runs,
        "summary": summary,
        "added_ms": added_ms,
        "time_ratio": ours["median_ms"] / base["median_ms"],
        "added_modules": ours["new_modules"] - base["new_modules"],
        "targets": {
            "added_le_50ms": added_ms <= 50,
            "no_boto3": ours["heavy"]["boto3"] == 0 and ours["heavy"]["botocore"] == 0,
            "no_network": not ours["network"],
        },
    }
    rows = [
        [name, s["tasks"], s["median_ms"], s["min_ms"], s["max_ms"], s["new_modules"], s["heavy"]["boto3"],
         s["heavy"]["botocore"], len(s["network"])]
        for name, s in summary.items()
    ]  # fmt: skip
    print(f"{args.runs} fresh processes per DAG file, parsed with DagBag after importing airflow.sdk")
    cols = [
        "DAG file",
        "tasks",
        "median ms",
        "min ms",
        "max ms",
        "modules imported",
        "boto3",
        "botocore",
        "network",
    ]
    print(table(cols, rows))
    print(f"added by our operators: {added_ms:.1f} ms (ratio {result['time_ratio']:.2f}x), "
          f"{result['added_modules']:.0f} modules: {json.dumps(ours['heavy'])}")  # fmt: skip
    print("targets:", result["targets"])
    save_result("parse_cost", result)
    return result


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()

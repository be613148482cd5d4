"""Run every benchmark, one process each, and write BENCHMARKS.md from what they printed.

``make bench`` runs this. Each benchmark prints its own tables (its figures and the ratios against a
baseline measured in the same run) and saves them in ``bench/results/NAME.json``; this script adds the
machine, the command and the date, and keeps the hand-written analysis of ``bench/ANALYSIS.md`` on top.

Usage: ``python bench/run_all.py [--only NAME ...] [--quick]`` (``--only``: re-run some benchmarks and
replace their sections, keeping the others'; ``--quick``: small sizes, for a smoke run; its results are
not written to BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
# name -> (script, arguments of a full run, arguments of a quick run)
BENCHMARKS = {
    "polling_efficiency": ("polling_efficiency.py", [], ["--jobs", "2000"]),
    "parse_cost": ("parse_cost.py", [], ["--runs", "3"]),
    "triggerer_scale": (
        "triggerer_scale.py",
        [],
        ["--n", "100", "--naive-n", "100", "--burst-n", "100", "--window", "5", "--settle", "1"],
    ),
    "transfer": ("transfer.py", [], ["--size", "64MiB", "--rounds", "1"]),
    "plugin_page": ("plugin_page.py", [], ["--videos", "1000", "--records", "100", "--rounds", "5"]),
    "poll_cost": ("poll_cost.py", [], ["--polls", "300", "--rounds", "1"]),
    "triggerer_real": ("triggerer_real.py", [], ["--n", "20", "40", "--waits", "2"]),
    "scale_batch": ("scale_batch.py", ["--n", "500"], ["--n", "20", "--low", "10", "--high", "30"]),
}


def machine() -> str:
    """One line about the machine: CPU, cores, memory, kernel, Python."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def run(name: str, quick: bool) -> tuple[str, float, int]:
    """Run one benchmark; return what it printed, how long it took, and its exit code."""
    script, full, small = BENCHMARKS[name]
    command = [sys.executable, str(BENCH / script), *(small if quick else full)]
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    lines: list[str] = []
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    return "".join(lines), time.perf_counter() - started, proc.returncode


def write_report(outputs: dict[str, tuple[str, float, int]]) -> Path:
    """Rewrite BENCHMARKS.md: the analysis, then each benchmark's last output (kept in bench/results)."""
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    for name, (output, seconds, code) in outputs.items():
        status = "" if code == 0 else f", exited {code}"
        heading = f"### {name} ({seconds:.0f} s{status}; {when})"
        (RESULTS / f"{name}.txt").write_text(f"{heading}\n\n```text\n{output.rstrip()}\n```\n")
    analysis = (BENCH / "ANALYSIS.md").read_text().strip()
    parts = [
        analysis,
        "",
        "## Results of the last run",
        "",
        "- Command: `make bench` (`python bench/run_all.py`; `--only NAME` re-runs one benchmark and",
        "  replaces its section); each section says when it ran",
        f"- Machine: {machine()}",
        "",
    ]
    for name in BENCHMARKS:
        saved = RESULTS / f"{name}.txt"
        parts.append(saved.read_text() if saved.exists() else f"### {name}\n\nnot run yet\n")
    path = ROOT / "BENCHMARKS.md"
    path.write_text("\n".join(parts))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    outputs = {name: run(name, args.quick) for name in args.only}
    total = time.perf_counter() - started
    print(f"all benchmarks: {total / 60:.1f} min")
    if not args.quick:
        print(f"wrote {write_report(outputs)}")
    return max(code for _, _, code in outputs.values())


if __name__ == "__main__":
    sys.exit(main())

"""Regenerate the README's screenshot of the Venice page: ``docs/images/venice-page.png``.

It runs the end-to-end tests (a real Airflow deployment on loopback ports, the example DAGs, a job
left paid and undelivered, a headless Chromium); their browser test, given ``VENICE_README_SCREENSHOT``,
also saves the page (Videos above the Spend chart, inside the Airflow UI, 1280 px wide) there. Needs
Debian's ``chromium`` and the dev environment (``make install``). About four minutes.

    .venv/bin/python scripts/screenshot_venice_page.py [PATH]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "docs" / "images" / "venice-page.png"
MAX_BYTES = 300_000  # keep the repository light


def main(argv: list[str]) -> int:
    """Run the end-to-end tests with the screenshot asked for; return pytest's exit status."""
    target = Path(argv[0]).resolve() if argv else DEFAULT
    target.unlink(missing_ok=True)
    env = {**os.environ, "VENICE_README_SCREENSHOT": str(target)}
    command = [sys.executable, "-m", "pytest", "tests/e2e", "-m", "e2e", "-q", "-p", "no:cacheprovider"]
    code = subprocess.call(command, cwd=ROOT, env=env)  # noqa: S603 (our own interpreter and arguments)
    if not target.exists():
        print(f"no screenshot saved (pytest exited {code}; was the browser test skipped?)", file=sys.stderr)
        return code or 1
    size = target.stat().st_size
    print(f"saved {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} ({size} bytes)")
    if size > MAX_BYTES:
        print(f"warning: larger than {MAX_BYTES} bytes", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

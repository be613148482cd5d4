"""``python -m airflow_provider_venice.testing``: the same as ``venice-emulator``."""

from airflow_provider_venice.testing.cli import main

raise SystemExit(main())

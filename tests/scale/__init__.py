"""Scale tests: CeleryExecutor, PostgreSQL, Redis, two workers and two triggerers, with faults."""

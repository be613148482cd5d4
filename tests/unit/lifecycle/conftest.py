"""Fixtures of the lifecycle tests: moto's in-process S3 and the in-process Venice emulator."""

from __future__ import annotations

from tests.integration import s3_fixtures

aws_env = s3_fixtures.aws_env
moto_s3 = s3_fixtures.moto_s3
venice = s3_fixtures.venice

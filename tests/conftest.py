"""Settings for every suite: hypothesis never times examples (this 2-core machine is shared and noisy).

Speed belongs in ``bench/``, not in tests: a slow draw or a slow example on a busy machine says nothing
about the code, so the deadline and the too-slow health check are off for every property test.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("project", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("project")

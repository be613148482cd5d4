"""Airflow's ``[core] hostname_callable`` for the scale deployment: each component reports its own name.

All the components run on one host, so ``socket.getfqdn`` would name them all alike. The cluster starts
each with ``VENICE_SCALE_COMPONENT`` (``worker-1``, ``triggerer-2``...), so ``task_instance.hostname``
says which worker ran a try and ``job.hostname`` which triggerer holds a trigger.
"""

from __future__ import annotations

import os
import socket


def component_name() -> str:
    """The component's name from the environment, or the host's name outside the scale deployment."""
    return os.environ.get("VENICE_SCALE_COMPONENT") or socket.getfqdn()

"""Who may see what: the signed-in user (Airflow's auth manager) and the DAGs that user may read."""

from __future__ import annotations

from typing import Annotated, Any

from airflow.api_fastapi.core_api.security import GetUserDep  # noqa: TC002 (FastAPI reads it at run time)
from fastapi import Depends


def readable_dag_ids(user: GetUserDep) -> set[str]:
    """Return the DAG ids the signed-in user may read (every page and link is limited to them).

    The auth manager is Airflow's global one: inside a plugin's sub-app ``request.app`` is this app,
    whose state holds no auth manager.
    """
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


ReadableDags = Annotated[set[str], Depends(readable_dag_ids)]


def aws_conn_id() -> str:
    """Return the connection the page reads posters and signs video URLs with (``[venice] aws_conn_id``)."""
    from airflow.configuration import conf

    value: Any = conf.get("venice", "aws_conn_id", fallback="aws_default")
    return str(value)

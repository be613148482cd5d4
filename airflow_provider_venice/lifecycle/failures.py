"""How Venice errors become Airflow failures: permanent ones fail at once, transient ones may retry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_venice.version_compat import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow_provider_venice.client import VeniceError


class VideoDeliveryError(AirflowException):
    """The video did not reach S3 intact; the Venice job was kept, so a retry can deliver it."""


def as_airflow_failure(error: VeniceError, note: str = "") -> AirflowException:
    """Map a Venice error to Airflow: permanent errors fail without retries, transient ones may retry."""
    message = f"{error}{note}"
    if error.retryable:
        return AirflowException(message)
    return AirflowFailException(message)


class DestinationTakenError(AirflowFailException):
    """Another writer created the S3 object first, and ``replace=False``: nothing was overwritten."""

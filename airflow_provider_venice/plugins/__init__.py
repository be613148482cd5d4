"""The Airflow UI plugin shipped with the provider: the Venice page (videos, spend, money at risk)."""

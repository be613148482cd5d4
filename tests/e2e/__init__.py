"""End-to-end tests: a real Airflow deployment (a package, so that its modules share the deployment)."""

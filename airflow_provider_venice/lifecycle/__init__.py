"""The job lifecycle: queue once, wait, deliver once, release; each rule in one place.

Operators, sensors, transfers and triggers call these modules; these modules call the hook and the
client, never back up. Nothing here is imported when a DAG file is parsed (the operators import it in
``execute``), so Airflow's parse loop pays for none of it.
"""

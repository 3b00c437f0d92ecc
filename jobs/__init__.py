"""Orchestration, by concern: ``cli`` (the command line; nothing imports it), ``stages``
(pipeline stages as functions of Settings), ``runs`` (bulk prediction runs and their
reports, no Celery) and ``queue`` (everything Celery)."""

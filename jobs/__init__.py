"""Entry points: the CLI now; Celery app and tasks alongside it."""

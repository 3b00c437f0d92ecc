"""Entry points and orchestration: the CLI, pipeline stages, prediction runs, the Celery
app and its tasks, reports."""

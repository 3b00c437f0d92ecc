"""Pure domain code: no network, no Celery."""

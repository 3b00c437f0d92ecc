"""The worker entry module: ``celery -A jobs.queue.worker worker -Q predict``.

Celery's command line imports an app by module name, so this is the one module that
builds an app at import time, from the process environment (``ANIGENRE_*``,
``ANIGENRE_CONFIG``). ``anigenre worker`` builds its app from the CLI's settings instead.
"""

from __future__ import annotations

import os

from anigenre.config import load_settings
from anigenre.jobs.queue.app import create_app

settings = load_settings(env=os.environ)
settings.data_dir.mkdir(parents=True, exist_ok=True)  # beat keeps its schedule file there
app = create_app(settings)

"""The Celery layer, and the only package that imports celery, kombu or redis: the app
factory, the tasks, publishing, the lost-chunk sweeper and its worker bootstep. The
worker entry module (``jobs.queue.worker``) is the only one that builds an app on import.
"""

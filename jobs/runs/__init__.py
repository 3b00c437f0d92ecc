"""Bulk prediction runs, with no Celery: plan -> chunks -> one Parquet part per chunk ->
finalise, and the status, index and reports read from those files.

Layout under the output dir::

    predictions/run_id=<id>/_plan.json       inputs (path, size, sha256) and chunk bounds
    predictions/run_id=<id>/part-00000.parquet  one per chunk, written atomically
    predictions/run_id=<id>/_queued.json     its chunks are on the broker (the sweeper watches)
    predictions/run_id=<id>/_failed.json     chunks the workers keep failing on, and why
    predictions/run_id=<id>/_manifest.json   written last; its presence marks a complete run

A chunk always writes the same file name, so redoing a chunk (a killed worker's message
delivered again, two workers racing) replaces rows and can never duplicate them. Files
whose names start with ``_`` are skipped by pyarrow.dataset and DuckDB readers.
"""

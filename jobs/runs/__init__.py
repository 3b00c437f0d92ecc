"""Bulk prediction runs, with no Celery: plan -> chunks -> one Parquet part per chunk ->
finalise, and the status, index and reports read from those files.

Layout under the output dir (names in :mod:`jobs.runs.layout`)::

    predictions/run_id=<id>/part-00000.parquet  one per chunk, written atomically: the
                                                only files in the predictions folder
    prediction-runs/_plan.lock          held while a run is planned (flock)
    prediction-runs/<id>/_plan.json     the header: model, chunk size, counts (planfile)
    prediction-runs/<id>/_chunks/<i>.json  chunk i's inputs (path, size, sha256)
    prediction-runs/<id>/_queued.json   its chunks are on the broker (the sweeper watches)
    prediction-runs/<id>/_failed.json   chunks the workers keep failing on, and why
    prediction-runs/<id>/_running.lock, _lease.json, _stalled.json   who runs it, and how
    prediction-runs/<id>/.part-*.tmp    a part being written, renamed into place
    prediction-runs/<id>/_manifest.json written last; its presence marks a complete run

A chunk always writes the same file name, so redoing a chunk (a killed worker's message
delivered again, two workers racing) replaces rows and can never duplicate them. The
predictions folder holds parts and nothing else, so pandas, pyarrow.dataset, DuckDB and
Polars read it as one hive-partitioned table at any moment, ``run_id`` included. Runs
written before the bookkeeping moved out are migrated on first touch (jobs.runs.legacy).

The output dir (and the inputs) may be an ``s3://`` prefix: every file goes through the
run's Store (``RunPlan.out``), a part is one object written whole, and the flocks give way
to a planning lock passed in and the run's lease (jobs.runs.live).
"""

"""The HTTP API (``anigenre serve``): FastAPI on uvicorn. Parsing and formatting only;
predictions come from one ``PosterModel`` per process, runs from jobs.service."""

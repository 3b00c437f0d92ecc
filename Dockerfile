# One image for every service: CLI, workers, beat and Flower differ only in their command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config config
COPY core core
COPY scraper scraper
COPY models models
COPY jobs jobs
RUN pip install --no-cache-dir '.[monitor]'
RUN useradd --create-home anigenre && mkdir -p /data && chown anigenre /data
USER anigenre
ENV ANIGENRE_DATA_DIR=/data
CMD ["anigenre", "--help"]

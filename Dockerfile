# One image for every service: CLI, workers, beat and Flower differ only in their command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first, from pyproject.toml alone, so a code change rebuilds only the layers
# below (TensorFlow alone is hundreds of MB). EXTRAS: monitor brings Flower, api the HTTP
# API (`anigenre serve`: FastAPI, uvicorn).
ARG EXTRAS=monitor,api
COPY pyproject.toml ./
RUN python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [d for e in sys.argv[1].split(',') if e for d in p['optional-dependencies'][e]]; \
print('\n'.join(p['dependencies'] + extras))" "$EXTRAS" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code: its dependencies are all in place, so nothing is resolved again.
COPY README.md ./
COPY config config
COPY core core
COPY scraper scraper
COPY models models
COPY jobs jobs
COPY anigenre anigenre
RUN pip install --no-deps .

# Not root. The folders the volumes mount on are created here, owned by that user, so a
# fresh named volume starts with the same owner.
RUN useradd --create-home --uid 10001 anigenre \
    && mkdir -p /data /cache /inbox \
    && chown anigenre /data /cache /inbox
USER anigenre
ENV ANIGENRE_DATA_DIR=/data
CMD ["anigenre", "--help"]

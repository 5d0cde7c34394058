# exsync: one image for every role (web, worker, beat, migrate); the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY cli ./cli
COPY core ./core
COPY devtools ./devtools
COPY models ./models
COPY providers ./providers
COPY webhooks ./webhooks
COPY worker ./worker
COPY migrations ./migrations
RUN pip install .

# Non-root: nothing here needs root, and Postgres (embedded by `exsync run`) will not run as root.
RUN useradd --create-home --uid 10001 exsync \
    && mkdir -p /data \
    && chown exsync:exsync /data
USER exsync
ENV EXSYNC_DATA_DIR=/data \
    EXSYNC_WEB_BIND=0.0.0.0:8000
VOLUME ["/data"]
EXPOSE 8000

# All-in-one (embedded Postgres and Redis under /data unless EXSYNC_DATABASE_URL/EXSYNC_REDIS_URL are
# set). docker-compose.yml runs the roles as separate services instead.
CMD ["exsync", "run"]

# The serviceorders engine: one image for every role (api, consume, project, db init, ...).
#   docker build -t serviceorders .
#   docker run --rm -p 8641:8641 -e SERVICEORDERS_API_KEYS=alice:admin:change-me serviceorders
# The default command serves the REST API and the projections on SQLite (in the working
# directory /var/lib/serviceorders) without Kafka; docker-compose.yml runs the production
# layout (PostgreSQL, Apache Kafka, separate api / consumer / projector containers).

# ---------------------------------------------------------------- build: wheels only
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# requirements.lock (bash .ci/lock) pins every runtime dependency: the image gets exactly the
# releases CI tested. pyproject's package-dir maps the top-level folders under `serviceorders.*`.
COPY pyproject.toml README.md LICENSE requirements.lock ./
COPY runtime/ runtime/
COPY support/ support/
COPY tmf/ tmf/
COPY storage/ storage/
COPY audit/ audit/
COPY notifications/ notifications/
COPY cli/ cli/
COPY domain/ domain/
COPY projections/ projections/
COPY consumers/ consumers/
COPY api/ api/
RUN pip wheel --constraint requirements.lock --wheel-dir /wheels .

# ---------------------------------------------------------------- runtime
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
COPY LICENSE /usr/share/doc/serviceorders/LICENSE
RUN pip install --no-index --find-links /wheels serviceorders && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --create-home \
        --home-dir /var/lib/serviceorders --shell /usr/sbin/nologin serviceorders
USER serviceorders
WORKDIR /var/lib/serviceorders
EXPOSE 8641
ENTRYPOINT ["serviceorders"]
# Listening on all interfaces needs API keys (SERVICEORDERS_API_KEYS or
# SERVICEORDERS_API_KEYS_FILE): without them `serve` refuses to start.
CMD ["serve", "--host", "0.0.0.0", "--no-kafka"]

# One image for every ADX role. The argument picks the role:
#   docker run adx-core api              the HTTP API (port 8080)
#   docker run adx-core worker tenants   a domain worker (HTTP probes and metrics on 8090)
#   docker run adx-core migrate          apply the database migrations, then exit
# Configuration comes from ADX_* environment variables (docs/architecture.md#configuration).
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz.

ARG PYTHON_IMAGE=python:3.11-slim

# Build wheels for the project and every dependency; pip's build backend and caches stay here.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY workers ./workers
COPY api ./api
COPY operator ./operator
COPY cli ./cli
RUN pip wheel --wheel-dir /wheels .

# The runtime: the installed package and nothing else from the build.
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ADX_API_HOST=0.0.0.0 \
    ADX_WORKER_HTTP_HOST=0.0.0.0 \
    ADX_OPERATOR_HTTP_HOST=0.0.0.0 \
    ADX_STORAGE_ROOT=/var/lib/adx/storage
# The wheels are bind-mounted from the builder, so they never become a layer of this image.
# Versions are pinned by the wheels the builder made, so DL3013 does not apply.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels adx-core
RUN groupadd --system --gid 10001 adx \
    && useradd --system --uid 10001 --gid adx --home-dir /home/adx --create-home \
       --shell /usr/sbin/nologin adx \
    && mkdir -p /var/lib/adx/storage \
    && chown -R adx:adx /var/lib/adx
WORKDIR /home/adx
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080 8090
ENTRYPOINT ["adx"]
CMD ["--help"]

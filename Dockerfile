# syntax=docker/dockerfile:1
# The gateway image: one image for every role (gateway, RQ workers, outbox relay, migrations), chosen by
# the command.  Multi-stage: the build stage makes a virtual environment from the locked versions; the
# runtime stage copies only that environment, runs as a fixed non-root user and writes nothing to its
# root file system (run it read-only: /tmp and the metrics folder are volumes, see docker-compose.yml
# and infra/k8s/).  Build: docker build -t records-gateway:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/gateway
# Dependencies first (their layer is reused until the lock changes), then the application itself.
COPY requirements/runtime.lock requirements/runtime.lock
RUN /opt/gateway/bin/pip install --no-compile -r requirements/runtime.lock
COPY pyproject.toml setup.cfg README.md ./
COPY gateway/ gateway/
RUN /opt/gateway/bin/pip install --no-compile --no-deps . \
    && /opt/gateway/bin/python -m compileall -q /opt/gateway/lib
COPY infra/gunicorn.conf.py /opt/gateway/etc/gunicorn.conf.py

FROM ${PYTHON_IMAGE} AS runtime
# Fixed ids so volumes and Kubernetes' runAsUser/fsGroup agree with the image.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin gateway
COPY --from=build /opt/gateway /opt/gateway
# Mount points for the writable volumes (tmpfs in compose, emptyDir in Kubernetes), owned by the user.
RUN install -d -o 10001 -g 10001 -m 0700 /run/metrics /tmp/gateway
ENV PATH=/opt/gateway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_ENV=production \
    GATEWAY_DATA_DIR=/tmp/gateway \
    PROMETHEUS_MULTIPROC_DIR=/run/metrics
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
# Liveness only (/healthz answers without touching a dependency); readiness is the orchestrator's
# probe of /readyz.  Python's own urllib: the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
# SIGTERM: gunicorn's (and `gateway worker`'s) warm shutdown; see infra/gunicorn.conf.py.
STOPSIGNAL SIGTERM
CMD ["gunicorn", "--config", "/opt/gateway/etc/gunicorn.conf.py", "--bind", "0.0.0.0:8000", "gateway.wsgi:app"]

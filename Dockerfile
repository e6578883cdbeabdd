# syntax=docker/dockerfile:1
# One image for every Surge role: `surge coordinator`, `surge worker`, `surge server`, `surge sync`.
# No Docker engine runs in CI, so this file is not built there; its install step is the pip
# install of the project that CI runs (`pip install .`), into a virtual environment.

ARG PYTHON_IMAGE=python:3.11-slim

# -- build: install Surge and its dependencies into /opt/venv ------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY common ./common
COPY coordinator ./coordinator
COPY workers ./workers
RUN /opt/venv/bin/pip install . \
    && /opt/venv/bin/surge --version

# -- runtime: the virtual environment and an unprivileged user, nothing else ----------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG SURGE_UID=10001
LABEL org.opencontainers.image.title="surge" \
      org.opencontainers.image.description="Cluster-scale file synchronization over a FASP-style UDP transport" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid ${SURGE_UID} surge \
    && useradd --system --uid ${SURGE_UID} --gid surge --home-dir /var/lib/surge --shell /usr/sbin/nologin surge \
    && mkdir -p /var/lib/surge /srv/surge /data /etc/surge \
    && chown surge:surge /var/lib/surge /srv/surge /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/surge \
    SURGE_HEALTH_PORT=9100
USER ${SURGE_UID}:${SURGE_UID}
WORKDIR /var/lib/surge
# Every long-running role listens on a TCP port: the metrics port (coordinator, worker) or the SSH
# port (server). SURGE_HEALTH_PORT names the one to probe; a connection is enough (it proves the
# process is up and serving without logging a request per probe).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, socket; socket.create_connection(('127.0.0.1', int(os.environ['SURGE_HEALTH_PORT'])), 3).close()"]
EXPOSE 9100 33001/tcp 33001-33100/udp
ENTRYPOINT ["surge"]
CMD ["--help"]

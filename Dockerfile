# The office server image: hamletnet-server with the [server] extra and nothing more.
# No secret is in the image: the admin token and InfluxDB password come from the environment
# (docker-compose.yml), the settings file is mounted at /etc/hamletnet/server.yaml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A fixed numeric id, so a runtime can check "not root" without reading /etc/passwd.
RUN groupadd --system --gid 10001 hamletnet \
    && useradd --system --uid 10001 --gid hamletnet --home-dir /var/lib/hamletnet \
       --shell /usr/sbin/nologin hamletnet \
    && install -d -o hamletnet -g hamletnet -m 0700 /var/lib/hamletnet

# Only what the package needs to build: sources, not the checkout (.dockerignore keeps .venv,
# var/ and .env out of the build context as well).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY probes ./probes
COPY collector ./collector
COPY server ./server
RUN pip install ".[server]" && rm -rf /src

# The example settings as the default; docker-compose.yml mounts the office's own file here.
COPY config/server.example.yaml /etc/hamletnet/server.yaml

USER hamletnet
WORKDIR /var/lib/hamletnet
ENV HAMLETNET_DATA_DIR=/var/lib/hamletnet \
    HAMLETNET_LISTEN_HOST=0.0.0.0 \
    HAMLETNET_LISTEN_PORT=8080
VOLUME ["/var/lib/hamletnet"]
EXPOSE 8080
# /healthz is 503 while storage is down, writes fail or the disk is full: urlopen raises.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
CMD ["hamletnet-server", "run", "--config", "/etc/hamletnet/server.yaml"]

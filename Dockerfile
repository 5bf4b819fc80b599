# The office server image: hamletnet-server with the [server] extra.
FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /var/lib/hamletnet hamletnet
WORKDIR /opt/hamletnet
COPY pyproject.toml README.md ./
COPY probes ./probes
COPY collector ./collector
COPY server ./server
COPY config ./config
RUN pip install --no-cache-dir ".[server]"
USER hamletnet
ENV HAMLETNET_DATA_DIR=/var/lib/hamletnet HAMLETNET_LISTEN_HOST=0.0.0.0
EXPOSE 8080
HEALTHCHECK CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
CMD ["hamletnet-server", "run", "--config", "/opt/hamletnet/config/server.example.yaml"]

# offerd's image: the wheel built from this folder (its gRPC code generated from protos/ by the
# build), installed into a slim Python with nothing else. docs/operations.md, "Deploying".
#   docker build -t offerd:0.1.0 .
#   docker run --rm -p 127.0.0.1:50051:50051 -v offerd-data:/data --stop-timeout 20 offerd:0.1.0
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
COPY --from=build /wheels /wheels
RUN python -m venv /opt/offerd \
    && /opt/offerd/bin/pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home offerd \
    && mkdir /data && chown 10001:10001 /data
ENV PATH=/opt/offerd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    OFFERD_LISTEN=0.0.0.0:50051 \
    OFFERD_METRICS=0.0.0.0:9090 \
    OFFERD_DATA=/data \
    OFFERD_LOG_JSON=1
# numeric, so Kubernetes' runAsNonRoot can check it
USER 10001:10001
VOLUME ["/data"]
# gRPC (decisions, admin, health, reflection), Prometheus metrics
EXPOSE 50051 9090
# SIGTERM drains: health NOT_SERVING at once, calls served for OFFERD_DRAIN (3s), then up to
# OFFERD_GRACE (10s) for calls in flight: stop with a timeout above both (docker's is 10s)
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["offerd", "health", "--server", "127.0.0.1:50051"]
ENTRYPOINT ["offerd"]
CMD ["serve"]

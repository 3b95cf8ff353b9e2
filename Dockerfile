# syntax=docker/dockerfile:1
#
# One image for the whole suite: the five gRPC services and the four vendor-API sandboxes.
# The command picks the member, for example:
#
#   docker build -t syncsuite:local .
#   docker run --rm syncsuite:local python -m services.pricing
#   docker run --rm syncsuite:local python -m services.pricing.sandbox --host 0.0.0.0 --port 8092
#
# docker-compose.yml runs all of them. Stages:
#   base     python:3.11-slim with the settings every stage shares
#   deps     a venv with the runtime dependencies of pyproject.toml, pinned by requirements.lock
#   codegen  a separate venv with the code generators (grpcio-tools, mypy-protobuf: part of the
#            `dev` extra), which turns protos/ into gen/; none of it reaches the final image
#   runtime  the venv, the code and gen/, run as an unprivileged user
#
# No secret is baked in: credentials come from the environment when a container starts.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore


FROM base AS deps
WORKDIR /src
COPY pyproject.toml requirements.lock ./
# Only the third-party dependencies go into the venv: the code itself runs from /app (on
# PYTHONPATH), so its migrations and data files are read from the same tree as in development.
# The list is read from pyproject.toml, the versions from the lock; this layer is rebuilt only
# when one of those two files changes.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/venv \
 && python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt \
 && /opt/venv/bin/pip install -c requirements.lock -r /tmp/requirements.txt \
 && /opt/venv/bin/pip check


FROM base AS codegen
WORKDIR /src
COPY requirements.lock ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/codegen \
 && /opt/codegen/bin/pip install -c requirements.lock grpcio-tools mypy-protobuf
COPY protos ./protos
# The same command as `make gen`: code lands where its import path equals the proto package.
# The protoc-gen-mypy plugins are found on PATH.
RUN mkdir gen \
 && PATH="/opt/codegen/bin:$PATH" python -m grpc_tools.protoc -Iprotos \
      --python_out=gen --grpc_python_out=gen --mypy_out=gen --mypy_grpc_out=gen \
      $(find protos -name '*.proto')


FROM base AS runtime
LABEL org.opencontainers.image.title="syncsuite" \
      org.opencontainers.image.description="syncsuite gRPC services and vendor-API sandboxes"
RUN groupadd --system --gid 10001 syncsuite \
 && useradd --system --uid 10001 --gid syncsuite --create-home --home-dir /home/syncsuite \
      --shell /usr/sbin/nologin syncsuite
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY --from=codegen /src/gen ./gen
COPY shared ./shared
COPY services ./services
# Compiled once here: the code is owned by root and read-only for the user that runs it.
RUN python -m compileall -q /app/shared /app/services /app/gen
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONPATH="/app:/app/gen" \
    SYNCSUITE_HOST=0.0.0.0 \
    SYNCSUITE_LOG_FORMAT=json
USER 10001:10001
# gRPC 50051-50055, Prometheus metrics 51051-51055, sandboxes 8091-8094.
EXPOSE 50051 50052 50053 50054 50055 51051 51052 51053 51054 51055 8091 8092 8093 8094
# No HEALTHCHECK here: the port differs per member, so docker-compose.yml defines one for each.
CMD ["python", "-m", "services.catalog"]

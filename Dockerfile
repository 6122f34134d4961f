# trainyard's image, for every service in docker-compose.yml: web (gunicorn), worker (Celery),
# migrate (one-shot) and flower. The compose command picks the role; the default serves the web app.
# Plain Dockerfile syntax only (no heredoc, no `# syntax=` line): it builds with or without
# BuildKit, and behind a registry mirror. Health checks are per service, in docker-compose.yml.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# 1. The dependencies: a virtualenv with exactly requirements.lock (`make lock`), every package a
#    wheel checked against its hash, so no compiler is needed. Only the lock is copied first:
#    Docker caches a COPY by content, so a code edit reuses this stage and TensorFlow is installed
#    again only when the lock changes.
FROM ${PYTHON_IMAGE} AS dependencies
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INPUT=1
RUN python -m venv /opt/trainyard
ENV PATH=/opt/trainyard/bin:$PATH
COPY requirements.lock /tmp/requirements.lock
# TensorFlow's C++ headers (about 290 MB) serve only to compile custom ops; trainyard has none.
RUN pip install --require-hashes --no-deps --only-binary :all: --requirement /tmp/requirements.lock \
 && rm -rf /opt/trainyard/lib/python3.11/site-packages/tensorflow/include

# 2. trainyard itself, as a wheel, built with the locked setuptools (TensorFlow needs it anyway).
FROM dependencies AS builder
WORKDIR /src
COPY . .
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# 3. The runtime: the virtualenv, then trainyard's small layer on top (a code change rebuilds and
#    ships only that layer), run by an unprivileged user.
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/trainyard/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TRAINYARD_HOME=/var/lib/trainyard
RUN groupadd --gid 10001 trainyard \
 && useradd --uid 10001 --gid trainyard --home-dir /var/lib/trainyard --create-home \
      --shell /usr/sbin/nologin trainyard
COPY --from=dependencies /opt/trainyard /opt/trainyard
COPY --from=builder /wheels /tmp/wheels
RUN PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    pip install --no-deps --no-index /tmp/wheels/*.whl \
 && pip check \
 && rm -rf /tmp/wheels
USER 10001:10001
WORKDIR /var/lib/trainyard
CMD ["trainyard", "web", "--host", "0.0.0.0", "--port", "8000"]

# syntax=docker/dockerfile:1
# trainyard's image, for every service in docker-compose.yml: web (gunicorn), worker (Celery),
# migrate (one-shot) and flower. The command picks the role; the default serves the web app.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# 1. The dependency list alone, read from pyproject.toml. The builder copies only this file, and
#    Docker caches a COPY by content: editing the code or pyproject's tool settings does not
#    reinstall TensorFlow.
FROM ${PYTHON_IMAGE} AS requirements
ARG EXTRAS="flower"
WORKDIR /src
COPY pyproject.toml ./
RUN python - <<'EOF'
import os, tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
requirements = list(project["dependencies"])
for extra in os.environ.get("EXTRAS", "").split(","):
    if extra.strip():
        requirements += project["optional-dependencies"][extra.strip()]
open("requirements.txt", "w").write("\n".join(requirements) + "\n")
EOF

# 2. Build everything into a virtualenv; compilers stay in this stage.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install --yes --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/trainyard
ENV PATH=/opt/trainyard/bin:$PATH
COPY --from=requirements /src/requirements.txt /tmp/requirements.txt
RUN pip install --requirement /tmp/requirements.txt
WORKDIR /src
COPY . .
RUN pip install --no-deps . && pip check

# 3. The runtime: the virtualenv and nothing else, run by an unprivileged user.
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/trainyard/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TRAINYARD_HOME=/var/lib/trainyard
RUN groupadd --system --gid 10001 trainyard \
 && useradd --system --uid 10001 --gid trainyard --home-dir /var/lib/trainyard --create-home \
      --shell /usr/sbin/nologin trainyard
COPY --from=builder /opt/trainyard /opt/trainyard
USER trainyard
WORKDIR /var/lib/trainyard
EXPOSE 8000
# The web's health; docker-compose.yml gives the worker its own check (a Celery ping).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4)"]
CMD ["trainyard", "web", "--host", "0.0.0.0", "--port", "8000"]

# clipforge container image. Thin on purpose: every install step is scripts/install.sh, the script that
# `make install` and CI run, so what the image gets is what the test suite exercises.
#
#   docker build -t clipforge:0.1.0 .                                    # CPU: api replicas, preview workers
#   docker build -t clipforge:0.1.0-cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04 --build-arg PROFILE=gpu .   # ltx2 workers
#
# The torch wheel brings its own CUDA libraries; the CUDA base image brings what the NVIDIA container
# runtime needs to hand the driver to the container (NVIDIA_DRIVER_CAPABILITIES=compute,utility). It has
# no Python: the script installs Ubuntu's python3 and python3-venv first.
# The same image runs every role: `clipforge serve --workers 0`, `clipforge worker`, `clipforge migrate`.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# image: server + PostgreSQL + S3, no torch; gpu: adds torch and diffusers for the ltx2 engine.
ARG PROFILE=image
# Optional wheel index for torch in the gpu profile, e.g. https://download.pytorch.org/whl/cu128
ARG TORCH_INDEX_URL=

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/clipforge/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY scripts/install.sh scripts/install.sh
COPY src src
RUN bash scripts/install.sh --no-editable "$PROFILE" /opt/clipforge \
    && rm -rf /var/lib/apt/lists/* /root/.cache /src

# An unprivileged user; HOME and CLIPFORGE_HOME in /data, the one writable place (mount a volume there,
# or an emptyDir with a read-only root filesystem).
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /data clipforge \
    && mkdir -p /data && chown 10001:10001 /data
USER 10001:10001
WORKDIR /data
ENV HOME=/data CLIPFORGE_HOME=/data
EXPOSE 8000
CMD ["clipforge", "serve", "--host", "0.0.0.0", "--port", "8000"]

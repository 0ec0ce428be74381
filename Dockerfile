# streammat in a container. One file for CPU and GPU hosts; the build arguments pick the base
# image, the onnxruntime extra and the torch build (exact commands: README, "Docker").
#
#   CPU: docker build -t streammat .
#   GPU: docker build -t streammat:gpu --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#          --build-arg EXTRAS=gpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# Files in docker/local/ (ignored by git) are used when present: a torch wheel is installed
# instead of one from TORCH_INDEX_URL, and a CA bundle there can be named by PIP_CERT for
# builds behind a TLS-inspecting proxy. Neither reaches the final image.
ARG BASE=python:3.11-slim

# ---- build: a virtual environment with streammat, its model, and nothing else ----
FROM ${BASE} AS build
ARG EXTRAS=cpu
ARG TORCH=torch==2.13.0
# PyPI's Linux torch wheels are CUDA builds of several GB; the CPU index has the small ones.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Read by pip from the environment; unset unless given (--build-arg PIP_CERT=/tmp/local/ca-certificates.crt).
ARG PIP_CERT
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 REMBG_HOME=/models PATH=/opt/streammat/bin:$PATH \
    NUMBA_CPU_NAME=generic NUMBA_CACHE_DIR=/opt/streammat/numba-cache
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Bases without Python (plain Debian, the CUDA runtime images) take their distribution's
# python3; the versions follow the base, so they are not pinned here.
# hadolint ignore=DL3008
RUN if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/streammat

COPY docker/local/ /tmp/local/
# The version is pinned in the TORCH argument.
# hadolint ignore=DL3013
RUN if compgen -G "/tmp/local/torch-*.whl" > /dev/null; then \
        pip install --no-cache-dir --find-links /tmp/local "${TORCH}"; \
    else \
        pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "${TORCH}"; \
    fi

WORKDIR /src
COPY pyproject.toml README.md ./
COPY streammat ./streammat
# torch is already there and satisfies the project's requirement, so pip keeps that build;
# the project's own requirements are ranges by design.
# The model is pulled now, so the image works offline.
# Importing rembg compiles pymatting's numba functions: minutes of CPU on every fresh
# container unless their cache ships in the image. NUMBA_CPU_NAME=generic makes that cache
# valid on any x86-64 CPU; numba uses a cache folder only where it can write, so it is
# left writable for whichever uid runs the container.
# torch's C++ headers and CMake files serve only compiling extensions against it, which
# this image has no compiler for.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[${EXTRAS}]" \
    && streammat models pull selfie \
    && streammat models \
    && chmod -R a+rX /models \
    && python3 -c "import rembg" \
    && chmod -R a+rwX "${NUMBA_CACHE_DIR}" \
    && rm -rf /opt/streammat/lib/python3*/site-packages/torch/include \
              /opt/streammat/lib/python3*/site-packages/torch/share/cmake

# ---- runtime: the base, tini, the environment and the model ----
FROM ${BASE} AS runtime
ARG UID=10001
ENV DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# tini as PID 1 passes SIGTERM on to streammat (a Python PID 1 would ignore it) and reaps
# children. Python from apt only where the base has none, as in the build stage.
# hadolint ignore=DL3008
RUN packages=(tini); \
    command -v python3 > /dev/null || packages+=(python3); \
    apt-get update \
    && apt-get install -y --no-install-recommends "${packages[@]}" \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
    && useradd --uid "${UID}" --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin streammat \
    && install -d -o "${UID}" -g "${UID}" /data /config

COPY --from=build /opt/streammat /opt/streammat
COPY --from=build /models /models
COPY configs/docker-serve.yaml /config/serve.yaml

ENV PATH=/opt/streammat/bin:$PATH \
    REMBG_HOME=/models \
    HOME=/tmp \
    NUMBA_CPU_NAME=generic \
    NUMBA_CACHE_DIR=/opt/streammat/numba-cache \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STREAMMAT_HEALTHZ=http://127.0.0.1:9100/healthz

# A fixed numeric uid, so hosts and orchestrators can check it is not root and grant it
# a volume; `docker run --user "$(id -u):$(id -g)"` runs it as the host user instead.
USER ${UID}:${UID}
WORKDIR /data
EXPOSE 9100
# Health of `serve`; the URL follows the config's http: setting through STREAMMAT_HEALTHZ.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['STREAMMAT_HEALTHZ'], timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--", "streammat"]
CMD ["serve", "/config/serve.yaml"]

# streammat on CPU. Build:   docker build -t streammat .
# Run:     docker run --rm -v "$PWD:/data" streammat process /data/in.mp4 -o /data/out.mov
# For CUDA, build FROM an nvidia/cuda runtime image with EXTRAS=gpu and a CUDA build of torch
# (pass your torch wheel index through the PIP_EXTRA_INDEX_URL build argument).
FROM python:3.11-slim

ARG EXTRAS=cpu
ARG TORCH=torch==2.13.0
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REMBG_HOME=/models PYTHONUNBUFFERED=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streammat ./streammat
COPY configs ./configs
RUN pip install "${TORCH}" ".[${EXTRAS}]" \
 && streammat models pull selfie \
 && useradd --create-home streammat && chown -R streammat /models

USER streammat
ENTRYPOINT ["streammat"]
CMD ["--help"]

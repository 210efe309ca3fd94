# No Code ML GPU image: the job worker (default entrypoint) and, in docker-compose, the app.
#
#   docker build -t nocode-ml:latest .
#   docker run --gpus all -e AWS_ACCESS_KEY_ID=... -e AWS_SECRET_ACCESS_KEY=... \
#       nocode-ml:latest s3://bucket/prefix/jobs/<job id>        # run one job
#   docker run --gpus all ... nocode-ml:latest --serve           # worker service
#
# The base image must carry the torch the project pins (pyproject.toml: torch==2.14.0, a CUDA
# 13.0 build), so pip keeps it instead of downloading another 2 GB; override PYTORCH_IMAGE
# together with that pin.
ARG PYTORCH_IMAGE=pytorch/pytorch:2.14.0-cuda13.0-cudnn9-runtime
FROM ${PYTORCH_IMAGE}

ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NOCODE_ML_WEIGHTS_DIR=/opt/nocode-ml/weights \
    NOCODE_ML_DATA_DIR=/data \
    TORCH_HOME=/tmp/torch-cache \
    HF_HOME=/tmp/hf-cache \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /opt/nocode-ml/src

# 1. Dependencies only (cached until pyproject.toml changes): install the project from empty
#    package folders, then remove it again, keeping its dependencies.
COPY pyproject.toml README.md ./
RUN mkdir -p pipelines gpu_backend streamlit_app nocode_ml \
    && touch pipelines/__init__.py gpu_backend/__init__.py streamlit_app/__init__.py \
             nocode_ml/__init__.py \
    && pip install . \
    && pip uninstall -y nocode-ml \
    && rm -rf pipelines gpu_backend streamlit_app nocode_ml build *.egg-info

# 2. Pretrained weights (COCO Mask R-CNN, ImageNet ConvNeXt tiny/atto), downloaded once at build
#    time into NOCODE_ML_WEIGHTS_DIR; only the download module is copied so that code changes
#    do not download them again. Jobs never touch the internet.
COPY pipelines/__init__.py pipelines/errors.py pipelines/fileio.py /tmp/weights-src/pipelines/
COPY gpu_backend/__init__.py gpu_backend/weights.py /tmp/weights-src/gpu_backend/
RUN cd /tmp/weights-src \
    && python -m gpu_backend.weights download "$NOCODE_ML_WEIGHTS_DIR" \
    && rm -rf /tmp/weights-src /tmp/torch-cache /tmp/hf-cache \
    && chmod -R a+rX /opt/nocode-ml/weights

# 3. The project itself; then each weights file is loaded into its engine's network, as a
#    training would load it.
COPY pipelines ./pipelines
COPY gpu_backend ./gpu_backend
COPY streamlit_app ./streamlit_app
COPY nocode_ml ./nocode_ml
RUN pip install --no-deps . \
    && python -m gpu_backend.weights check "$NOCODE_ML_WEIGHTS_DIR" \
    && python -c "import gpu_backend.worker, gpu_backend.launchers, pipelines.tasks"

# Run as an unprivileged user; /data holds the local store, slot locks and worker logs.
RUN useradd --create-home --uid 1000 nocode \
    && mkdir -p /data \
    && chown nocode:nocode /data
USER nocode
WORKDIR /home/nocode
VOLUME ["/data"]
EXPOSE 8501

# AWS Batch passes the job URI as the command; docker-compose's worker passes --serve.
ENTRYPOINT ["python", "-m", "gpu_backend.worker"]
CMD ["--help"]

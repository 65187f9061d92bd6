# AdapterLab: the web app with an embedded worker (`serve`, the default) or a worker alone (`worker`).
#
#   docker build -t adapterlab .
#   docker run --gpus all -p 127.0.0.1:7860:7860 -v adapterlab-data:/data adapterlab
#   docker run --gpus all -v adapterlab-data:/data adapterlab worker          # a worker alone
#
# The job database, uploads, adapters and the Hugging Face cache live in /data: keep it on a volume.
# See docs/webapp.md.

FROM python:3.11-slim

# torch first, on its own layer: PyPI's Linux wheel is the CUDA build (the NVIDIA libraries come as wheels; the
# driver comes from the host through the NVIDIA container toolkit). Point TORCH_INDEX_URL at another index, e.g.
# https://download.pytorch.org/whl/cu126, to pick a CUDA version, or .../whl/cpu for a small CPU-only image.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /opt/adapterlab
COPY pyproject.toml README.md ./
COPY engine engine
COPY worker worker
COPY app app
RUN pip install . \
    && useradd --create-home --uid 1000 adapterlab \
    && mkdir -p /data \
    && chown adapterlab:adapterlab /data

# Listen on every interface inside the container (publish the port on 127.0.0.1, or set
# ADAPTERLAB_USERNAME and ADAPTERLAB_PASSWORD, before exposing it further).
ENV ADAPTERLAB_HOME=/data \
    HF_HOME=/data/huggingface \
    ADAPTERLAB_HOST=0.0.0.0 \
    ADAPTERLAB_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    TOKENIZERS_PARALLELISM=false \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER adapterlab
VOLUME ["/data"]
EXPOSE 7860
ENTRYPOINT ["adapterlab"]
CMD ["serve"]

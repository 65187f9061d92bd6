# AdapterLab: the web app with an embedded worker (`serve`, the default) or a worker alone (`worker`).
#
#   docker build -t adapterlab .                                                            # CUDA torch (GPU)
#   docker build -t adapterlab:cpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .   # CPU only
#
#   docker run --gpus all -p 127.0.0.1:7860:7860 -e ADAPTERLAB_ALLOW_ANONYMOUS=1 -v adapterlab-data:/data adapterlab
#   docker run -p 127.0.0.1:7860:7860 -e ADAPTERLAB_ALLOW_ANONYMOUS=1 -v adapterlab-data:/data adapterlab:cpu
#   docker run --gpus all -v adapterlab-data:/data adapterlab worker                     # a worker alone
#
# Login: inside the container the app listens on 0.0.0.0 so that its port can be published, so `serve` refuses to
# start without a login (-e ADAPTERLAB_USERNAME=... -e ADAPTERLAB_PASSWORD=...) unless -e ADAPTERLAB_ALLOW_ANONYMOUS=1
# says that the port is published on the host's 127.0.0.1 only, as above. ADAPTERLAB_CONTAINER=1 (set below) makes
# its messages speak of these docker run options.
# Data: the job database, uploads, adapters and the Hugging Face cache live in /data: keep it on a named volume. A
# bind-mounted host folder must be writable by uid 1000 (sudo chown -R 1000:1000 HOSTDIR); Docker creates a missing
# one as root, and `serve` then stops and says so.
# Mirrors: pip's own settings apply (--build-arg PIP_INDEX_URL=...); TORCH_INDEX_URL, when given, is for torch only.
# See docs/webapp.md.

FROM python:3.11-slim

# torch first, on its own layer. pip's index by default: PyPI's Linux wheel is the CUDA build (the NVIDIA libraries
# come as wheels; the driver comes from the host through the NVIDIA container toolkit). TORCH_INDEX_URL picks
# another build, e.g. https://download.pytorch.org/whl/cu126 for a CUDA version, or .../whl/cpu for a small image.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN pip install "torch==${TORCH_VERSION}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}

# The other dependencies, read from pyproject.toml, on their own layer: a change to the code reinstalls only
# AdapterLab itself.
WORKDIR /opt/adapterlab
COPY pyproject.toml ./
RUN python -c "import tomllib as t; print(*t.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY engine engine
COPY worker worker
COPY app app
RUN pip install --no-deps . \
    && rm -rf build ./*.egg-info \
    && useradd --create-home --uid 1000 adapterlab \
    && mkdir -p /data \
    && chown adapterlab:adapterlab /data

ENV ADAPTERLAB_HOME=/data \
    HF_HOME=/data/huggingface \
    ADAPTERLAB_HOST=0.0.0.0 \
    ADAPTERLAB_PORT=7860 \
    ADAPTERLAB_CONTAINER=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    TOKENIZERS_PARALLELISM=false \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER adapterlab
VOLUME ["/data"]
EXPOSE 7860
ENTRYPOINT ["adapterlab"]
CMD ["serve"]

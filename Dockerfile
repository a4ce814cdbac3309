# bandit-serve image for KubeRay (cluster/rayservice*.yaml). The base image must match the Ray
# version pinned in constraints.txt (ray==2.60.0) and the Python of the venv (3.11): KubeRay
# starts Ray from this image on the head and every worker, so all pods run the same code.
#
#   docker build -t bandit-serve:0.1.0 .
#
# CPU image. torch comes from PyTorch's CPU wheel index (same version as constraints.txt, with
# the +cpu local tag, which `torch==X` in the constraints accepts), so no CUDA libraries are
# pulled in.
FROM rayproject/ray:2.60.0-py311

WORKDIR /home/ray/bandit-serve-src

# Dependencies first (cached across source changes): the CPU torch wheel, then the project's
# pinned dependency set.
COPY --chown=ray:users constraints.txt ./
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        "$(grep -E '^torch==' constraints.txt)"

COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users bandits ./bandits
COPY --chown=ray:users serve_app ./serve_app
COPY --chown=ray:users configs ./configs
# `postgres` extra: psycopg for cluster/rayservice-production.yaml (store_url postgresql+psycopg).
RUN pip install --no-cache-dir -c constraints.txt '.[postgres]' \
    && python -c "import ray, serve_app.app; assert ray.__version__ == '2.60.0', ray.__version__"

# The demo models (used by configs/local.yaml -> cluster/rayservice.yaml), trained at build time
# into the data directory. The pods mount an emptyDir over this path; an init container (which
# sees this image's copy, not the volume) copies it into the volume first. MLflow stores absolute
# artifact paths, so the models must stay at this path.
ENV BANDIT_SERVE_HOME=/home/ray/bandit-serve \
    RAY_USAGE_STATS_ENABLED=0
RUN bandit-serve demo-models

WORKDIR /home/ray

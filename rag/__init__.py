"""Grounded question answering over a folder of documents.

Importing the package pins the offline switches before any model library loads: no
library may try to reach a model hub or send telemetry. It also claims the root logger at
WARNING, because a LlamaIndex reader module calls logging.basicConfig(level=INFO) on import.
"""

import logging
import os

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
for _noisy in ("bm25s", "httpx", "chromadb", "matplotlib"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}.items():
    os.environ.setdefault(_name, _value)

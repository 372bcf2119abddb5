"""The digits MLP, its train/eval steps, and where trained models live.

Data comes from `jobs.data` (scikit-learn digits, fixed held-out split). The model
takes raw 0..16 pixels and scales them itself, so infer and serve clients send the
data as scikit-learn has it.

Accuracy bar: the MLP reaches >= 0.90 held-out accuracy (ACCURACY_BAR) within a
few epochs on CPU; tests hold training to it.

Model location contract: training stores Ray Train checkpoints (a directory with
`model.pt` state dict and `meta.json`) under `<storage_path>/<model_name>/runs/`
and then writes the pointer `<storage_path>/<model_name>/latest.json`:
`{"checkpoint": <dir path or URI>, "metrics": {...}, "run_name": ...}`. Infer and
serve resolve the model only through that pointer. Paths go through pyarrow.fs,
so a local directory and `s3://bucket/prefix` both work.
"""
from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs
import torch
from torch import nn

from jobs.common import join_uri, normalize_storage_path
from jobs.data import NUM_CLASSES, NUM_FEATURES, PIXEL_MAX

ACCURACY_BAR = 0.90

MODEL_FILE = "model.pt"
OPTIMIZER_FILE = "optimizer.pt"
META_FILE = "meta.json"
POINTER_FILE = "latest.json"


class DigitsMLP(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.net = nn.Sequential(
            nn.Linear(NUM_FEATURES, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / PIXEL_MAX)


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: np.ndarray, y: np.ndarray,
                batch_size: int, seed: int, device: torch.device) -> float:
    """One pass over (x, y) in a seeded shuffled order; returns the mean loss."""
    model.train()
    order = np.random.default_rng(seed).permutation(len(x))
    loss_fn = nn.CrossEntropyLoss()
    total, batches = 0.0, 0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        xb = torch.from_numpy(x[idx]).to(device)
        yb = torch.from_numpy(y[idx]).to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += float(loss.item())
        batches += 1
    return total / max(batches, 1)


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray, device: torch.device | None = None) -> np.ndarray:
    model.eval()
    device = device or torch.device("cpu")
    # A copy: Ray Data hands out read-only views, which torch warns about.
    logits = model(torch.tensor(np.asarray(x), dtype=torch.float32, device=device))
    return torch.softmax(logits, dim=1).cpu().numpy()


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device | None = None) -> float:
    return float((predict_proba(model, x, device).argmax(axis=1) == y).mean())


def save_checkpoint(directory: Path, model: DigitsMLP, optimizer: torch.optim.Optimizer | None,
                    meta: Mapping[str, Any]) -> None:
    """Write a checkpoint directory; `hidden_size` goes into meta so loaders need no config."""
    torch.save(model.state_dict(), directory / MODEL_FILE)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), directory / OPTIMIZER_FILE)
    (directory / META_FILE).write_text(json.dumps({**meta, "hidden_size": model.hidden_size}))


def read_checkpoint_meta(directory: Path) -> dict[str, Any]:
    return json.loads((directory / META_FILE).read_text())


def restore_training_state(directory: Path, model: DigitsMLP, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load model and optimizer state saved by `save_checkpoint`; returns its meta."""
    model.load_state_dict(torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True))
    optimizer.load_state_dict(torch.load(directory / OPTIMIZER_FILE, map_location="cpu", weights_only=True))
    return read_checkpoint_meta(directory)


def _open(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    return pyarrow.fs.FileSystem.from_uri(normalize_storage_path(uri))


def read_bytes(uri: str) -> bytes:
    fs, path = _open(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write via a temp name then move, so readers never see a half-written file."""
    fs, path = _open(uri)
    fs.create_dir(os.path.dirname(path), recursive=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with fs.open_output_stream(tmp) as stream:
        stream.write(data)
    fs.move(tmp, path)


def filesystem_uri(fs: pyarrow.fs.FileSystem, path: str) -> str:
    """Turn Ray's (filesystem, path) pair for a checkpoint back into one string."""
    if isinstance(fs, pyarrow.fs.LocalFileSystem):
        return path
    return f"{fs.type_name}://{path}"


def pointer_uri(storage_path: str, model_name: str) -> str:
    return join_uri(normalize_storage_path(storage_path), model_name, POINTER_FILE)


def write_pointer(storage_path: str, model_name: str, pointer: Mapping[str, Any]) -> str:
    uri = pointer_uri(storage_path, model_name)
    write_bytes(uri, json.dumps(dict(pointer), indent=2, sort_keys=True).encode())
    return uri


def read_pointer(storage_path: str, model_name: str) -> dict[str, Any]:
    uri = pointer_uri(storage_path, model_name)
    try:
        pointer = json.loads(read_bytes(uri))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no trained model {model_name!r}: {uri} does not exist; run jobs.train first") from None
    if not isinstance(pointer, dict) or not isinstance(pointer.get("checkpoint"), str):
        raise ValueError(f"{uri} is not a model pointer: {pointer!r}")
    return pointer


def load_model(checkpoint_uri: str, device: torch.device | None = None) -> DigitsMLP:
    """An eval-mode model from a checkpoint directory, local or remote."""
    meta = json.loads(read_bytes(join_uri(checkpoint_uri, META_FILE)))
    state = torch.load(io.BytesIO(read_bytes(join_uri(checkpoint_uri, MODEL_FILE))),
                       map_location=device or "cpu", weights_only=True)
    model = DigitsMLP(int(meta["hidden_size"]))
    model.load_state_dict(state)
    return model.to(device or torch.device("cpu")).eval()

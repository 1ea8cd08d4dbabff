"""intformer.model.reference: the float64 forward of the real model."""

import numpy as np

from intformer.model import reference


def test_padding_does_not_change_embeddings(minilm):
    texts = ["A man is playing a guitar.", "Hi.", "The weather is nice today in the park."]
    together = minilm.reference(texts)
    alone = np.concatenate([minilm.reference([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0)


def test_similar_sentences_are_closer(minilm):
    """A wrongly loaded tensor (transposed, misnamed) destroys this ranking."""
    e = minilm.reference(["A man is playing a guitar.", "Someone plays the guitar.",
                          "The stock market fell sharply today.", "Shares dropped on Monday."])
    sim = e @ e.T
    assert sim[0, 1] > 0.5 and sim[2, 3] > 0.4
    assert max(sim[0, 2], sim[0, 3], sim[1, 2], sim[1, 3]) < 0.2


def test_layernorm_and_gelu():
    x = np.random.default_rng(0).normal(0, 3, (4, 10))
    y = reference.layernorm(x, np.ones(10), np.zeros(10), 0.0)
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.std(-1), 1, atol=1e-12)
    np.testing.assert_allclose(reference.gelu(np.array([0.0, 1.0, -1.0])),
                               [0.0, 0.8413447460685429, -0.15865525393145707], rtol=1e-12)

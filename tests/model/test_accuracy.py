"""End to end: integer embeddings of the real model against its float64 reference, on
evaluation sentences never used for calibration."""

import numpy as np

from intformer.model.sentences import CALIBRATION, EVALUATION

#: Eight evaluation sentences (5 to 20 tokens); the bench measures all of them with the full
#: calibration set. Budgets a broken op (a wrong scale, a lost mask, a bad rounding) fails.
TEXTS = [EVALUATION[i] for i in (0, 2, 6, 9, 13, 21, 30, 31)]


def test_sets_are_apart():
    assert not set(CALIBRATION) & set(EVALUATION)
    assert len(EVALUATION) >= 32


def test_integer_matches_float(quantized):
    e = quantized.run(TEXTS)
    r = quantized.reference(TEXTS)
    cos = (e * r).sum(axis=1)
    # measured 0.9976 and 0.9950 (the bench's targets, over 37 sentences: 0.995 and 0.99); with
    # the second FFN GEMM on INT8 inputs these sentences give 0.9933 and 0.9845, and it fails
    assert cos.mean() >= 0.995, cos
    assert cos.min() >= 0.99, cos
    # the ranking of pairwise similarities survives quantization
    iu = np.triu_indices(len(TEXTS), 1)
    a, b = (e @ e.T)[iu], (r @ r.T)[iu]
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert np.corrcoef(rank(a), rank(b))[0, 1] >= 0.97     # measured 0.987 over 28 pairs


def test_batching_does_not_change_integers(quantized):
    together = quantized.run(TEXTS[:3])
    for i, t in enumerate(TEXTS[:3]):
        np.testing.assert_array_equal(quantized.run([t])[0], together[i])

"""sim.layout: every word order against its definition, and each inverse against its forward."""

import numpy as np
import pytest

from hw.config import LayerNormConfig
from hw.isa import Buf, BufferSpec
from sim import layout


@pytest.mark.parametrize(("M", "K", "R"), [(5, 3, 2), (4, 4, 4), (1, 1, 3), (7, 2, 1)])
def test_column_words(M, K, R):
    x = np.random.default_rng(M * K).integers(-128, 128, (M, K))
    w = layout.column_words(x, R, pad=99)
    assert w.shape == (-(-M // R) * K, R)
    for t in range(-(-M // R)):
        for k in range(K):
            for r in range(R):
                want = x[t * R + r, k] if t * R + r < M else 99
                assert w[t * K + k, r] == want
    np.testing.assert_array_equal(layout.from_column_words(w, M, K, R), x)


@pytest.mark.parametrize(("K", "N", "C"), [(3, 5, 2), (4, 4, 4), (1, 1, 3), (2, 7, 1)])
def test_row_words(K, N, C):
    x = np.random.default_rng(K * N).integers(-128, 128, (K, N))
    w = layout.row_words(x, C, pad=-5)
    for t in range(-(-N // C)):
        for k in range(K):
            for c in range(C):
                want = x[k, t * C + c] if t * C + c < N else -5
                assert w[t * K + k, c] == want
    np.testing.assert_array_equal(layout.from_row_words(w, K, N, C), x)


@pytest.mark.parametrize(("M", "N", "R", "C"), [(5, 3, 2, 2), (4, 8, 4, 4), (1, 1, 2, 3)])
def test_tile_rows(M, N, R, C):
    x = np.random.default_rng(M + N).integers(-1000, 1000, (M, N))
    w = layout.tile_rows(x, R, C)
    mask = layout.tile_rows_mask(M, N, R, C)
    order = [(i, t) for i0 in range(0, M, R) for t in range(-(-N // C))
             for i in range(i0, min(i0 + R, M))]
    assert len(w) == len(order) == M * -(-N // C)
    for word, (i, t) in zip(w, order, strict=True):
        cols = np.arange(t * C, (t + 1) * C)
        np.testing.assert_array_equal(word[cols < N], x[i, cols[cols < N]])
    assert mask.sum() == M * N
    np.testing.assert_array_equal(layout.from_tile_rows(w, M, N, R, C), x)


def test_beats_and_coef():
    rows = np.arange(14).reshape(2, 7)
    w = layout.beats(rows, 3, pad=-1)
    np.testing.assert_array_equal(w[2], [6, -1, -1])
    assert layout.beats_mask(2, 7, 3).sum() == 14
    np.testing.assert_array_equal(layout.from_beats(w, 2, 7, 3), rows)
    lcfg = LayerNormConfig(lanes=2, max_len=16)
    rng = np.random.default_rng(1)
    gamma = rng.integers(-(1 << (lcfg.gamma_width - 1)), 1 << (lcfg.gamma_width - 1), 5)
    beta = rng.integers(-(1 << (lcfg.beta_width - 1)), 1 << (lcfg.beta_width - 1), 5)
    words = layout.coef_words(gamma, beta, lcfg)
    assert len(words) == 3
    g, b = layout.from_coef_words(words, 5, lcfg)
    np.testing.assert_array_equal(g, gamma)
    np.testing.assert_array_equal(b, beta)


def test_pack_words_round_trip():
    spec = BufferSpec(Buf.C, 3, 25, 8)
    words = np.array([[-(1 << 24), (1 << 24) - 1, 0], [1, -1, 12345]])
    raw = layout.pack_words(words, spec)
    assert len(raw) == 2 * spec.nbytes == 20
    assert int.from_bytes(raw[:10], "little") & ((1 << 25) - 1) == 1 << 24
    np.testing.assert_array_equal(layout.unpack_words(raw, spec), words)


@pytest.mark.parametrize("N", [1, 3, 4, 7])
def test_channel_words(N):
    C, T = 2, 4
    bias, mult, shift = np.arange(N) - 100, np.arange(N) + 7, np.arange(N) % 5
    words = layout.channel_words(bias, mult, shift, C, T)
    assert words.shape == (3 * T, C)
    assert words[0, 0] == -100 and words[T, 0] == 7 and words[2 * T + (N - 1) // C,
                                                               (N - 1) % C] == (N - 1) % 5
    for got, want in zip(layout.from_channel_words(words, N, C, T), (bias, mult, shift),
                         strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("N", [1, 3, 4, 7, 8])
def test_channel_blocks_are_the_used_words(N):
    # Written over a buffer of junk, the blocks give back every channel: they hold each
    # channel's word, and no word past the channels' tiles.
    C, T = 2, 4
    bias, mult, shift = np.arange(N) - 100, np.arange(N) + 7, np.arange(N) % 5
    blocks = layout.channel_blocks(bias, mult, shift, C, T)
    used = -(-N // C)
    assert [(addr, len(words)) for addr, words in blocks] == (
        [(0, 3 * T)] if used == T else [(b * T, used) for b in range(3)])
    assert layout.channel_pieces(N, C, T) == [(a, len(w)) for a, w in blocks]
    chan = np.full((3 * T, C), 999)
    for addr, words in blocks:
        chan[addr:addr + len(words)] = words
    for got, want in zip(layout.from_channel_words(chan, N, C, T), (bias, mult, shift),
                         strict=True):
        np.testing.assert_array_equal(got, want)


def test_channel_pieces_refuse_what_chan_cannot_hold():
    with pytest.raises(ValueError, match=r"^CHAN holds 1 to 8 channels \(4 tiles of 2\), not 9"):
        layout.channel_pieces(9, 2, 4)
    with pytest.raises(ValueError, match=r"not 0$"):
        layout.channel_pieces(0, 2, 4)
    with pytest.raises(ValueError, match=r"^Channel constants must be as many as the biases \(3\)"):
        layout.channel_blocks(np.zeros(3), np.zeros(2), np.zeros(3), 2, 4)


def test_residual_words():
    a, b = np.arange(10).reshape(2, 5), -np.arange(10).reshape(2, 5)
    words = layout.residual_words(a, b, 2)         # 2 rows of 3 beats each half
    assert words.shape == (12, 2)
    np.testing.assert_array_equal(layout.from_beats(words, 2, 5, 2), a)
    np.testing.assert_array_equal(layout.from_beats(words[6:], 2, 5, 2), b)

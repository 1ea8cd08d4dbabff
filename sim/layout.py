"""Arrays to buffer words and back: the one home of every beat and word order of the top.

Every buffer word is ``lanes`` signed elements, lane 0 in the low bits (:class:`hw.isa.BufferSpec`).
Three word orders cover every operand and result of the accelerator:

* **column words** (``column_words``): word ``t*K + k`` is ``x[t*R : t*R+R, k]``, a column of a
  tile of ``R`` rows. GEMM's A (``x = A``, ``K`` its depth) and attention's Q (``K = d``).
* **row words** (``row_words``): word ``t*K + k`` is ``x[k, t*C : t*C+C]``, a row of a tile of
  ``C`` columns. GEMM's B, attention's K (``x = Kᵀ``, ``K = d``) and V (``x = V``, ``K = L``).
* **tile rows** (``tile_rows``): for each row tile ``i0`` (``R`` rows) and column tile ``t``
  (``C`` columns), the rows ``x[i, t*C : t*C+C]`` of the tile in order. The GEMM engine's
  output C and the attention output O.

Nonlinear rows are **beats**: each row padded to whole beats of ``lanes`` elements.

Forward functions pad ragged tiles with ``pad`` (0 by default); the inverse functions ignore
the padding lanes, as the hardware does.
"""

import numpy as np

__all__ = [
    "pack_words", "unpack_words",
    "column_words", "from_column_words", "row_words", "from_row_words",
    "tile_rows", "from_tile_rows", "tile_rows_mask", "beats", "from_beats", "beats_mask",
    "coef_words", "from_coef_words",
]


def _ceil(a, b):
    return -(-a // b)


def pack_words(words, spec):
    """Bytes of ``words`` (array ``(n, lanes)`` of ints) for buffer ``spec``: each word is
    ``spec.nbytes`` bytes little-endian, lane 0 in the low bits, each lane two's complement."""
    words = np.asarray(words, dtype=np.int64).reshape(-1, spec.lanes)
    w = spec.elem_width
    bits = ((words[..., None] >> np.arange(w, dtype=np.int64)) & 1).astype(np.uint8)
    padded = np.zeros((len(words), spec.nbytes * 8), dtype=np.uint8)
    padded[:, :spec.lanes * w] = bits.reshape(len(words), -1)
    return np.packbits(padded, axis=1, bitorder="little").tobytes()


def unpack_words(raw, spec):
    """Inverse of :func:`pack_words`: an int64 array ``(n, lanes)`` of signed lanes."""
    n, w = len(raw) // spec.nbytes, spec.elem_width
    octets = np.frombuffer(bytes(raw[:n * spec.nbytes]), dtype=np.uint8).reshape(n, spec.nbytes)
    bits = np.unpackbits(octets, axis=1, bitorder="little")[:, :spec.lanes * w]
    bits = bits.reshape(n, spec.lanes, w).astype(np.int64)
    return bits @ (np.int64(1) << np.arange(w, dtype=np.int64)) - (bits[..., -1] << w)


def column_words(x, R, pad=0):
    """``x`` (M, K) as ``ceil(M/R)*K`` words of ``R`` lanes: word ``t*K + k`` is
    ``x[t*R : t*R+R, k]``."""
    x = np.asarray(x, dtype=np.int64)
    M, K = x.shape
    T = _ceil(M, R)
    xp = np.full((T * R, K), pad, dtype=np.int64)
    xp[:M] = x
    return xp.reshape(T, R, K).transpose(0, 2, 1).reshape(-1, R)


def from_column_words(words, M, K, R):
    """Inverse of :func:`column_words`: ``x`` (M, K) from the first ``ceil(M/R)*K`` words."""
    T = _ceil(M, R)
    w = np.asarray(words, dtype=np.int64)[:T * K].reshape(T, K, R)
    return w.transpose(0, 2, 1).reshape(T * R, K)[:M]


def row_words(x, C, pad=0):
    """``x`` (K, N) as ``ceil(N/C)*K`` words of ``C`` lanes: word ``t*K + k`` is
    ``x[k, t*C : t*C+C]``."""
    x = np.asarray(x, dtype=np.int64)
    K, N = x.shape
    T = _ceil(N, C)
    xp = np.full((K, T * C), pad, dtype=np.int64)
    xp[:, :N] = x
    return xp.reshape(K, T, C).transpose(1, 0, 2).reshape(-1, C)


def from_row_words(words, K, N, C):
    """Inverse of :func:`row_words`: ``x`` (K, N) from the first ``ceil(N/C)*K`` words."""
    T = _ceil(N, C)
    w = np.asarray(words, dtype=np.int64)[:T * K].reshape(T, K, C)
    return w.transpose(1, 0, 2).reshape(K, T * C)[:, :N]


def tile_rows(x, R, C, pad=0):
    """``x`` (M, N) as ``M*ceil(N/C)`` words of ``C`` lanes, in the order row tile (``R``
    rows), column tile, row: the order in which the engine drains a result."""
    x = np.asarray(x, dtype=np.int64)
    M, N = x.shape
    T = _ceil(N, C)
    xp = np.full((M, T * C), pad, dtype=np.int64)
    xp[:, :N] = x
    out = [xp[i, t * C:(t + 1) * C]
           for i0 in range(0, M, R) for t in range(T) for i in range(i0, min(i0 + R, M))]
    return np.array(out, dtype=np.int64).reshape(-1, C)


def _tile_row_index(M, N, R, C):
    """For each word of :func:`tile_rows`, its (row, column tile)."""
    return [(i, t) for i0 in range(0, M, R) for t in range(_ceil(N, C))
            for i in range(i0, min(i0 + R, M))]


def from_tile_rows(rows, M, N, R, C):
    """Inverse of :func:`tile_rows`: ``x`` (M, N) from the first ``M*ceil(N/C)`` words."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros((M, _ceil(N, C) * C), dtype=np.int64)
    for w, (i, t) in enumerate(_tile_row_index(M, N, R, C)):
        out[i, t * C:(t + 1) * C] = rows[w]
    return out[:, :N]


def tile_rows_mask(M, N, R, C):
    """Boolean ``(M*ceil(N/C), C)``: which lanes of :func:`tile_rows` hold elements of ``x``
    (the others are padding, whose value the hardware does not define)."""
    mask = np.zeros((M * _ceil(N, C), C), dtype=bool)
    for w, (_, t) in enumerate(_tile_row_index(M, N, R, C)):
        mask[w] = np.arange(t * C, (t + 1) * C) < N
    return mask


def beats(rows, lanes, pad=0):
    """Rows ``(n, length)`` as ``n*ceil(length/lanes)`` beats of ``lanes`` elements, each row
    padded to whole beats."""
    rows = np.asarray(rows, dtype=np.int64)
    n, length = rows.shape
    per = _ceil(length, lanes)
    xp = np.full((n, per * lanes), pad, dtype=np.int64)
    xp[:, :length] = rows
    return xp.reshape(-1, lanes)


def from_beats(words, n, length, lanes):
    """Inverse of :func:`beats`: rows ``(n, length)`` from the first ``n*ceil(length/lanes)``
    beats."""
    per = _ceil(length, lanes)
    w = np.asarray(words, dtype=np.int64)[:n * per]
    return w.reshape(n, per * lanes)[:, :length]


def beats_mask(n, length, lanes):
    """Boolean ``(n*ceil(length/lanes), lanes)``: which lanes of :func:`beats` hold elements."""
    per = _ceil(length, lanes)
    return np.tile(np.arange(per * lanes) < length, n).reshape(-1, lanes)


def coef_words(gamma, beta, lcfg):
    """LayerNorm coefficient words (``Buf.COEF``) for integer ``gamma``/``beta`` of one row:
    a word holds ``lanes`` gamma lanes (signed ``gamma_width``), then ``lanes`` beta lanes
    (signed ``beta_width``), as Python ints (one per beat)."""
    VL = lcfg.lanes
    g, b = (beats(np.asarray(v, dtype=np.int64)[None], VL)[:, :] for v in (gamma, beta))
    gmask, bmask = (1 << lcfg.gamma_width) - 1, (1 << lcfg.beta_width) - 1
    words = []
    for gw, bw in zip(g, b, strict=True):
        word = 0
        for lane in range(VL):
            word |= (int(gw[lane]) & gmask) << (lane * lcfg.gamma_width)
            word |= (int(bw[lane]) & bmask) << (VL * lcfg.gamma_width + lane * lcfg.beta_width)
        words.append(word)
    return words


def from_coef_words(words, length, lcfg):
    """Inverse of :func:`coef_words`: integer ``(gamma, beta)`` of a row of ``length``."""
    VL = lcfg.lanes

    def field(word, offset, width):
        v = (word >> offset) & ((1 << width) - 1)
        return v - (1 << width) if v >> (width - 1) else v

    g, b = [], []
    for word in words[:_ceil(length, VL)]:
        for lane in range(VL):
            g.append(field(word, lane * lcfg.gamma_width, lcfg.gamma_width))
            b.append(field(word, VL * lcfg.gamma_width + lane * lcfg.beta_width,
                           lcfg.beta_width))
    return np.array(g[:length], dtype=np.int64), np.array(b[:length], dtype=np.int64)

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

The GEMM engine's operand streams (``gemm_beats``) are the column and row words of its tiles in
its walk order: row tile, column tile, k, with A's words sent again for each column tile.

Nonlinear rows are **beats**: each row padded to whole beats of ``lanes`` elements. RUN
RESIDUAL's two operands are the two halves of X (``residual_words``).

RUN LINEAR's per-channel constants are **channel words** (``channel_words``): the biases,
multipliers and shifts of ``C`` channels a word, in three blocks of ``T`` words; a host writes
only the words a run's channels use (``channel_pieces``, ``channel_blocks``).

A word travels on a stream as one integer (``pack``/``unpack``) and in a buffer as bytes
(``pack_words``/``unpack_words``), lane 0 in the low bits either way.

Forward functions pad ragged tiles with ``pad``: 0 by default, or an array of the padded shape
(random junk, which the hardware must ignore). The inverse functions ignore the padding lanes,
as the hardware does.
"""

import numpy as np

__all__ = [
    "pack", "pack_rows", "unpack", "unpack_rows", "pack_words", "unpack_words",
    "column_words", "from_column_words", "row_words", "from_row_words",
    "tile_rows", "from_tile_rows", "tile_rows_mask", "beats", "from_beats", "beats_mask",
    "gemm_beats", "coef_words", "from_coef_words", "channel_words", "channel_pieces",
    "channel_blocks", "from_channel_words", "residual_words",
]


def _ceil(a, b):
    return -(-a // b)


def _padded(shape, pad):
    """An int64 array of ``shape`` filled from ``pad`` (a scalar or an array of ``shape``)."""
    return np.array(np.broadcast_to(np.asarray(pad, dtype=np.int64), shape))


def pack(values, width):
    """One word as an integer: the lane ``values`` (signed or unsigned), ``width`` bits each,
    lane 0 in the low bits."""
    mask = (1 << width) - 1
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * width)
    return word


def pack_rows(rows, width):
    """:func:`pack` of each row of a 2-D integer array: a uint64 array when a packed row fits
    64 bits (vectorized, bytewise for 8-bit lanes), else a list of ints."""
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] * width > 64:
        return [pack(r, width) for r in rows]
    if width == 8:
        packed = np.zeros((len(rows), 8), dtype=np.uint8)
        packed[:, :rows.shape[1]] = rows.astype(np.uint8)       # two's complement, lane 0 low
        return packed.view("<u8")[:, 0]
    lanes = (rows.astype(np.int64) & ((1 << width) - 1)).astype(np.uint64)
    shifts = (np.arange(rows.shape[1], dtype=np.uint64) * np.uint64(width))
    return np.bitwise_or.reduce(lanes << shifts, axis=1)


def unpack_rows(words, width, lanes, *, signed=True):
    """:func:`unpack` of each of ``words`` (ints), vectorized: an int64 array ``(len(words),
    lanes)``. Lane values must fit 63 bits."""
    nbytes = max(1, -(-width * lanes // 8))
    raw = b"".join(int(w).to_bytes(nbytes, "little") for w in words)
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8).reshape(len(words), nbytes),
                         axis=1, bitorder="little")[:, :width * lanes]
    bits = bits.reshape(len(words), lanes, width).astype(np.int64)
    values = bits @ (np.int64(1) << np.arange(width, dtype=np.int64))
    if signed:
        values -= bits[..., -1] << width
    return values


def unpack(word, width, lanes, *, signed=True):
    """Inverse of :func:`pack`: the ``lanes`` lanes of ``word``, as a list of ints."""
    mask = (1 << width) - 1
    half = 1 << (width - 1)
    out = []
    for i in range(lanes):
        v = (word >> (i * width)) & mask
        if signed and v & half:
            v -= 1 << width
        out.append(v)
    return out


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
    xp = _padded((T * R, K), pad)
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
    xp = _padded((K, T * C), pad)
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
    xp = _padded((M, T * C), pad)
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
    xp = _padded((n, per * lanes), pad)
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


def gemm_beats(a, b, R, C, pad_a=0, pad_b=0):
    """The GEMM engine's operand beats for ``a @ b`` (``a`` M x K, ``b`` K x N): arrays
    ``(beats, R)`` and ``(beats, C)`` in its walk order, row tile, column tile, k. A beat pair
    is the :func:`column_words` word of A's row tile and the :func:`row_words` word of B's
    column tile at that k; ``pad_a`` and ``pad_b`` fill them as there."""
    a, b = np.asarray(a), np.asarray(b)
    (M, K), N = a.shape, b.shape[1]
    tm, tn = _ceil(M, R), _ceil(N, C)
    a_tiles = column_words(a, R, pad_a).reshape(tm, K, R)
    b_tiles = row_words(b, C, pad_b).reshape(tn, K, C)
    a_beats = np.broadcast_to(a_tiles[:, None], (tm, tn, K, R)).reshape(-1, R)
    b_beats = np.broadcast_to(b_tiles[None], (tm, tn, K, C)).reshape(-1, C)
    return a_beats, b_beats


def coef_words(gamma, beta, lcfg):
    """LayerNorm coefficient words (``Buf.COEF``) for integer ``gamma``/``beta`` of one row:
    a word holds ``lanes`` gamma lanes (signed ``gamma_width``), then ``lanes`` beta lanes
    (signed ``beta_width``), as Python ints (one per beat)."""
    VL, gw = lcfg.lanes, lcfg.gamma_width
    g, b = (beats(np.asarray(v, dtype=np.int64)[None], VL) for v in (gamma, beta))
    return [pack(gl, gw) | pack(bl, lcfg.beta_width) << (VL * gw)
            for gl, bl in zip(g, b, strict=True)]


def from_coef_words(words, length, lcfg):
    """Inverse of :func:`coef_words`: integer ``(gamma, beta)`` of a row of ``length``."""
    VL, gw = lcfg.lanes, lcfg.gamma_width
    words = words[:_ceil(length, VL)]
    g = [v for word in words for v in unpack(word, gw, VL)]
    b = [v for word in words for v in unpack(word >> (VL * gw), lcfg.beta_width, VL)]
    return np.array(g[:length], dtype=np.int64), np.array(b[:length], dtype=np.int64)


def channel_words(bias, multipliers, shifts, C, tiles):
    """RUN LINEAR's CHAN buffer (``Buf.CHAN``) for ``N`` channels: ``(3*tiles, C)`` words, word
    ``t`` the biases of channels ``t*C .. t*C+C-1``, word ``tiles + t`` their multipliers, word
    ``2*tiles + t`` their shifts (lanes past ``N`` 0). ``N`` must be at most ``tiles*C``."""
    out = np.zeros((3, tiles, C), dtype=np.int64)
    for block, values in enumerate((bias, multipliers, shifts)):
        words = row_words(np.asarray(values, dtype=np.int64)[None], C)
        out[block, :len(words)] = words
    return out.reshape(-1, C)


def channel_pieces(N, C, tiles):
    """``[(addr, count), ...]``: the CHAN words a LINEAR run of ``N`` columns reads, the
    ``ceil(N/C)`` words of each of :func:`channel_words`' three blocks (biases at word 0,
    multipliers at ``tiles``, shifts at ``2*tiles``); one piece, the whole buffer, when ``N``
    fills the last tile. A host writes these rather than all ``3*tiles`` words."""
    if not 1 <= N <= tiles * C:
        raise ValueError(f"CHAN holds 1 to {tiles * C} channels ({tiles} tiles of {C}), "
                         f"not {N}")
    used = -(-N // C)
    if used == tiles:
        return [(0, 3 * tiles)]
    return [(b * tiles, used) for b in range(3)]


def channel_blocks(bias, multipliers, shifts, C, tiles):
    """The words of :func:`channel_words` in the pieces of :func:`channel_pieces`:
    ``[(addr, words), ...]``."""
    if not len(bias) == len(multipliers) == len(shifts):
        raise ValueError(f"Channel constants must be as many as the biases ({len(bias)}), not "
                         f"{len(multipliers)} multipliers and {len(shifts)} shifts")
    pieces = channel_pieces(len(bias), C, tiles)
    words = channel_words(bias, multipliers, shifts, C, tiles)
    return [(addr, words[addr:addr + count]) for addr, count in pieces]


def from_channel_words(words, N, C, tiles):
    """Inverse of :func:`channel_words`: ``(bias, multipliers, shifts)`` of ``N`` channels."""
    blocks = np.asarray(words, dtype=np.int64).reshape(3, tiles, C)
    return tuple(from_row_words(block, 1, N, C)[0] for block in blocks)


def residual_words(a, b, lanes):
    """RUN RESIDUAL's X: the beats of ``a`` (rows ``(n, length)``), then those of ``b`` (the
    same shape), each half :func:`beats` of its rows."""
    return np.concatenate([beats(a, lanes), beats(b, lanes)])

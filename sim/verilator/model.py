"""A Verilated model with its generated harness, driven from Python through ctypes.

The clock loop runs in C++ (:mod:`sim.verilator.harness`); Python only queues items, starts a
run, and collects what the sinks took. One :class:`Model` is one instance of the design, with
its state kept between runs.
"""

import ctypes

import numpy as np

__all__ = ["Model", "to_words", "from_words", "pcg_state"]

_LIBS = {}


def _load(path):
    if path not in _LIBS:
        lib = ctypes.CDLL(str(path))
        p, i, u64, i64, f64 = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_int64,
                               ctypes.c_double)
        # Word arrays go as their address (an int: ndarray.ctypes.data), which ctypes passes
        # as it is, where a typed pointer (ndarray.ctypes.data_as) costs microseconds a call.
        u32p, u64p, i64p = p, ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_int64)
        for name, res, args in [
            ("itf_new", p, []), ("itf_free", None, [p]),
            ("itf_config", None, [p, i, f64, u64, i64, i, u64p]),
            ("itf_push", None, [p, i, u32p, u64]), ("itf_expect", None, [p, i, u64]),
            ("itf_collected", u64, [p, i]), ("itf_take", None, [p, i, u32p, u64]),
            ("itf_stats", None, [p, i, i64p]), ("itf_set_input", None, [p, i, u32p]),
            ("itf_get_output", None, [p, i, u32p]), ("itf_count", u64, [p, i]),
            ("itf_cycle", i64, [p]), ("itf_timed_out", i, [p]), ("itf_run", i, [p, i, u64, i]),
            ("itf_transfer_bytes", i, [p, i, ctypes.c_char_p, u64, i, u64, u64, p]),
        ]:
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        _LIBS[path] = lib
    return _LIBS[path]


def to_words(items, width):
    """Non-negative ints (each below ``2**width``) -> uint32 array ``(n, ceil(width/32))``,
    least significant word first."""
    words = max(1, -(-width // 32))
    if width <= 64:                     # vectorized: through uint64
        mask = np.uint64((1 << width) - 1)
        wide = np.asarray(items, dtype=np.uint64).reshape(-1) & mask
        return np.ascontiguousarray(wide.astype("<u8").view("<u4").reshape(-1, 2)[:, :words])
    mask = (1 << width) - 1
    raw = b"".join((int(x) & mask).to_bytes(4 * words, "little") for x in items)
    return np.frombuffer(raw, dtype="<u4").reshape(-1, words)


def from_words(array):
    """Inverse of :func:`to_words`: a list of ints."""
    array = np.ascontiguousarray(array, dtype="<u4")
    return [int.from_bytes(row.tobytes(), "little") for row in array]


def pcg_state(rng):
    """The PCG64 state of a NumPy ``Generator`` as four uint64 (state hi/lo, inc hi/lo)."""
    st = rng.bit_generator.state
    if st["bit_generator"] != "PCG64":
        raise TypeError(f"Stall generator must be a PCG64 numpy Generator, not "
                        f"{st['bit_generator']}")
    s, inc, m = st["state"]["state"], st["state"]["inc"], (1 << 64) - 1
    return (ctypes.c_uint64 * 4)(s >> 64, s & m, inc >> 64, inc & m)


class Model:
    """One instance of a built design (a :class:`~sim.verilator.build.Build`).

    Streams are numbered as in ``build.ports.streams`` (sources, then sinks); inputs and
    outputs as in ``build.ports.inputs`` and ``.outputs``.
    """

    RUN_DRAIN, RUN_SINKS, RUN_CYCLES, RUN_WHILE_HIGH = 0, 1, 2, 3
    FINISHED, TIMEOUT, OUT_OF_CYCLES = 0, 1, 2

    def __init__(self, build):
        self.build, self.ports = build, build.ports
        self._lib = _load(build.library)
        self._p = self._lib.itf_new()
        self._stream_index = {p.name: i for i, p in enumerate(self.ports.streams)}
        self._input_index = {p.name: i for i, p in enumerate(self.ports.inputs)}
        self._output_index = {p.name: i for i, p in enumerate(self.ports.outputs)}
        self._byte_streams = {i for i, p in enumerate(self.ports.streams) if p.width <= 8}

    def __del__(self):
        if getattr(self, "_p", None):
            self._lib.itf_free(self._p)
            self._p = None

    def stream(self, name):
        """The number of stream ``name``."""
        return self._stream_index[name]

    def configure(self, name, *, stall=0.0, rng=None, budget=10_000, start=0, greedy=False):
        """Stall probability (drawn from NumPy Generator ``rng``), timeout budget, start cycle
        and, for a sink, whether it takes items beyond those it expects."""
        state = pcg_state(rng) if rng is not None else (ctypes.c_uint64 * 4)()
        self._lib.itf_config(self._p, self.stream(name), float(stall), int(budget), int(start),
                             int(greedy), state)

    def push(self, name, items):
        """Queue items on source ``name``: ints (a list, or a 1-D integer array such as
        :func:`sim.bench.pack_rows` gives), or a 2-D uint32 word array (:func:`to_words`)."""
        i = self.stream(name)
        port = self.ports.streams[i]
        words = items if isinstance(items, np.ndarray) and items.ndim == 2 else \
            to_words(items, port.width)
        words = np.ascontiguousarray(words, dtype="<u4")
        self._lib.itf_push(self._p, i, words.ctypes.data, len(words))

    def expect(self, name, count):
        """Sink ``name`` wants ``count`` more items."""
        self._lib.itf_expect(self._p, self.stream(name), int(count))

    def collected(self, name):
        return self._lib.itf_collected(self._p, self.stream(name))

    def take(self, name, count=None, *, words=False):
        """Remove and return the first ``count`` (default all) items sink ``name`` collected:
        ints, or with ``words`` the uint32 word array."""
        i = self.stream(name)
        have = self.collected(name)
        count = have if count is None else count
        if not 0 <= count <= have:
            raise ValueError(f"Items taken from {name} must be at most the {have} collected, "
                             f"not {count}")
        out = np.zeros((count, self.ports.streams[i].words), dtype="<u4")
        self._lib.itf_take(self._p, i, out.ctypes.data, count)
        return out if words else from_words(out)

    def stats(self, name):
        """``(first, last, transfers, left, wait)`` of a stream: the local cycles of its first
        and last transfer (-1 if none), its transfers, the items a source has left or a sink
        still wants, and the cycles it has waited since its last transfer."""
        out = (ctypes.c_int64 * 5)()
        self._lib.itf_stats(self._p, self.stream(name), out)
        return tuple(out)

    def set_input(self, name, value):
        port = self.ports.inputs[self._input_index[name]]
        w = to_words([value], port.width)
        self._lib.itf_set_input(self._p, self._input_index[name], w.ctypes.data)

    def get_output(self, name):
        port = self.ports.outputs[self._output_index[name]]
        w = np.zeros(port.words, dtype="<u4")
        self._lib.itf_get_output(self._p, self._output_index[name], w.ctypes.data)
        return from_words(w[None])[0]

    def count(self, name):
        """Cycles on which output ``name`` was nonzero (sampled before each rising edge)."""
        return self._lib.itf_count(self._p, self._output_index[name])

    @property
    def cycle(self):
        """Rising edges so far."""
        return self._lib.itf_cycle(self._p)

    def transfer_bytes(self, source, data, sink, count, max_cycles=1 << 62):
        """On byte streams (payloads of at most 8 bits): queue ``data`` (bytes) on source
        ``source``, run the clock until sink ``sink`` has collected ``count`` items
        (``RUN_SINKS``, at most ``max_cycles`` cycles), and take them: ``(status, bytes)``,
        the bytes None unless ``status`` is ``FINISHED``.

        The same cycles as :meth:`push`, :meth:`expect`, :meth:`run` and :meth:`take` in turn,
        in one call into the library, with the bytes passed as they are: a command and its
        answer cost microseconds of Python.
        """
        src, snk = self._stream_index[source], self._stream_index[sink]
        if src not in self._byte_streams or snk not in self._byte_streams:
            wide = next(self.ports.streams[i] for i in (src, snk) if i not in self._byte_streams)
            raise ValueError(f"Stream of bytes must have a payload of at most 8 bits, not "
                             f"{wide.width} ({wide.name})")
        out = ctypes.create_string_buffer(count)
        status = self._lib.itf_transfer_bytes(self._p, src, data, len(data), snk, count,
                                              max_cycles, out)
        return status, (out.raw if status == self.FINISHED else None)

    def run(self, mode=RUN_DRAIN, max_cycles=1 << 62, output=None):
        """Run the clock (see the harness's ``itf_run``): until every source is empty and
        every sink has what it wants (``RUN_DRAIN``), until every sink has (``RUN_SINKS``),
        ``max_cycles`` cycles (``RUN_CYCLES``), or while plain output ``output`` is nonzero
        after the last edge (``RUN_WHILE_HIGH``); return ``(status, stream name that timed
        out or None)``."""
        index = -1 if output is None else self._output_index[output]
        status = self._lib.itf_run(self._p, mode, int(max_cycles), index)
        if status == self.TIMEOUT:
            return status, self.ports.streams[self._lib.itf_timed_out(self._p)].name
        return status, None

"""Host driver of the accelerator's command protocol: NumPy arrays in, commands out, arrays back,
over any transport (:class:`boards.board.Board`: the framed serial link of a board)."""

from collections import namedtuple

from hw.config import AccelConfig
from hw.isa import (
    Buf,
    Command,
    Error,
    Op,
    Reg,
    buffer_depth,
    buffer_specs,
    channel_tiles,
    register_specs,
    vector_lanes,
)
from sim import layout
from sim.layout import pack_words, unpack_words

from .framing import (
    BAUD,
    BITS_PER_BYTE,
    BUFFER_HEADER,
    LENGTH_BYTES,
    STATUS_BYTES,
    LinkCount,
    frame_bytes,
    read_chunks,
    reg_value_bytes,
    write_chunks,
)
from .link import LinkError
from .matrixops import MatrixOps
from .rowops import RowOps
from .splits import (
    LinearRun,
    LinearSplit,
    gemm_block,
    k_chunk,
    linear_runs,
    linear_split,
    residual_per_run,
    rows_per_run,
    sums_on_chip,
)

__all__ = ["BoardError", "Status", "Client", "BAUD", "BITS_PER_BYTE", "LENGTH_BYTES",
           "BUFFER_HEADER", "STATUS_BYTES", "frame_bytes", "reg_value_bytes", "write_chunks",
           "read_chunks", "k_chunk", "gemm_block", "LinearSplit", "LinearRun", "linear_runs",
           "linear_split", "rows_per_run", "residual_per_run", "sums_on_chip", "LinkCount"]


Status = namedtuple("Status", ["busy", "done", "error"])
Status.__doc__ = "What ``STATUS`` answers: ``busy``, ``done`` (bools) and the last error name."


def _num(x):
    """The number of an enum member (Amaranth enums are not ``int``) or of an int."""
    return x.value if hasattr(x, "value") else int(x)


def _code_name(code):
    for enum in (Error, LinkError):
        try:
            return enum(code).name
        except ValueError:
            pass
    return f"UNKNOWN_{code:#04x}"


def _code_name_cmd(opcode):
    try:
        return Command(opcode).name
    except ValueError:
        return f"opcode {opcode:#04x}"


class BoardError(Exception):
    """The board answered a command with a non-OK status; ``name`` is the error code's name
    (:class:`hw.isa.Error` or :class:`boards.link.LinkError`) and ``code`` its number."""

    def __init__(self, code, what=""):
        self.code = code
        self.name = _code_name(code)
        super().__init__(f"{self.name}" + (f" ({what})" if what else ""))


class Client(MatrixOps, RowOps):
    """The accelerator's commands as Python methods; subclasses move the bytes.

    A subclass implements :meth:`_exchange`. :class:`Board` frames commands for the UART link;
    the tests drive :class:`hw.top.Accelerator` directly with the same methods.

    This class holds the commands themselves; the operations built on them come from its
    bases: :class:`~boards.matrixops.MatrixOps` (GEMM, LINEAR, attention) and
    :class:`~boards.rowops.RowOps` (softmax, GELU, LayerNorm, the residual add).

    Parameters
    ----------
    cfg : AccelConfig
        The configuration the board was built with (buffer layouts, constants and the buffers'
        depth, ``cfg.buffers.depth``, derive from it).
    depth : int or None
        The accelerator's buffer depth, which sets how operations split into runs: by default
        the config's, as a board top built from ``cfg`` has. Give it only for a simulated top
        built with the same explicit depth (``hw.top.Accelerator(cfg, depth=...)``).
    max_payload : int
        Largest command payload the link accepts; writes are chunked to fit.
    max_polls : int
        ``STATUS`` polls a run may take before :exc:`TimeoutError`.
    """

    def __init__(self, cfg, *, depth=None, max_payload=255, max_polls=10_000):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"Board config must be an AccelConfig, not {cfg!r}")
        self.cfg, self.depth = cfg, buffer_depth(cfg, depth)
        self.buffers = buffer_specs(cfg, depth)
        self.registers = register_specs(cfg, depth)
        self.lanes = vector_lanes(cfg)
        self.max_payload, self.max_polls = max_payload, max_polls
        self._regs = {}       # register values last set, to skip redundant SET_REGs
        #: What went over the link so far: frames and bytes each way, counted as
        #: :class:`LinkCount` frames them (a program executor reads it op by op).
        self.link = LinkCount(max_payload)
        #: RUN commands sent so far.
        self.runs = 0

    def _exchange(self, opcode, payload):
        """Send one command; return ``(status, response payload)``."""
        raise NotImplementedError

    def command(self, opcode, payload=b""):
        """Send a command and return its response payload; raise :exc:`BoardError` on a
        non-OK status."""
        status, data = self._exchange(_num(opcode), bytes(payload))
        self.link.command(len(payload), len(data))
        if status != Error.OK.value:
            raise BoardError(status, f"answer to {_code_name_cmd(opcode)}")
        return data

    # -- low-level commands --------------------------------------------------------------------

    def status(self):
        """``Status(busy, done, error)``; ``error`` is the last failed command's code name
        (``"OK"`` if none) and is cleared by this read."""
        flags, err = self.command(Command.STATUS)
        return Status(bool(flags & 1), bool(flags & 2), _code_name(err))

    def write_buffer(self, buf, addr, words):
        """Write ``words`` (array ``(n, lanes)``) to buffer ``buf`` from word ``addr``, chunked
        to the link's payload limit."""
        spec = self.buffers[Buf(buf)]
        raw = pack_words(words, spec)
        for start, cnt in write_chunks(len(raw) // spec.nbytes, spec.nbytes, self.max_payload):
            body = raw[start * spec.nbytes:(start + cnt) * spec.nbytes]
            self.command(Command.WRITE_BUFFER,
                         bytes([_num(buf)]) + (addr + start).to_bytes(2, "little")
                         + cnt.to_bytes(2, "little") + body)

    def write_channels(self, bias, multipliers, shifts):
        """Write RUN LINEAR's constants for ``N`` output channels to CHAN: only the words a run
        of ``N`` columns reads (:func:`sim.layout.channel_pieces`), three writes of
        ``ceil(N/C)`` words, or one of the whole table when they fill it."""
        for addr, words in layout.channel_blocks(bias, multipliers, shifts, self.cfg.array.cols,
                                                 channel_tiles(self.cfg)):
            self.write_buffer(Buf.CHAN, addr, words)

    def read_buffer(self, buf, addr, count):
        """Read ``count`` words from buffer ``buf`` at ``addr``: int64 array ``(count, lanes)``."""
        spec = self.buffers[Buf(buf)]
        raw = b""
        for start, cnt in read_chunks(count, spec.nbytes, self.max_payload):
            raw += self.command(Command.READ_BUFFER,
                                bytes([_num(buf)]) + (addr + start).to_bytes(2, "little")
                                + cnt.to_bytes(2, "little"))
        return unpack_words(raw, spec)

    def set_reg(self, reg, value, *, force=False):
        """Set register ``reg`` to ``value`` (skipped when it already holds it)."""
        reg, value = Reg(reg), int(value)
        if not force and self._regs.get(reg) == value:
            return
        self.command(Command.SET_REG,
                     bytes([reg.value]) + value.to_bytes(reg_value_bytes(value), "little"))
        self._regs[reg] = value

    def run(self, op, *, wait=True):
        """Start ``op`` (an :class:`hw.isa.Op`); with ``wait``, poll ``STATUS`` until done."""
        self.command(Command.RUN, bytes([Op(op).value]))
        self.runs += 1
        if not wait:
            return
        for _ in range(self.max_polls):
            st = self.status()
            if not st.busy:
                return
        raise TimeoutError(f"RUN {Op(op).name} still busy after {self.max_polls} STATUS polls")

    def _need(self, name):
        """Refuse an operation whose unit ``name`` the config leaves out."""
        if not getattr(self.cfg, name).enabled:
            raise ValueError(f"Board config must include {name}, not leave it out "
                             f"({self.cfg.name})")

"""End to end: the host driver (boards.board.Board) against LinkTop in the simulator, through a
simulated serial line with real UART bit timing."""

from collections import deque

import numpy as np
import pytest
from amaranth.sim import Simulator

from boards.board import Board
from boards.host import BoardError
from boards.link import RSP_SYNC, SYNC, LinkTop, crc8
from hw.config import AccelConfig, AttentionConfig, BufferConfig, LayerNormConfig
from hw.isa import Buf, Command, Error, Reg
from sim import golden

# The tiny preset without LayerNorm, with a small attention controller and buffers of 32 words
# keeps elaboration and simulation short; test_top covers the rest. The link top and the host
# both take the buffers' depth from the config, as a board and its host do.
DEPTH = 32
CFG = AccelConfig.preset("tiny").replace(layernorm=LayerNormConfig(enabled=False),
                                         attention=AttentionConfig(max_seq_len=8, max_head_dim=4),
                                         buffers=BufferConfig(DEPTH))
DIVISOR = 4          # clock cycles per bit
MAX_PAYLOAD = 64


class SimSerial:
    """A serial port whose other end is :class:`boards.link.LinkTop` in the simulator.

    ``write`` queues bytes, which a testbench shifts into ``rx`` as 8N1 frames of ``DIVISOR``
    cycles per bit; another testbench decodes ``tx`` (mid-bit sampling, stop bit checked).
    ``read(n)`` advances the simulation until ``n`` bytes have arrived or ``budget`` cycles
    pass (then it returns what it has, as a timed-out serial port does).
    """

    def __init__(self, *, budget=60_000, timeout_bytes=4):
        self.dut = LinkTop(CFG, DIVISOR, max_payload=MAX_PAYLOAD, timeout_bytes=timeout_bytes)
        self.to_board, self.from_board = deque(), deque()
        self.budget, self.cycles = budget, 0
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-8)
        self.sim.add_testbench(self._drive_rx, background=True)
        self.sim.add_testbench(self._watch_tx, background=True)

    async def _drive_rx(self, ctx):
        ctx.set(self.dut.rx, 1)
        while True:
            if not self.to_board:
                await self._ticks(ctx, DIVISOR)
                continue
            byte = self.to_board.popleft()
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                ctx.set(self.dut.rx, bit)
                await self._ticks(ctx, DIVISOR)

    async def _watch_tx(self, ctx):
        tx = self.dut.tx
        while True:
            await ctx.negedge(tx)
            await self._ticks(ctx, DIVISOR // 2)
            assert ctx.get(tx) == 0, "tx start bit shorter than half a bit"
            byte = 0
            for i in range(8):
                await self._ticks(ctx, DIVISOR)
                byte |= ctx.get(tx) << i
            await self._ticks(ctx, DIVISOR)
            assert ctx.get(tx) == 1, "tx stop bit is not 1"
            self.from_board.append(byte)

    @staticmethod
    async def _ticks(ctx, n):
        for _ in range(n):      # (not tick().repeat(): an abandoned simulation warns)
            await ctx.tick()

    def step(self, cycles):
        self.cycles += cycles
        self.sim.run_until(self.cycles * 1e-8)

    def write(self, data):
        self.to_board.extend(bytes(data))

    def read(self, n):
        start = self.cycles
        while len(self.from_board) < n and self.cycles - start < self.budget:
            self.step(64)
        return bytes(self.from_board.popleft() for _ in range(min(n, len(self.from_board))))


@pytest.fixture(scope="module")
def board():
    # One simulated board for the whole module, as a real board stays up between calls; every
    # test leaves it idle with no bytes in flight.
    line = SimSerial()
    b = Board(line, CFG, max_payload=MAX_PAYLOAD)
    assert b.depth == line.dut.depth == line.dut.accel.depth == DEPTH
    yield b
    assert not line.from_board and not line.to_board


def frame(opcode, payload, crc_delta=0):
    body = bytes([opcode]) + len(payload).to_bytes(2, "little") + bytes(payload)
    return bytes([SYNC]) + body + bytes([(crc8(body) + crc_delta) & 0xff])


def test_gemm_bit_exact(board):
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, (5, 6))
    b = rng.integers(-128, 128, (6, 3))
    np.testing.assert_array_equal(board.gemm(a, b), golden.gemm(a, b))
    m, s = golden.quantize_multiplier(1 / 700)
    np.testing.assert_array_equal(board.gemm(a, b, requant=(m, s)),
                                  golden.requantize(golden.gemm(a, b), m, s,
                                                    acc_width=CFG.acc_width))
    assert board.status() == (False, True, "OK")


def test_softmax_and_gelu_bit_exact(board):
    rng = np.random.default_rng(2)
    q = rng.normal(0, 3000, (2, 7)).round().astype(np.int64)
    p, scale = board.softmax(q, 1e-3)
    np.testing.assert_array_equal(p, golden.softmax(q, 1e-3, CFG.softmax)[0])
    assert scale == 2.0 ** -CFG.softmax.out_width
    x = rng.integers(-128, 128, 12)
    y, y_scale = board.gelu(x, 0.04)
    ref, ref_scale = golden.gelu(x, 0.04, CFG.gelu)
    np.testing.assert_array_equal(y, ref)
    assert y_scale == ref_scale


def test_attention_bit_exact(board):
    # Two causal heads, ragged on both axes of the 2x2 array (L = 5, d = 3).
    rng = np.random.default_rng(3)
    q, k, v = (rng.integers(-128, 128, (2, 5, 3)) for _ in range(3))
    scales = (0.05, 0.04, 0.03, 0.02)
    o, o_scale = board.attention(q, k, v, *scales, causal=True)
    ref, ref_scale = golden.attention(q, k, v, *scales, causal=True, cfg=CFG)
    np.testing.assert_array_equal(o, ref)
    assert o_scale == ref_scale
    assert board.status() == (False, True, "OK")


def test_link_and_buffers_with_new_data_reads(new_data_reads):
    # Marked uncontended (hw.memory): the frame buffer, the top's buffers and the attention
    # scratchpads may return new data on a read-write collision in hardware; the results must
    # not depend on it.
    new_data_reads()
    b = Board(SimSerial(), CFG, max_payload=MAX_PAYLOAD)
    rng = np.random.default_rng(7)
    a, w = rng.integers(-128, 128, (5, 6)), rng.integers(-128, 128, (6, 3))
    np.testing.assert_array_equal(b.gemm(a, w), golden.gemm(a, w))
    q, k, v = (rng.integers(-128, 128, (2, 5, 3)) for _ in range(3))
    scales = (0.05, 0.04, 0.03, 0.02)
    np.testing.assert_array_equal(b.attention(q, k, v, *scales, causal=True)[0],
                                  golden.attention(q, k, v, *scales, causal=True, cfg=CFG)[0])


def _probe(board, words):
    """A good command right after a bad frame works, and buffer A still holds ``words``."""
    np.testing.assert_array_equal(board.read_buffer(Buf.A, 0, len(words)), words)


def test_corrupted_frames_get_error_replies_and_leave_no_residue(board):
    line = board.transport
    before = board.status()      # "done" depends on what ran before on this board
    flags = int(before[0]) | int(before[1]) << 1
    words = np.array([[1, -2], [3, -4], [5, -6]])
    board.write_buffer(Buf.A, 0, words)
    write = bytes([Buf.A.value, 0, 0, 1, 0, 0x55, 0x55])        # would overwrite word 0

    line.write(frame(Command.WRITE_BUFFER.value, write, crc_delta=1))      # bad checksum
    assert board.receive_frame() == (0x10, b"")
    _probe(board, words)

    line.write(frame(Command.WRITE_BUFFER.value, write)[:6])             # truncated
    assert board.receive_frame() == (0x11, b"")
    _probe(board, words)

    line.write(frame(0x7e, b"\x01\x02\x03"))                            # unknown opcode
    assert board.receive_frame() == (Error.OPCODE.value, b"")
    _probe(board, words)

    line.write(frame(Command.WRITE_BUFFER.value, bytes(MAX_PAYLOAD + 1)))  # oversize
    assert board.receive_frame() == (0x12, b"")
    _probe(board, words)

    line.write(b"\x00\x13" + frame(Command.STATUS.value, b""))          # noise before a frame
    assert board.receive_frame() == (0, bytes([flags, Error.OPCODE.value]))
    assert board.status().error == "OK"

    _probe(board, words)


def test_out_of_range_write_sets_error_and_changes_nothing(board):
    words = np.array([[7, 8], [9, 10]])
    board.write_buffer(Buf.A, DEPTH - 2, words)
    with pytest.raises(BoardError, match="RANGE"):
        board.write_buffer(Buf.A, DEPTH - 1, words)           # one word past the end
    with pytest.raises(BoardError, match="VALUE"):
        board.set_reg(Reg.K, CFG.gemm.max_k + 1)
    np.testing.assert_array_equal(board.read_buffer(Buf.A, DEPTH - 2, 2), words)
    assert board.status().error == "VALUE"
    assert board.status().error == "OK"


def test_response_frame_format(board):
    line = board.transport
    line.write(frame(Command.STATUS.value, b""))
    raw = line.read(7)
    assert raw[0] == RSP_SYNC and raw[2:4] == b"\x02\x00"
    assert raw[6] == crc8(raw[1:6])
    line.budget, budget = 20 * 10 * DIVISOR, line.budget
    assert line.read(1) == b""                                   # nothing after the crc
    line.budget = budget


def test_link_errors_are_named():
    assert BoardError(0x10).name == "CHECKSUM" and BoardError(0x11).name == "TIMEOUT"
    assert BoardError(Error.SHAPE.value).name == "SHAPE"


def test_board_rejects_a_non_transport():
    with pytest.raises(TypeError, match="Board port must be a port name or an object with "
                                        "write\\(\\) and read\\(\\), not 3"):
        Board(3, CFG)


def test_sim_serial_times_out():
    line = SimSerial(budget=200)
    line.write(b"\x00")
    assert line.read(1) == b""                                  # short read: no answer
    with pytest.raises(TimeoutError, match="Board sent 0 of 1 expected bytes"):
        Board(line, CFG).receive_frame()

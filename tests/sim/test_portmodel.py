"""sim.portmodel: the command-port model predicts the documented answers, and refuses others."""

import numpy as np
import pytest

from hw.config import AccelConfig
from hw.isa import Buf, Command, Error, Op, Reg
from sim import golden, layout
from sim.portmodel import CommandPortModel, ModelMismatch

TINY = AccelConfig.preset("tiny")


def _ok(model, opcode, payload, data=b""):
    assert model.observe(opcode.value, payload, Error.OK.value, data) == Error.OK


def test_documented_errors():
    model = CommandPortModel(TINY, 16)
    cases = [
        (0x7e, b"\x00\x01", Error.OPCODE),
        (Command.STATUS.value, b"\x00", Error.LENGTH),
        (Command.WRITE_BUFFER.value, bytes([Buf.A.value, 15, 0, 2, 0]) + bytes(4), Error.RANGE),
        (Command.WRITE_BUFFER.value, bytes([Buf.A.value, 0, 0, 2, 0]) + bytes(3), Error.LENGTH),
        (Command.WRITE_BUFFER.value, bytes([0x40, 0, 0, 0, 0]), Error.BUFFER),
        (Command.READ_BUFFER.value, bytes([Buf.COEF.value, 0, 0, 1, 0]), Error.BUFFER),
        (Command.WRITE_BUFFER.value, bytes([Buf.C_OUT.value, 0, 0, 1, 0]) + bytes(2),
         Error.BUFFER),                                     # the narrow views: one way each
        (Command.READ_BUFFER.value, bytes([Buf.X_IN.value, 0, 0, 1, 0]), Error.BUFFER),
        (Command.SET_REG.value, bytes([0x7f, 1]), Error.REGISTER),
        (Command.SET_REG.value, bytes([Reg.M.value, TINY.gemm.max_m + 1]), Error.VALUE),
        (Command.SET_REG.value, bytes([Reg.M.value]) + bytes(9), Error.LENGTH),
        (Command.RUN.value, bytes([Op.GEMM.value]), Error.SHAPE),
        (Command.RUN.value, bytes([0x40]), Error.UNIT),
    ]
    for opcode, payload, code in cases:
        assert model.observe(opcode, payload, code.value, b"") == code
        with pytest.raises(ModelMismatch):       # any other answer is refused
            CommandPortModel(TINY, 16).observe(opcode, payload, Error.OK.value, b"")
    # STATUS reports the last error, then clears it.
    _ok(model, Command.STATUS, b"", bytes([0, Error.UNIT.value]))
    _ok(model, Command.STATUS, b"", bytes([0, 0]))


def test_run_then_busy_then_result():
    model = CommandPortModel(TINY, 16)
    R, C = TINY.array.rows, TINY.array.cols
    spec_a, spec_b, spec_c = (model.specs[b] for b in (Buf.A, Buf.B, Buf.C))
    rng = np.random.default_rng(0)
    a, b = rng.integers(-128, 128, (3, 4)), rng.integers(-128, 128, (4, 3))
    for buf, words, spec in ((Buf.A, layout.column_words(a, R), spec_a),
                             (Buf.B, layout.row_words(b, C), spec_b)):
        _ok(model, Command.WRITE_BUFFER,
            bytes([buf.value, 0, 0, len(words), 0]) + layout.pack_words(words, spec))
    for reg, v in ((Reg.M, 3), (Reg.K, 4), (Reg.N, 3)):
        _ok(model, Command.SET_REG, bytes([reg.value, v]))
    _ok(model, Command.RUN, bytes([Op.GEMM_RAW.value]))
    # While the run may be in flight, a SET_REG is BUSY or (run ended) OK.
    assert model.observe(Command.SET_REG.value, bytes([Reg.N.value, 1]), Error.BUSY.value,
                         b"") == Error.BUSY
    assert model.run.refused == 1
    _ok(model, Command.STATUS, b"", bytes([1, Error.BUSY.value]))     # still busy
    _ok(model, Command.STATUS, b"", bytes([2, 0]))                     # done
    c = layout.tile_rows(golden.gemm(a, b), R, C)
    read = bytes([Buf.C.value, 0, 0, len(c), 0])
    _ok(model, Command.READ_BUFFER, read, layout.pack_words(c, spec_c))
    wrong = c.copy()
    wrong[-1, 0] += 1
    with pytest.raises(ModelMismatch, match=r"C word 5 lane 0: .*1 lanes differ"):
        model.observe(Command.READ_BUFFER.value, read, Error.OK.value,
                      layout.pack_words(wrong, spec_c))


def test_untrusted_constants():
    model = CommandPortModel(TINY, 16)
    assert model.predictable(Op.GEMM) and not model.predictable(Op.SOFTMAX)
    model.trust(Op.SOFTMAX)
    assert model.predictable(Op.SOFTMAX)
    _ok(model, Command.SET_REG, bytes([Reg.SM_DIVISOR.value, 0]))
    assert not model.predictable(Op.SOFTMAX)

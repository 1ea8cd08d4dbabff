"""The stream rules hold on every unit's ports, the top's erroring commands change nothing, and
each proof fails on a broken variant.
LayerNorm's proof (72 cycles deep, about a minute) is a slow one: tests/formal/test_catalogue.py
runs it with the marker ``slow_proof``."""

import pytest
from mutants import forced, mutant
from passing import BY_NAME, assert_passes

UNITS = ["gemm.ports", "requant.ports", "requant.lanes", "residual.ports", "accumulate.ports",
         "channels.ports", "softmax.ports", "gelu.ports", "attention.ports", "uart.rx", "uart.tx",
         "link.ports", "arbiter.engine", "arbiter.softmax", "top.errors"]


@pytest.mark.parametrize("name", UNITS)
def test_proof_passes(name):
    assert_passes(name)


# (proof, port, mutation): the proof must reject each.
MUTANTS = [
    ("gemm.ports", "out", "withdraw"),
    ("requant.ports", "o", "payload"),
    ("requant.lanes", "o", "withdraw"),
    ("residual.ports", "o", "payload"),
    # A row's sum corrupted, a row lost, an old word taken without a row, a row's payload
    # changed on its way in (the stream rules hold; its sum is wrong).
    ("accumulate.ports", "o", "payload"),
    ("accumulate.ports", "o", "drop"),
    ("accumulate.ports", "old", "accept"),
    ("accumulate.ports", "i", "corrupt"),
    ("channels.ports", "o", "withdraw"),
    ("softmax.ports", "o", "withdraw"),
    ("gelu.ports", "o", "payload"),
    pytest.param("layernorm.ports", "o", "withdraw", marks=pytest.mark.slow_proof),
    ("attention.ports", "gemm_cmd", "payload"),
    ("attention.ports", "rows", "withdraw"),
    ("uart.rx", "o", "withdraw"),
    ("uart.tx", "i", "accept"),
    ("link.ports", "cmd", "payload"),
    ("arbiter.engine", "a", "payload"),
    ("arbiter.softmax", "rows_o", "withdraw"),
    # An OK turned into an error code: the command did change a register.
    ("top.errors", "rsp", "payload"),
]


@pytest.mark.parametrize(("name", "port", "mutation"), MUTANTS)
def test_mutant_fails(name, port, mutation):
    outcome = BY_NAME[name].run(mutant(port, mutation), cover=False)
    assert outcome.check.status == "FAIL", outcome.check.log
    assert outcome.trace is not None and outcome.trace.exists()


# (submodule of the top, input forced high, the property that must fail): a buffer written, a
# run started, by a command answered with an error.
FORCED = [
    ("memories", ("host", "wen"), "top: an error wrote a buffer word"),
    ("dispatcher", ("request", "run"), "top: an error started a run"),
]


@pytest.mark.parametrize(("submodule", "path", "message"), FORCED)
def test_top_forced_fails(submodule, path, message):
    outcome = BY_NAME["top.errors"].run(forced(submodule, path), cover=False)
    assert outcome.check.status == "FAIL", outcome.check.log
    assert message in outcome.failed
    assert outcome.trace is not None and outcome.trace.exists()

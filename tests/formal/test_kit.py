"""The stream kit's proofs pass, and each fails on a broken variant of its component."""

import pytest
from mutants import mutant
from passing import BY_NAME, assert_passes

KIT = ["skid.counts", "skid.order", "queue.counts", "queue.order", "credits.early",
       "credits.late", "countdown.step1", "countdown.step2", "delay.3", "reader.walk"]


@pytest.mark.parametrize("name", KIT)
def test_proof_passes(name):
    assert_passes(name)


# (proof, port, mutation): the proof must reject each.
MUTANTS = [
    ("skid.counts", "o", "withdraw"),
    ("skid.counts", "o", "payload"),
    ("skid.counts", "o", "drop"),
    ("skid.order", "o", "duplicate"),
    ("skid.order", "o", "drop"),
    ("queue.counts", "o", "withdraw"),
    ("queue.counts", "o", "drop"),
    ("queue.order", "o", "duplicate"),
    ("queue.order", "o", "payload"),
    ("credits.early", "room", "flip"),
    ("credits.late", "room", "flip"),
    ("countdown.step1", "last", "flip"),
    ("countdown.step2", "left", "flip"),
    ("delay.3", "o", "flip"),
    ("reader.walk", "o", "withdraw"),
    ("reader.walk", "o", "drop"),
    ("reader.walk", "o", "duplicate"),
]


@pytest.mark.parametrize(("name", "port", "mutation"), MUTANTS)
def test_mutant_fails(name, port, mutation):
    outcome = BY_NAME[name].run(mutant(port, mutation), cover=False)
    assert outcome.check.status == "FAIL", outcome.check.log
    assert outcome.trace is not None and outcome.trace.suffix == ".vcd"
    assert outcome.trace.exists()

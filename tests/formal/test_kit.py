"""The stream kit's proofs pass, and each fails on a broken variant of its component."""

import pytest
from mutants import ForgetfulCredits, mutant
from passing import BY_NAME, assert_passes

import formal.kit
import hw.reader
from formal.proof import Proof

KIT = ["skid.counts", "skid.order", "queue.counts", "queue.order", "credits.early",
       "credits.late", "countdown.step1", "countdown.step2", "countdown.wrap", "delay.3",
       "reader.order", "reader.latency2"]


@pytest.mark.parametrize("name", KIT)
def test_proof_passes(name):
    assert_passes(name)


# (proof, port, mutation): the proof must reject each.
MUTANTS = [
    ("skid.counts", "o", "withdraw"),
    ("skid.counts", "o", "payload"),
    ("skid.counts", "o", "drop"),
    ("skid.order", "o", "drop"),
    ("queue.counts", "o", "withdraw"),
    ("queue.counts", "o", "drop"),
    ("queue.order", "o", "duplicate"),
    ("credits.early", "room", "flip"),
    ("credits.late", "room", "flip"),
    ("countdown.step1", "last", "flip"),
    ("countdown.step2", "left", "flip"),
    ("countdown.wrap", "last", "flip"),
    ("delay.3", "o", "flip"),
    ("reader.order", "o", "withdraw"),
]


@pytest.mark.parametrize(("name", "port", "mutation"), MUTANTS)
def test_mutant_fails(name, port, mutation):
    outcome = BY_NAME[name].run(mutant(port, mutation), cover=False)
    assert outcome.check.status == "FAIL", outcome.check.log
    assert outcome.trace is not None and outcome.trace.suffix == ".vcd"
    assert outcome.trace.exists()


# (proof, port, mutation, a property that must fail): the properties of the unbounded proofs of
# order, each rejecting a broken variant.
NAMED = [
    ("skid.order", "i", "corrupt", "sb: the tracked beat is inside, at its place"),
    ("skid.order", "o", "duplicate", "sb: the beats held are those inside"),
    ("skid.order", "o", "payload", "sb: the tracked beat leaves in order"),
    ("queue.order", "i", "corrupt", "sb: the tracked beat is inside, at its place"),
    ("queue.order", "o", "drop", "sb: the beats held are those inside"),
    ("queue.order", "o", "payload", "sb: the tracked beat leaves in order"),
    ("reader.order", "o", "drop", "reader: a held beat is offered in time"),
    ("reader.order", "o", "duplicate", "reader: the beats held are those inside"),
    ("reader.order", "o", "payload", "reader: the tracked beat leaves in order"),
    ("reader.order", "mem", "address", "reader: the reads in walk order"),
    ("reader.order", "control", "loop", "reader: the loop loaded"),
]


@pytest.mark.parametrize(("name", "port", "mutation", "message"), NAMED)
def test_mutant_fails_property(name, port, mutation, message):
    outcome = BY_NAME[name].run(mutant(port, mutation), cover=False)
    assert outcome.check.status == "FAIL", outcome.check.log
    assert message in outcome.failed


def test_reader_forgetful_credits_fail(monkeypatch):
    # Credits that forget a claim: the count of the words in flight and queued is wrong.
    monkeypatch.setattr(hw.reader, "Credits", ForgetfulCredits)
    outcome = BY_NAME["reader.order"].run(cover=False)
    assert outcome.check.status == "FAIL", outcome.check.log
    assert "reader: the credits count the words in flight and queued" in outcome.failed


def test_reader_wrong_latency_fails():
    # A reader that takes a word a cycle after its address, behind a memory of latency 2 (C's
    # registered read address), keeps the wrong words.
    proof = Proof("reader.wrong-latency", "reader", "prove", 10,
                  formal.kit.reader(3, latency=1, memory_latency=2))
    outcome = proof.run(cover=False)
    assert outcome.check.status == "FAIL", outcome.check.log

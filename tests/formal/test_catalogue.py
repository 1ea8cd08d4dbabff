"""The catalogue's selection and table, and the runner's report of a counterexample."""

import pytest
from mutants import mutant
from passing import assert_passes

from formal.catalogue import PROOFS, UNITS, select, table


def test_select_by_unit_and_speed():
    assert [p.name for p in select("credits")] == ["credits.early", "credits.late"]
    assert all(not p.slow for p in select())
    assert {p.name for p in select(slow=True)} == {p.name for p in PROOFS}
    assert set(UNITS) >= {"skid", "queue", "credits", "reader", "gemm", "softmax", "uart"}


def test_select_unknown_unit():
    with pytest.raises(ValueError, match=r"^Unit must be one of skid, .*, not 'nope'$"):
        select("nope")


def test_table_names_the_counterexample():
    proof = {p.name: p for p in PROOFS}["skid.counts"]
    passed = proof.run(cover=False)
    failed = proof.run(mutant("o", "withdraw"), cover=False, suffix=".mutant")
    text = table([passed, failed])
    lines = text.splitlines()
    assert lines[0].split() == ["property", "mode", "depth", "result", "time"]
    assert lines[2].split()[:4] == ["skid.counts", "prove", "4", "PASS"]
    assert lines[3].split()[:4] == ["skid.counts", "prove", "4", "FAIL"]
    assert lines[4] == f"skid.counts: counterexample {failed.trace}"
    # The properties a withdrawn valid breaks; the solver names the first it reaches.
    assert failed.failed and set(failed.failed) <= {"o: valid withdrawn before ready",
                                                    "skid: held beats"}
    assert lines[5:] == [f"  {message}" for message in failed.failed]
    assert failed.trace.suffix == ".vcd" and failed.trace.exists()


@pytest.mark.slow_proof
@pytest.mark.parametrize("name", [p.name for p in PROOFS if p.slow])
def test_slow_proof_passes(name):
    assert_passes(name)

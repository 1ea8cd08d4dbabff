"""The proofs by name, and the check that one passes with its cover (no vacuous property)."""

from formal.catalogue import PROOFS

BY_NAME = {p.name: p for p in PROOFS}


def assert_passes(name):
    """Runs proof ``name``: its properties hold, and its cover is reached where it has one
    (every fast proof has one)."""
    proof = BY_NAME[name]
    outcome = proof.run()
    assert outcome.check.status == "PASS", outcome.check.log
    if not proof.slow:
        assert outcome.cover is not None, f"{name} has no cover"
    assert outcome.cover is None or outcome.cover.status == "PASS", outcome.cover.log

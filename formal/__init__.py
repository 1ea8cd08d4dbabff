"""Formal proofs of intformer's streams: properties, a scoreboard, a runner and the catalogue."""

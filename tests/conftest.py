"""Shared fixtures and Hypothesis profiles."""

import os

from hypothesis import HealthCheck, settings

# Simulations are slow per example; keep example counts modest and deadlines off.
settings.register_profile(
    "default", max_examples=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_collection_modifyitems(config, items):
    """Board builds first: the longest tests start at once, the rest fill the other workers."""
    items.sort(key=lambda item: item.get_closest_marker("place_and_route") is None)

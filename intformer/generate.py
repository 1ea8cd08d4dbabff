"""Verilog generation for one unit or the whole accelerator."""

import json

from amaranth.back import verilog

from boards.toolchain import setup_environment
from hw.units import UNITS, build_unit

from . import datasheet

__all__ = ["generate_verilog", "write_outputs"]


def generate_verilog(cfg, unit="gemm", *, component=None):
    """Verilog text of ``unit`` (a name from :data:`hw.units.UNITS`) built for ``cfg``."""
    setup_environment()
    component = build_unit(unit, cfg) if component is None else component
    return verilog.convert(component, name=f"intformer_{unit}", emit_src=False)


def write_outputs(cfg, out_dir, units=None):
    """Write ``<unit>.v`` and its datasheet ``<unit>.md`` for each unit, and
    ``intformer.json`` describing the config and every unit (:func:`intformer.datasheet.
    describe`; for ``top`` also its command protocol)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    units = list(UNITS) if units is None else units
    description = {"config": cfg.to_dict(), "acc_width": cfg.acc_width, "units": {}}
    written = []
    for unit in units:
        path = out_dir / f"{unit}.v"
        component = build_unit(unit, cfg)
        sheet = datasheet.describe(unit, component)
        if unit == "top":
            sheet["protocol"] = datasheet.protocol(cfg, component.depth)
        path.write_text(generate_verilog(cfg, unit, component=component))
        (out_dir / f"{unit}.md").write_text(datasheet.markdown(sheet, cfg.name))
        written += [path, out_dir / f"{unit}.md"]
        description["units"][unit] = sheet
    desc_path = out_dir / "intformer.json"
    desc_path.write_text(json.dumps(description, indent=2) + "\n")
    written.append(desc_path)
    return written



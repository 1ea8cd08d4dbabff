"""The catalogue of proofs: those of the stream kit, the units and the top, selected by unit and
speed, and their verdicts as a table."""

from . import kit, top, units

__all__ = ["PROOFS", "UNITS", "select", "table"]

PROOFS = kit.PROOFS + units.PROOFS + top.PROOFS

#: The names ``intformer prove --unit`` accepts.
UNITS = tuple(dict.fromkeys(p.unit for p in PROOFS))


def select(unit=None, *, slow=False):
    """The proofs of ``unit`` (all units when ``None``), the slow ones only with ``slow``."""
    if unit is not None and unit not in UNITS:
        raise ValueError(f"Unit must be one of {', '.join(UNITS)}, not {unit!r}")
    return [p for p in PROOFS if (unit is None or p.unit == unit) and (slow or not p.slow)]


def table(outcomes):
    """The verdicts as a text table: property, mode, depth, result, time."""
    rows = [("property", "mode", "depth", "result", "time")]
    for o in outcomes:
        rows.append((o.proof.name, o.proof.mode, str(o.proof.depth), o.status,
                     f"{o.seconds:.1f} s"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i != 2 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for o in outcomes:
        if o.trace is not None and not o.passed:
            lines.append(f"{o.proof.name}: counterexample {o.trace}")
            lines.extend(f"  {message}" for message in o.failed)
    return "\n".join(lines)

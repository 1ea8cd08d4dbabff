"""intformer gateware: one Amaranth component per unit, configured by :mod:`hw.config`."""

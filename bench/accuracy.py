"""Accuracy of the integer units against float64, beside I-BERT's published algorithms.

Run: ``python bench/accuracy.py``. Prints, per unit, max and RMS error on dense grids and on
random rows, for intformer's golden model (variants "ibert" and "shift") and for a reference
implementation of I-BERT's algorithm run on the same inputs.
"""

import numpy as np

#: Each section appends ``(unit name, function returning a list of table rows)``.
#: A row is a dict: {"unit", "model", "inputs", "max_err", "rms_err", "budget"}.
SECTIONS = []

# == Softmax =====================================================================================

# == GELU ========================================================================================

# == LayerNorm ===================================================================================


def main():
    rows = []
    for _, fn in SECTIONS:
        rows.extend(fn())
    header = f"{'unit':<10} {'model':<22} {'inputs':<34} {'max err':>10} {'RMS err':>10}  budget"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['unit']:<10} {r['model']:<22} {r['inputs']:<34} {r['max_err']:>10.5f} "
              f"{r['rms_err']:>10.5f}  {r.get('budget', '')}")
    return rows


if __name__ == "__main__":
    np.set_printoptions(precision=5)
    main()

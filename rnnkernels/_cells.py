"""The cell table, read from the extension (csrc/cells/cells.h and each cell's header):
each cell's name and traits, so that the op registrations here keep no copy of them.

Without the extension there are no ops to register and the tables are empty; the
reference math (reference.py) needs only a cell's name.
"""

from __future__ import annotations

from . import _backend

# name -> {"kind", "gates", "saved", "has_cell_state", "sums_projections",
#          "reads_previous_hidden", "direct_hidden_gradient", "rowwise"}
TABLE: dict[str, dict] = dict(_backend._C.cell_table()) if _backend._C is not None else {}

CELLS = tuple(TABLE)
GATES = {name: row["gates"] for name, row in TABLE.items()}
SAVED = {name: row["saved"] for name, row in TABLE.items()}
HAS_CELL_STATE = {name: row["has_cell_state"] for name, row in TABLE.items()}
# The cells the rowwise ops (layer norms, zoneout) take.
ROWWISE_CELLS = tuple(name for name, row in TABLE.items() if row["rowwise"])

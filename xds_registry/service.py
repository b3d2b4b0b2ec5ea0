"""The Document Registry's SOAP operations (CONTRACT.md: POST /xds/registry, dispatch on
wsa:Action): action -> (Transaction descriptor, handler), ITI TF-2b 3.42 / 3.57 / 3.62 and
ITI TF-2a 3.18.  Kept a plain dict literal plus ``OPERATIONS.update(...)`` lines so each
transaction's owner adds its own entry."""
from __future__ import annotations

from hie.transactions import ITI_42, ITI_57, ITI_62
from xds_registry import iti42, iti57, iti62

OPERATIONS = {
    ITI_42.action: (ITI_42, iti42.handle),
    ITI_57.action: (ITI_57, iti57.handle),
    ITI_62.action: (ITI_62, iti62.handle),
}

# ITI-18 Registry Stored Query and ITI-51 Multi-Patient Stored Query (ITI TF-2a 3.18, TF-2b 3.51)
from hie.transactions import ITI_18, ITI_51  # noqa: E402
from xds_registry import iti18, iti51  # noqa: E402

OPERATIONS[ITI_18.action] = (ITI_18, iti18.handle)
OPERATIONS[ITI_51.action] = (ITI_51, iti51.handle)

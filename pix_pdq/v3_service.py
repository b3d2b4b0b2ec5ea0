"""The patient index's HL7 v3 SOAP operations (CONTRACT.md: POST /pix — ITI-44 feed and ITI-45
query, PIXV3, ITI TF-2b 3.44 / 3.45; POST /pdq — ITI-47 PDQV3, ITI TF-2b 3.47): request
wsa:Action -> (Transaction descriptor, handler), as :mod:`xds_registry.service` does for the
registry.  An endpoint with no operation yet is not mounted."""
from __future__ import annotations

PIX_OPERATIONS: dict = {}
PDQ_OPERATIONS: dict = {}

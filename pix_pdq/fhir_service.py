"""The patient index's FHIR R4 routes under /fhir (CONTRACT.md): Patient create / update (ITI-104
Patient Identity Feed FHIR), PIXm ``$ihe-pix`` (ITI-83) and PDQm search (ITI-78)."""
from __future__ import annotations

from typing import Any


def routes(node: Any) -> list:
    return []

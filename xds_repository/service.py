"""The Document Repository's SOAP operations (ITI TF-2b 3.41.5 and 3.43.5: the wsa:Action of
Provide and Register Document Set-b and of Retrieve Document Set), served at
``POST /xds/repository`` (CONTRACT.md) by :class:`hie.soap_http.SoapService`."""
from __future__ import annotations

from hie.transactions import ITI_41, ITI_43
from xds_repository import iti41, iti43

OPERATIONS = {
    ITI_41.action: (ITI_41, iti41.handle),
    ITI_43.action: (ITI_43, iti43.handle),
}

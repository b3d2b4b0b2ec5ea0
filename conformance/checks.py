"""The verdicts of a test step — sans-IO: what the NIST test plans expect of a response.

- **ExpectedStatus** (ebRS 3.0 RegistryResponse status; ITI TF-3 4.2.4 error reporting) and
  **ExpectedErrorCode** (ITI TF-3 Table 4.2.4.1-2; each code expected must be among the
  RegistryErrors returned) and **ExpectedErrorMessage** (a text some error's codeContext
  holds) — :func:`status`.  A SOAP Fault passes only a step expecting ``Fault``; a PIX feed's
  ACK is Success when MSA-1 is AA or CA (HL7 v2.5 2.9.2).
- **ExpectedContents** of a stored query's response (ITI TF-2a 3.18.4.1.3) — :func:`contents`;
  the names the kit uses, counted over the ``rim:RegistryObjectList``:

  ===================================  =====================================================
  ``SubmissionSets`` / ``Documents`` /  exactly ``count`` objects of that kind (a
  ``Folders`` / ``Associations`` /      RegistryPackage is a SubmissionSet or a Folder by its
  ``ObjectRefs count="n"``              classification, ITI TF-3 4.2.3.3 / 4.2.3.4)
  ``None``                              no object at all
  ``SSwithOneDoc``, ``SSwithTwoDoc``,   one SubmissionSet, that many DocumentEntries and
  ``SSwithOneFol``, ``SSwithOneDocOneFol``,  Folders (none where the name says none)
  ``SSwithTwoDocOneFol``
  ``DocumentEntries``                   at least one DocumentEntry
  ``DocApp`` / ``DocDep``               every DocumentEntry returned is Approved / Deprecated
                                        (true of none: 30006 expects ``Documents count=0``
                                        and ``DocApp`` of one response)
  ``OneDocApp`` / ``OneDocDep``         exactly one DocumentEntry, Approved / Deprecated
  ``SSApproved`` / ``FolApp``           every SubmissionSet / Folder returned is Approved
  ``HasXFRM_RPLC``                      an XFRM_RPLC association (ITI TF-3 4.2.2.2)
  ===================================  =====================================================

  A name not in this table is a failed verdict naming it — never passed unseen.
- **Assertions**: an XPath 1.0 expression over the test plan's log (``DataRef file="THIS"``),
  true by XPath's ``boolean()`` — :func:`assertion`.
- **ReferenceDocument** of an ITI-43 response: the document returned for the uniqueId is the
  file's bytes, and agrees with the metadata an earlier query returned (mimeType, hash, size;
  ITI TF-2b 3.43.4.2.3) — :func:`retrieved`.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from lxml import etree

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
XOP = "http://www.w3.org/2004/08/xop/include"
SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
FOLDER = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
XFRM_RPLC = "urn:ihe:iti:2007:AssociationType:XFRM_RPLC"


@dataclass(frozen=True)
class Verdict:
    what: str          # e.g. "ExpectedStatus Success", "ExpectedContents Documents count=2"
    passed: bool
    detail: str = ""   # what was found, when it matters


def status(expected: str, found: str, codes_found: list[str], contexts: list[str],
           codes: list[str], messages: list[str]) -> list[Verdict]:
    """``found``: Success / PartialSuccess / Failure (ebRS), or Fault."""
    out = [Verdict(f"ExpectedStatus {expected}", found == expected, f"status {found}"
                   + (f", errors {', '.join(codes_found)}" if codes_found else "")
                   + (f": {'; '.join(c for c in contexts if c)}" if any(contexts) else ""))]
    for code in codes:
        out.append(Verdict(f"ExpectedErrorCode {code}", code in codes_found,
                           f"errors returned: {', '.join(codes_found) or 'none'}"))
    for text in messages:   # the kit puts error codes here too (11996: XDSUnknownPatientId)
        out.append(Verdict(f"ExpectedErrorMessage {text}",
                           any(text in c for c in contexts + codes_found),
                           "; ".join(codes_found + contexts)[:500]))
    return out


@dataclass
class Objects:
    """The objects of a query response, by kind."""

    submission_sets: list[etree._Element]
    documents: list[etree._Element]
    folders: list[etree._Element]
    associations: list[etree._Element]
    object_refs: list[etree._Element]

    @property
    def total(self) -> int:
        return sum(map(len, (self.submission_sets, self.documents, self.folders,
                             self.associations, self.object_refs)))


def objects(response: etree._Element | None) -> Objects:
    """Sort the objects of ``response`` (an AdhocQueryResponse) by kind."""
    out = Objects([], [], [], [], [])
    if response is None:
        return out
    lists = response.findall(f"{{{RIM}}}RegistryObjectList")
    items = [c for lst in lists for c in lst if isinstance(c.tag, str)]
    # a RegistryPackage may be classified inside itself or by a Classification of the list
    kinds = {c.get("classifiedObject"): c.get("classificationNode")
             for c in items if c.tag == f"{{{RIM}}}Classification"}
    for c in items:
        if c.tag == f"{{{RIM}}}ExtrinsicObject":
            out.documents.append(c)
        elif c.tag == f"{{{RIM}}}Association":
            out.associations.append(c)
        elif c.tag == f"{{{RIM}}}ObjectRef":
            out.object_refs.append(c)
        elif c.tag == f"{{{RIM}}}RegistryPackage":
            nodes = {x.get("classificationNode") for x in c.findall(f"{{{RIM}}}Classification")}
            nodes.add(kinds.get(c.get("id")))
            if SUBMISSION_SET in nodes:
                out.submission_sets.append(c)
            elif FOLDER in nodes:
                out.folders.append(c)
    return out


_COUNTS = {"SubmissionSets": "submission_sets", "Documents": "documents", "Folders": "folders",
           "Associations": "associations", "ObjectRefs": "object_refs"}
# name -> (SubmissionSets, DocumentEntries, Folders) exactly
_SHAPES = {"SSwithOneDoc": (1, 1, 0), "SSwithTwoDoc": (1, 2, 0), "SSwithOneFol": (1, 0, 1),
           "SSwithOneDocOneFol": (1, 1, 1), "SSwithTwoDocOneFol": (1, 2, 1)}
KNOWN_CONTENTS = set(_COUNTS) | set(_SHAPES) | {
    "None", "DocumentEntries", "DocApp", "DocDep", "OneDocApp", "OneDocDep", "SSApproved",
    "FolApp", "HasXFRM_RPLC"}


def _all(objs: list[etree._Element], status_: str) -> bool:
    return all(o.get("status") == status_ for o in objs)


def contents(name: str, attrs: dict[str, str], response: etree._Element | None) -> Verdict:
    """One ExpectedContents check over a query response (see the module text)."""
    what = "ExpectedContents " + " ".join([name] + [f"{k}={v}" for k, v in sorted(attrs.items())])
    o = objects(response)
    found = (f"found {len(o.submission_sets)} SubmissionSets, {len(o.documents)} DocumentEntries, "
             f"{len(o.folders)} Folders, {len(o.associations)} Associations, "
             f"{len(o.object_refs)} ObjectRefs")
    if name in _COUNTS:
        try:
            want = int(attrs.get("count", ""))
        except ValueError:
            return Verdict(what, False, "no count given")
        return Verdict(what, len(getattr(o, _COUNTS[name])) == want, found)
    if name in _SHAPES:
        ss, docs, fols = _SHAPES[name]
        return Verdict(what, (len(o.submission_sets), len(o.documents), len(o.folders))
                       == (ss, docs, fols), found)
    statuses = "; statuses " + ", ".join(
        (x.get("status") or "none").rsplit(":", 1)[-1] for x in o.documents + o.folders
        + o.submission_sets)
    checks = {
        "None": lambda: o.total == 0,
        "DocumentEntries": lambda: bool(o.documents),
        "DocApp": lambda: _all(o.documents, APPROVED),
        "DocDep": lambda: _all(o.documents, DEPRECATED),
        "OneDocApp": lambda: len(o.documents) == 1 and _all(o.documents, APPROVED),
        "OneDocDep": lambda: len(o.documents) == 1 and _all(o.documents, DEPRECATED),
        "SSApproved": lambda: _all(o.submission_sets, APPROVED),
        "FolApp": lambda: _all(o.folders, APPROVED),
        "HasXFRM_RPLC": lambda: any(a.get("associationType") == XFRM_RPLC
                                    for a in o.associations),
    }
    if name not in checks:
        return Verdict(what, False, "the runner does not know this ExpectedContents check")
    return Verdict(what, checks[name](), found + statuses)


def assertion(ident: str, xpath: str, log: etree._Element) -> Verdict:
    """An ``Assert``: ``xpath`` over ``log`` must be true (XPath 1.0 ``boolean()``)."""
    what = f"Assert {ident}"
    try:
        value = log.xpath(f"boolean({xpath})")
    except etree.XPathError as exc:
        return Verdict(what, False, f"not an XPath 1.0 expression: {exc}: {xpath}")
    return Verdict(what, bool(value), xpath)


def _slot(obj: etree._Element, name: str) -> str:
    return obj.findtext(f"{{{RIM}}}Slot[@name='{name}']/{{{RIM}}}ValueList/{{{RIM}}}Value",
                        "").strip()


def _content(doc: etree._Element, attachments: dict[str, bytes]) -> bytes | None:
    inc = doc.find(f"{{{XOP}}}Include")
    if inc is not None:
        return attachments.get(inc.get("href", "").removeprefix("cid:"))
    try:
        return base64.b64decode("".join(doc.itertext()), validate=False)
    except ValueError:
        return None


def retrieved(uid: str, expected: bytes, response: etree._Element | None,
              attachments: dict[str, bytes], metadata: etree._Element | None) -> list[Verdict]:
    """ReferenceDocument ``uid``: the DocumentResponse for it holds ``expected``; with
    ``metadata`` (an AdhocQueryResponse naming the DocumentEntry), mimeType, hash and size
    agree with it."""
    what = f"ReferenceDocument {uid}"
    items = [] if response is None else [
        d for d in response.findall(f"{{{XDSB}}}DocumentResponse")
        if d.findtext(f"{{{XDSB}}}DocumentUniqueId", "").strip() == uid]
    if len(items) != 1:
        return [Verdict(what, False, f"{len(items)} DocumentResponse for this uniqueId")]
    item = items[0]
    doc = item.find(f"{{{XDSB}}}Document")
    data = None if doc is None else _content(doc, attachments)
    out = [Verdict(what + " content", data == expected,
                   "no document" if data is None else f"{len(data)} bytes returned, "
                   f"{len(expected)} expected")]
    entry = None
    if metadata is not None:
        for eo in metadata.iter(f"{{{RIM}}}ExtrinsicObject"):
            if any(e.get("value") == uid for e in eo.findall(f"{{{RIM}}}ExternalIdentifier")):
                entry = eo
    if entry is not None:
        mime = item.findtext(f"{{{XDSB}}}mimeType", "").strip()
        out.append(Verdict(what + " mimeType", mime == entry.get("mimeType"),
                           f"{mime!r} returned, metadata says {entry.get('mimeType')!r}"))
        if data is not None and _slot(entry, "hash"):
            digest = hashlib.sha1(data).hexdigest()
            out.append(Verdict(what + " hash", digest == _slot(entry, "hash").lower(),
                               f"SHA-1 {digest}, metadata says {_slot(entry, 'hash')}"))
        if data is not None and _slot(entry, "size"):
            out.append(Verdict(what + " size", str(len(data)) == _slot(entry, "size"),
                               f"{len(data)} bytes, metadata says {_slot(entry, 'size')}"))
    return out


__all__ = ["Verdict", "Objects", "KNOWN_CONTENTS", "status", "objects", "contents", "assertion",
           "retrieved"]

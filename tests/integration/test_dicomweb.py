"""DICOMweb at /dicomweb (dicom_qr.dicomweb, qido, wado, stow) on a live node over HTTP (httpx),
on SQLite and PostgreSQL: STOW-RS stores PS3.10 files as sent (and answers 200 / 202 / 409 /
415 / 400 with the Store Instances Response), QIDO-RS searches with the C-FIND matching
(Chinese names folded, tags or keywords, includefield, limit / offset, fuzzymatching warned),
WADO-RS returns the files as stored (or re-encoded to Explicit VR Little Endian, or 406),
their metadata without pixel data, and rendered frames; every request is audited."""
from __future__ import annotations

import io
import uuid

import httpx
import pydicom
import pytest
import sqlalchemy as sa
from PIL import Image
from pydicom.uid import generate_uid

from dicom_qr import convert
from dicom_qr.tables import dicom_instance
from hie.tables import audit_event as t_audit
from tests.dicom_support import instance

DICOM_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def multipart(parts: list[bytes], kind: str = "application/dicom") -> tuple[bytes, str]:
    mark = uuid.uuid4().hex
    body = b"".join(f"--{mark}\r\nContent-Type: {kind}\r\n\r\n".encode() + p + b"\r\n"
                    for p in parts) + f"--{mark}--\r\n".encode()
    return body, f'multipart/related; type="{kind}"; boundary={mark}'


def split(resp: httpx.Response) -> list[tuple[str, bytes]]:
    """(Content-Type, bytes) of each part of a multipart/related answer."""
    mark = resp.headers["content-type"].split("boundary=")[1].strip('"')
    out = []
    for chunk in resp.content.split(f"--{mark}".encode())[1:-1]:
        head, _, body = chunk.partition(b"\r\n\r\n")
        ctype = [line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                 if line.lower().startswith(b"content-type")][0]
        out.append((ctype, body[:-2]))
    return out


@pytest.fixture
def data(tmp_path):
    s1, s2, series = generate_uid(), generate_uid(), generate_uid()
    paths = [instance(tmp_path, "a1.dcm", patient_id="P001", patient_name="Zhang^San=张^三",
                      charset="ISO_IR 192", study=s1, series=series, number=1),
             instance(tmp_path, "a2.dcm", patient_id="P001", patient_name="Zhang^San=张^三",
                      charset="ISO_IR 192", study=s1, series=series, number=2, implicit=True),
             instance(tmp_path, "b1.dcm", patient_id="P002", patient_name="章^三",
                      charset="GB18030", study=s2, series=generate_uid(), study_date="20250315")]
    return {"paths": paths, "studies": (s1, s2), "series": series}


def stow(live, parts: list[bytes], path: str = "/dicomweb/studies", **kw) -> httpx.Response:
    body, ctype = multipart(parts, **kw)
    return httpx.post(live.http + path, content=body, headers={"Content-Type": ctype},
                      timeout=30)


@pytest.fixture
def stored(live, data):
    resp = stow(live, [p.read_bytes() for p in data["paths"]])
    assert resp.status_code == 200, resp.text
    return data


def test_stow_stores_the_files_as_sent(live, data):
    resp = stow(live, [p.read_bytes() for p in data["paths"]])
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/dicom+json"
    refs = resp.json()["00081199"]["Value"]
    assert len(refs) == 3 and "00081198" not in resp.json()
    assert refs[0]["00081190"]["Value"][0].startswith(live.http + "/dicomweb/studies/")
    with live.node.db.read() as c:
        rows = dict(c.execute(sa.select(dicom_instance.c.sop_uid,
                                        dicom_instance.c.blob_key)).all())
    for p in data["paths"]:
        sent = p.read_bytes()
        assert live.node.blobs.path(rows[str(pydicom.dcmread(p).SOPInstanceUID)]).read_bytes() \
            == sent


def test_stow_partial_failure_and_refusals(live, data):
    good = data["paths"][0].read_bytes()
    resp = stow(live, [good, b"not dicom at all"])
    assert resp.status_code == 202 and "299" in resp.headers["warning"]
    assert resp.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert stow(live, [b"junk"]).status_code == 409
    other = stow(live, [good], path=f"/dicomweb/studies/{generate_uid()}")
    assert other.status_code == 409
    assert other.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
    wrong = httpx.post(live.http + "/dicomweb/studies", content=good,
                       headers={"Content-Type": "application/dicom"})
    assert wrong.status_code == 415
    assert stow(live, [good], kind="application/dicom+json").status_code == 415
    cut = httpx.post(live.http + "/dicomweb/studies", content=b"--x\r\nContent-Type: a\r\n\r\nab",
                     headers={"Content-Type": 'multipart/related; type="application/dicom"; '
                                              "boundary=x"})
    assert cut.status_code == 400


def get(live, path: str, **headers) -> httpx.Response:
    return httpx.get(live.http + path, headers=headers, timeout=30)


def test_qido_searches_like_c_find(live, stored):
    s1, s2 = stored["studies"]
    found = get(live, "/dicomweb/studies?PatientName=张*").json()
    assert [a["0020000D"]["Value"][0] for a in found] == [s1]
    name = found[0]["00100010"]["Value"][0]
    assert name == {"Alphabetic": "Zhang^San", "Ideographic": "张^三"}
    assert found[0]["00081190"]["Value"][0] == f"{live.http}/dicomweb/studies/{s1}"
    assert found[0]["00201208"]["Value"] == [2]        # NumberOfStudyRelatedInstances
    assert get(live, "/dicomweb/studies?00100020=P002").json()[0]["0020000D"]["Value"] == [s2]
    assert len(get(live, "/dicomweb/studies?StudyDate=20250101-20251231").json()) == 1
    page = [get(live, f"/dicomweb/studies?limit=1&offset={n}").json() for n in (0, 1, 2)]
    assert [len(p) for p in page] == [1, 1, 0]
    assert page[0][0]["0020000D"] != page[1][0]["0020000D"]
    series = get(live, f"/dicomweb/studies/{s1}/series").json()
    assert [s["0020000E"]["Value"][0] for s in series] == [stored["series"]]
    inst = get(live, f"/dicomweb/studies/{s1}/series/{stored['series']}/instances").json()
    assert sorted(i["00200013"]["Value"][0] for i in inst) == [1, 2]
    desc = get(live, "/dicomweb/studies?PatientID=P001&includefield=StudyDescription").json()
    assert desc[0]["00081030"]["Value"] == ["胸部CT平扫"]
    fuzzy = get(live, "/dicomweb/studies?PatientName=张*&fuzzymatching=true")
    assert fuzzy.status_code == 200 and "fuzzymatching" in fuzzy.headers["warning"]
    assert get(live, "/dicomweb/studies?PatientID=NOBODY").json() == []
    assert get(live, "/dicomweb/studies?Colour=red").status_code == 400
    assert get(live, "/dicomweb/studies?limit=-1").status_code == 400


def test_wado_returns_the_instances(live, stored):
    s1, _ = stored["studies"]
    a1, a2 = (p.read_bytes() for p in stored["paths"][:2])
    parts = split(get(live, f"/dicomweb/studies/{s1}", accept=DICOM_ANY))
    assert sorted(b for _t, b in parts) == sorted([a1, a2])       # as stored, byte for byte
    default = split(get(live, f"/dicomweb/studies/{s1}"))          # Explicit VR LE
    assert {t.split("transfer-syntax=")[1] for t, _b in default} == {"1.2.840.10008.1.2.1"}
    reencoded = [pydicom.dcmread(io.BytesIO(b)) for _t, b in default]
    assert {str(d.file_meta.TransferSyntaxUID) for d in reencoded} == {"1.2.840.10008.1.2.1"}
    assert {str(d.PatientName) for d in reencoded} == {"Zhang^San=张^三"}
    sop = str(pydicom.dcmread(stored["paths"][0]).SOPInstanceUID)
    one = split(get(live, f"/dicomweb/studies/{s1}/series/{stored['series']}/instances/{sop}",
                    accept=DICOM_ANY))
    assert [b for _t, b in one] == [a1]
    assert get(live, f"/dicomweb/studies/{generate_uid()}").status_code == 404
    assert get(live, f"/dicomweb/studies/{s1}", accept="application/json").status_code == 406


def test_wado_metadata_and_rendered(live, stored, tmp_path):
    s1, _ = stored["studies"]
    meta = get(live, f"/dicomweb/studies/{s1}/metadata").json()
    assert len(meta) == 2 and all("7FE00010" not in m for m in meta)
    assert meta[0]["00100020"]["Value"] == ["P001"]
    sop = str(pydicom.dcmread(stored["paths"][0]).SOPInstanceUID)
    base = f"/dicomweb/studies/{s1}/series/{stored['series']}/instances/{sop}"
    jpeg = get(live, base + "/rendered")
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).size == (8, 8)
    png = get(live, base + "/frames/1/rendered", accept="image/png")
    assert png.content.startswith(b"\x89PNG")
    assert get(live, base + "/frames/2/rendered").status_code == 400
    assert get(live, base + "/rendered", accept="application/pdf").status_code == 406


def test_a_converted_jpeg_is_rendered_as_stored_and_not_served_uncompressed(live, tmp_path):
    img = Image.new("RGB", (16, 12), (200, 30, 30))
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    ds = convert.image_to_sc(buf.getvalue(), convert.JPEG, convert.Target("P9", "李^四"))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert stow(live, [out.getvalue()]).status_code == 200
    base = (f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")
    assert get(live, base + "/rendered").content.rstrip(b"\x00") == buf.getvalue().rstrip(b"\x00")
    assert get(live, base).status_code == 406                     # stored as JPEG
    assert len(split(get(live, base, accept=DICOM_ANY))) == 1


def test_dicomweb_requests_are_audited(live, stored):
    s1, _ = stored["studies"]
    get(live, "/dicomweb/studies?PatientID=P001")
    get(live, f"/dicomweb/studies/{s1}", accept=DICOM_ANY)
    live.node.audit.stop()
    with live.node.db.read() as c:
        kinds = c.execute(sa.select(t_audit.c.transaction)).scalars().all()
    assert {"STOW-RS", "QIDO-RS", "WADO-RS"} <= set(kinds)

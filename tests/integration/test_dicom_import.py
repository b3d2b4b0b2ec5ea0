"""Import of outside images (dicom_qr.importer, dicom_qr.convert, ``hie dicom import``) into a live
node, on SQLite and PostgreSQL: DICOM files in folders and on a "CD" with a DICOMDIR, JPG /
PNG / BMP converted to Secondary Capture (a baseline JPEG kept as it is), PDF to Encapsulated
PDF, under a Chinese patient; outside DICOM reconciled to the given patient; what is neither
rejected with its reason; a summary and the exit status."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydicom
import sqlalchemy as sa
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from dicom_qr import convert, importer
from dicom_qr.tables import dicom_instance, dicom_patient, dicom_study
from hie.settings import Peer
from tests.dicom_support import free_port, instance

ROOT = Path(__file__).resolve().parents[2]
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]"
       b"/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def own(live) -> Peer:
    host, port = live.node.listeners["dicom"]
    return Peer(live.settings.dicom_ae_title, host, port)


def image(path: Path, fmt: str, mode: str = "RGB", **kw) -> Path:
    img = Image.new(mode, (32, 24))
    img.putdata([((x * 8) % 256, (y * 10) % 256, 128) if mode == "RGB" else (x * 8) % 256
                 for y in range(24) for x in range(32)])
    img.save(path, fmt, **kw)
    return path


def stored(live, sop_uid: str) -> pydicom.Dataset:
    with live.node.db.read() as c:
        key = c.execute(sa.select(dicom_instance.c.blob_key).where(
            dicom_instance.c.sop_uid == sop_uid)).scalar_one()
    return pydicom.dcmread(live.node.blobs.path(key))


def test_images_and_a_pdf_are_converted_under_the_patient(live, tmp_path):
    files = tmp_path / "report"
    files.mkdir()
    jpg = image(files / "心电图.jpg", "JPEG", quality=90)
    prog = image(files / "progressive.jpg", "JPEG", progressive=True)
    png = image(files / "grey.png", "PNG", mode="L")
    bmp = image(files / "scan.bmp", "BMP")
    (files / "出院小结.pdf").write_bytes(PDF)
    (files / "readme.txt").write_text("不是影像")
    (files / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    target = convert.Target("ZS001", "张^三", "XH", study_description="外院检查资料")
    summary = importer.run([str(files)], own(live), "IMPORTER", target)
    assert [i.status for i in summary.sent] == [0] * 5
    assert sorted(p.name for p, _ in summary.rejected) == ["broken.png", "readme.txt"]
    by = {i.path.name: i for i in summary.sent}
    # the baseline JPEG is the very file, encapsulated
    sc = stored(live, by["心电图.jpg"].sop_uid)
    assert sc.SOPClassUID == convert.SECONDARY_CAPTURE
    assert sc.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    frame = next(generate_frames(sc.PixelData, number_of_frames=1))
    assert frame.rstrip(b"\x00") == jpg.read_bytes().rstrip(b"\x00")
    assert (sc.Rows, sc.Columns, sc.PhotometricInterpretation) == (24, 32, "YBR_FULL_422")
    assert sc.PatientName == "张^三" and sc.PatientID == "ZS001"
    # the others decoded, uncompressed
    grey = stored(live, by["grey.png"].sop_uid)
    assert grey.PhotometricInterpretation == "MONOCHROME2"
    assert grey.PixelData == Image.open(png).tobytes()
    rgb = stored(live, by["scan.bmp"].sop_uid)
    assert rgb.PhotometricInterpretation == "RGB" and rgb.PixelData == Image.open(bmp).tobytes()
    assert stored(live, by["progressive.jpg"].sop_uid).file_meta.TransferSyntaxUID == \
        "1.2.840.10008.1.2.1"
    doc = stored(live, by["出院小结.pdf"].sop_uid)
    assert doc.SOPClassUID == convert.ENCAPSULATED_PDF and doc.Modality == "DOC"
    assert doc.EncapsulatedDocument[:len(PDF)] == PDF
    assert doc.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert doc.DocumentTitle == "出院小结"
    with live.node.db.read() as c:
        studies = c.execute(sa.select(dicom_study.c.description)).scalars().all()
        patients = c.execute(sa.select(dicom_patient.c.patient_id,
                                       dicom_patient.c.issuer)).all()
    assert studies == ["外院检查资料"] and patients == [("ZS001", "XH")]
    assert convert.jpeg_frame(prog.read_bytes())[0] == 0xC2     # it was progressive indeed


def _cd(folder: Path, tmp_path: Path) -> list[str]:
    """A "CD": two instances written with a DICOMDIR (pydicom's File-set), names as on a CD."""
    study, series = generate_uid(), generate_uid()
    fs = FileSet()
    uids = []
    for k in range(2):
        path = instance(tmp_path, f"cd{k}.dcm", patient_id="WY-778", patient_name="刘^洋",
                        charset="ISO_IR 192", study=study, series=series, number=k,
                        issuer="1.2.156.999.7")
        ds = pydicom.dcmread(path)
        ds.StudyID = "1"                      # a DICOMDIR's STUDY record needs it (F.5)
        uids.append(str(ds.SOPInstanceUID))
        fs.add(ds)
    fs.write(folder)
    return uids


def test_a_cd_with_a_dicomdir_is_imported_and_reconciled(live, tmp_path):
    cd = tmp_path / "cd"
    uids = _cd(cd, tmp_path)
    loose = instance(tmp_path, "loose.dcm", patient_id="WY-779", patient_name="刘^洋",
                     charset="ISO_IR 192", study=generate_uid(), series=generate_uid())
    target = convert.Target("XH0088", "刘^洋", "XH")
    summary = importer.run([str(cd / "DICOMDIR"), str(cd), str(loose)], own(live), "IMPORTER",
                           target)
    assert summary.rejected == []
    assert sorted(i.sop_uid for i in summary.sent if i.sop_uid in uids) == sorted(uids)
    assert len(summary.sent) == 3                      # the DICOMDIR's files once each
    assert summary.lines()[0] == "imported 3 DICOM instance(s) in 2 series of 2 study(ies)"
    ds = stored(live, uids[0])
    assert (ds.PatientID, ds.IssuerOfPatientID) == ("XH0088", "XH")
    other = ds.OtherPatientIDsSequence[0]
    assert (other.PatientID, other.IssuerOfPatientID) == ("WY-778", "1.2.156.999.7")


def test_dicom_files_without_a_patient_are_sent_byte_for_byte(live, tmp_path):
    path = instance(tmp_path, "as-is.dcm", patient_id="P700", patient_name="何^平",
                    charset="GB18030", study=generate_uid(), series=generate_uid())
    summary = importer.run([str(path)], own(live), "IMPORTER", None)
    assert [i.status for i in summary.sent] == [0]
    kept = stored(live, summary.sent[0].sop_uid)
    original = pydicom.dcmread(path)
    assert kept.PatientName == "何^平" and "OtherPatientIDsSequence" not in kept
    raw, sent = path.read_bytes(), live.node.blobs.path(
        _key(live, summary.sent[0].sop_uid)).read_bytes()
    assert sent.endswith(raw[-200:]) and kept.SOPInstanceUID == original.SOPInstanceUID


def _key(live, sop_uid: str) -> str:
    with live.node.db.read() as c:
        return c.execute(sa.select(dicom_instance.c.blob_key).where(
            dicom_instance.c.sop_uid == sop_uid)).scalar_one()


def _cli(live, *args: str) -> subprocess.CompletedProcess:
    host, port = live.node.listeners["dicom"]
    env = dict(os.environ, HIE_DATA_DIR=str(live.settings.data_dir),
               HIE_DICOM_PORT=str(port), HIE_HTTP_HOST=host)
    return subprocess.run([sys.executable, "-m", "hie.cli", "dicom", "import", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_the_command_sends_to_its_own_node_and_says_what_it_did(live, tmp_path):
    folder = tmp_path / "outside"
    folder.mkdir()
    image(folder / "a.png", "PNG")
    (folder / "b.pdf").write_bytes(PDF)
    (folder / "c.doc").write_bytes(b"\xd0\xcf\x11\xe0 word")
    done = _cli(live, str(folder), "--patient-id", "ZS002", "--patient-name", "张^四",
                "--study-description", "外院资料", "--progress")
    assert done.returncode == 1, done.stderr          # c.doc was rejected
    assert "converted 2: 1 image(s) → Secondary Capture, 1 PDF(s) → Encapsulated PDF" \
        in done.stdout
    assert "rejected 1" in done.stdout and "c.doc: not DICOM" in done.stdout
    assert "2/2" in done.stderr
    with live.node.db.read() as c:
        assert c.execute(sa.select(dicom_patient.c.patient_name)).scalar_one() == "张^四"


def test_conversion_needs_a_patient_and_a_node_that_answers(live, tmp_path):
    image(tmp_path / "a.png", "PNG")
    done = _cli(live, str(tmp_path / "a.png"))
    assert done.returncode == 1 and "--patient-id" in done.stdout
    dead = free_port()
    down = _cli(live, str(tmp_path / "a.png"), "--patient-id", "X1",
                "--node", f"HIE@127.0.0.1:{dead}")
    assert down.returncode == 2 and "no association" in down.stderr
    assert "Traceback" not in down.stderr
    usage = _cli(live, str(tmp_path), "--patient-name", "张^三")
    assert usage.returncode == 2 and "need --patient-id" in usage.stderr

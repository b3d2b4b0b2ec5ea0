"""The conformance suites against the node, as a tester runs them: ``hie conformance run`` in
its own process, over HTTP and MLLP, against a node serving on loopback — the NIST Document
Registry suite (reg + Metadata Update + Remove Metadata), the Document Repository suite, the
XCA Responding Gateway's (rg) and the PIX / PDQ suites (HL7 v2, v3, FHIR; ITI-10 notifications received by the runner) must pass
whole on SQLite and PostgreSQL; a deliberately broken target must be reported as failing, with
the check that failed, in the exit status, the JUnit XML and the HTML report."""
from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from tests.live import live_node

HIE = str(Path(sys.executable).parent / "hie")


def run(live, actor: str, report: Path, *extra: str, target: str | None = None
        ) -> subprocess.CompletedProcess:
    http, (host, port) = live.http, live.mllp
    if target is None:
        target = {"reg": f"{http}/xds/registry", "rep": f"{http}/xds/repository",
                  "rg": f"{http}/xca/query"}[actor]
    args = [HIE, "conformance", "run", "--actor", actor, "--target", target,
            "--registry-url", f"{http}/xds/registry", "--mllp", f"{host}:{port}",
            "--patient-domain", live.settings.affinity_domain,
            "--repository-uid", live.settings.repository_unique_id,
            "--report", str(report), *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=900)


def cases(report: Path) -> dict[str, etree._Element]:
    root = etree.parse(str(report / "junit.xml")).getroot()
    return {c.get("name").split()[0]: c for c in root.iter("testcase")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_data_suite(actor: str, http: str, mllp: tuple[str, int], listen: int, report: Path,
                   *extra: str, listen_http: int | None = None) -> subprocess.CompletedProcess:
    args = [HIE, "conformance", "run", "--actor", actor, "--target", http,
            "--mllp", f"{mllp[0]}:{mllp[1]}", "--listen", f"127.0.0.1:{listen}",
            "--listen-http", f"127.0.0.1:{listen_http or free_port()}",
            "--report", str(report), *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("actor, least", [("pix", 14), ("pdq", 9)])
def test_the_pix_and_pdq_suites_pass(settings, tmp_path, actor, least):
    """The node notifies the runner's listeners as PIX Consumers (HIE_PIX_CONSUMERS: ITI-10
    over MLLP, ITI-46 over SOAP)."""
    from hie.node import Node
    listen, listen_http = free_port(), free_port()
    configured = dataclasses.replace(settings, pix_consumers=(
        f"mllp://127.0.0.1:{listen},http://127.0.0.1:{listen_http}/consumer"))
    node = Node(configured, create_schema=False)
    try:
        with live_node(configured, node) as ln:
            done = run_data_suite(actor, ln.http, ln.mllp, listen, tmp_path,
                                  listen_http=listen_http)
    finally:
        node.close()
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    found = cases(tmp_path)
    assert len(found) >= least and not [n for n, c in found.items()
                                        if c.find("failure") is not None]
    page = (tmp_path / "report.html").read_text("utf-8")
    assert ("QBP^Q23" if actor == "pix" else "QBP^Q22") in page
    if actor == "pix":                    # the notifications the runner received
        assert "ADT^A31" in page and "PRPA_IN201302UV02" in page


def test_a_pix_manager_that_only_acknowledges_fails(tmp_path):
    """Broken on purpose: an MLLP peer that answers every message with a bare ACK AA (no
    query response).  Feeds pass; every query test fails naming QAK-2; exit status 1."""
    from conformance.messaging import Listener
    fake = Listener("127.0.0.1", 0)
    try:
        done = run_data_suite("pix", "http://127.0.0.1:9", fake.address[:2], free_port(),
                              tmp_path, "--tests", "PIX-ITI8-01,PIX-ITI9-02")
    finally:
        fake.close()
    assert done.returncode == 1, done.stdout
    found = cases(tmp_path)
    assert found["PIX-ITI8-01"].find("failure") is None
    failure = found["PIX-ITI9-02"].find("failure")
    assert failure is not None and "QAK-2 = NF: found nothing" in failure.text


@pytest.mark.parametrize("actor, least", [("reg", 71), ("rep", 13), ("rg", 1)])
def test_the_nist_suite_passes(live, tmp_path, actor, least):
    done = run(live, actor, tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    found = cases(tmp_path)
    suite_cases = [c for c in found.values() if ".prerequisites" not in c.get("classname")]
    assert len(suite_cases) >= least
    assert not [n for n, c in found.items() if c.find("failure") is not None]
    page = (tmp_path / "report.html").read_text("utf-8")
    if actor == "rg":                        # 15815: the community errors of ITI-38
        assert "XDSUnknownCommunity" in page and "XDSMissingHomeCommunityId" in page
    else:
        assert "15817" in found              # the patient identity feed ran first, over MLLP
        assert "ADT^A01" in page and "status" in page
    if actor == "rep":                       # the one deviation is shown in every report
        assert "12029" in done.stdout.split("deviations applied")[-1]
        assert "3.43.4.2.3" in page
        [prop] = found["12029"].iter("property")
        assert "ReferenceDocument" in prop.get("value")


def test_a_registry_that_accepts_unknown_patients_fails_11996(tmp_path, settings):
    """Broken on purpose: the patient id check off.  11996 (XDSUnknownPatientId expected)
    must fail with the check named; 11990 still passes; the exit status says failure."""
    from hie.node import Node
    broken = dataclasses.replace(settings, validate_patient_id=False)
    node = Node(broken, create_schema=False)
    try:
        with live_node(broken, node) as ln:
            done = run(ln, "reg", tmp_path, "--tests", "11996,11990")
    finally:
        node.close()
    assert done.returncode == 1, done.stdout
    assert "FAIL 11996" in done.stdout and "ExpectedStatus Failure" in done.stdout
    found = cases(tmp_path)
    failure = found["11996"].find("failure")
    assert failure is not None and "XDSUnknownPatientId" in failure.text
    assert found["11990"].find("failure") is None
    assert "FAILED" in (tmp_path / "report.html").read_text("utf-8")


def test_a_target_that_does_not_answer(live, tmp_path):
    """Nothing listens at the target: the tests fail with the transport error, not a crash."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/xds/registry"
    done = run(live, "reg", tmp_path, "--tests", "11990", target=dead)
    assert done.returncode == 1
    failure = cases(tmp_path)["11990"].find("failure")
    assert failure is not None and "ConnectError" in failure.text
    assert "Traceback" not in done.stderr


def test_a_test_not_in_the_suite_is_a_usage_error(live, tmp_path):
    done = run(live, "reg", tmp_path, "--tests", "11966")   # a repository test
    assert done.returncode == 2 and "not in suite reg: 11966" in done.stderr

"""Settings: defaults, TOML file, environment precedence, persisted generated OIDs."""
import re

import pytest

from hie.settings import Peer, load_settings


def test_defaults_and_generated_ids_persist(tmp_path):
    s1 = load_settings(env={"HIE_DATA_DIR": str(tmp_path / "d")})
    assert s1.http_host == "127.0.0.1" and s1.http_port == 8080 and s1.mllp_port == 2575
    assert s1.dicom_port == 11112 and s1.dicom_ae_title == "HIE" and s1.validate_patient_id
    assert s1.home_community_id.startswith("urn:oid:2.25.")
    assert re.fullmatch(r"2\.25\.\d+", s1.repository_unique_id)
    assert re.fullmatch(r"2\.25\.\d+", s1.affinity_domain)
    assert s1.database.startswith("sqlite:///") and s1.database.endswith("hie.sqlite3")
    s2 = load_settings(env={"HIE_DATA_DIR": str(tmp_path / "d")})
    assert (s2.home_community_id, s2.repository_unique_id, s2.affinity_domain) == \
        (s1.home_community_id, s1.repository_unique_id, s1.affinity_domain)


def test_toml_file_and_environment_wins(tmp_path):
    cfg = tmp_path / "hie.toml"
    cfg.write_text('HIE_HTTP_PORT = 9000\nmllp_port = 3000\nvalidate_patient_id = false\n'
                   'affinity_domain = "1.2.156.112604.1.2.1"\n'
                   f'data_dir = "{tmp_path / "x"}"\n', "utf-8")
    s = load_settings(env={"HIE_CONFIG": str(cfg), "HIE_HTTP_PORT": "9100",
                           "HIE_DICOM_PEERS": "PACS@127.0.0.1:104, FRONT@127.0.0.2:11112"})
    assert s.http_port == 9100  # environment wins over the file
    assert s.mllp_port == 3000 and s.validate_patient_id is False
    assert s.affinity_domain == "1.2.156.112604.1.2.1"  # configured, not generated
    assert s.dicom_peers == (Peer("PACS", "127.0.0.1", 104), Peer("FRONT", "127.0.0.2", 11112))
    assert s.data_dir == tmp_path / "x"


def test_home_community_gets_urn_prefix(tmp_path):
    s = load_settings(env={"HIE_HOME_COMMUNITY_ID": "1.2.3.4", "HIE_DATA_DIR": str(tmp_path)})
    assert s.home_community_id == "urn:oid:1.2.3.4"


@pytest.mark.parametrize("bad", [{"HIE_HTTP_PORT": "eighty"}, {"HIE_VALIDATE_PATIENT_ID": "maybe"},
                                 {"HIE_DICOM_PEERS": "nohost"}])
def test_bad_values_are_rejected(tmp_path, bad):
    with pytest.raises(ValueError):
        load_settings(env=dict(bad, HIE_DATA_DIR=str(tmp_path)))

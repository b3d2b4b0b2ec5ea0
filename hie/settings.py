"""Node settings: the ``HIE_*`` environment variables of CONTRACT.md, optionally from a TOML file.

A TOML file named by ``--config`` or ``HIE_CONFIG`` may set the same keys (either as the variable
name, ``HIE_HTTP_PORT = 8080``, or lower-case without the prefix, ``http_port = 8080``); the
environment wins over the file.  Generated identifiers (home community, repository, affinity
domain) are created once and kept in ``<data dir>/node-ids.toml`` so they survive restarts.
"""
from __future__ import annotations

import os
import tomllib
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def uuid_oid() -> str:
    """A new globally unique OID under 2.25 (ITU-T X.667 / ISO 9834-8: UUID as integer)."""
    return "2.25." + str(uuid.uuid4().int)


@dataclass(frozen=True)
class Peer:
    """A known DICOM peer ``AE@host:port``."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Peer":
        ae, _, rest = text.strip().partition("@")
        host, _, port = rest.rpartition(":")
        if not ae or not host or not port.isdigit():
            raise ValueError(f"DICOM peer must be AE@host:port, not {text!r}")
        return cls(ae, host, int(port))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./hie-data")
    database_url: str = ""  # empty: sqlite under data_dir
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    mllp_host: str = ""  # empty: same as http_host
    mllp_port: int = 2575
    dicom_port: int = 11112
    dicom_ae_title: str = "HIE"
    dicom_peers: tuple[Peer, ...] = ()
    dicom_forward: str = ""  # forwarding rules DEST?key=v|v&key=v,… (dicom_qr.forward)
    dicom_xdsi_quiet: int = 600  # seconds a study stays unchanged before its XDS-I manifest
    dicom_issuers: str = ""  # AE=domain,…: the PatientID domain of a PACS that sends no issuer
    home_community_id: str = ""
    repository_unique_id: str = ""
    affinity_domain: str = ""
    validate_patient_id: bool = True
    pix_auto_domains: bool = True  # a feed from an unknown assigning authority registers it
    pix_consumers: str = ""  # PIX Update Notification (ITI-10 / ITI-46) subscribers, see pix_pdq.notify
    registry_url: str = ""  # empty: the local registry, in-process
    max_query_results: int = 10000  # above: XDSTooManyResults
    max_xml_bytes: int = 64 * 1024 * 1024  # SOAP envelope (root part) size bound
    spool_threshold: int = 256 * 1024  # MTOM attachments larger than this go to disk
    outbox_max_attempts: int = 12
    log_level: str = "INFO"
    http_workers: int = 1
    forward_registry_url: str = ""  # upstream registry that receives every ITI-42 (via outbox)
    inline_queries: bool = True  # ITI-18/51 handlers run on the event loop (no thread hop)
    bench_endpoints: bool = False  # /bench/static and /bench/upload: the benchmarks' floor

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hie.sqlite3').resolve()}"

    @property
    def mllp_bind(self) -> str:
        return self.mllp_host or self.http_host

    @property
    def home_community_urn(self) -> str:
        hc = self.home_community_id
        return hc if hc.startswith("urn:oid:") else f"urn:oid:{hc}"


_CONVERT = {
    "data_dir": Path,
    "http_port": int,
    "mllp_port": int,
    "dicom_port": int,
    "dicom_xdsi_quiet": int,
    "validate_patient_id": _bool,
    "pix_auto_domains": _bool,
    "max_query_results": int,
    "max_xml_bytes": int,
    "spool_threshold": int,
    "outbox_max_attempts": int,
    "http_workers": int,
    "bench_endpoints": _bool,
    "inline_queries": _bool,
    "dicom_peers": lambda v: tuple(Peer.parse(p) for p in (v if isinstance(v, list) else str(v).split(",")) if str(p).strip()),
}

_GENERATED = ("home_community_id", "repository_unique_id", "affinity_domain")


def _from_mapping(raw: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(Settings)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.lower()
        if name.startswith("hie_"):
            name = name[4:]
        if name in names:
            conv = _CONVERT.get(name, str)
            out[name] = conv(value)
    return out


def load_settings(config: str | os.PathLike | None = None,
                  env: Mapping[str, str] | None = None,
                  persist_ids: bool = True, **overrides: Any) -> Settings:
    """Settings from (lowest first) defaults, the TOML file, the environment and ``overrides``.

    With ``persist_ids`` the data folder is created and the generated OIDs are read from (or
    written to) ``node-ids.toml`` inside it.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config = config or env.get("HIE_CONFIG")
    if config:
        with open(config, "rb") as fh:
            values.update(_from_mapping(tomllib.load(fh)))
    values.update(_from_mapping({k: v for k, v in env.items() if k.startswith("HIE_")}))
    values.update(_from_mapping(overrides))
    settings = Settings(**values)
    if persist_ids:
        settings = _with_node_ids(settings)
    return settings


def _with_node_ids(settings: Settings) -> Settings:
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "node-ids.toml"
    stored: dict[str, str] = {}
    if path.exists():
        with open(path, "rb") as fh:
            stored = {k: str(v) for k, v in tomllib.load(fh).items()}
    changed = False
    for name in _GENERATED:
        if name not in stored:
            stored[name] = ("urn:oid:" if name == "home_community_id" else "") + uuid_oid()
            changed = True
    if changed:
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f'{k} = "{v}"\n' for k, v in sorted(stored.items())), "utf-8")
        os.replace(tmp, path)
    updates = {name: stored[name] for name in _GENERATED if not getattr(settings, name)}
    if "home_community_id" in updates or settings.home_community_id:
        hc = updates.get("home_community_id", settings.home_community_id)
        updates["home_community_id"] = hc if hc.startswith("urn:oid:") else f"urn:oid:{hc}"
    return _replace(settings, **updates)


def _replace(settings: Settings, **changes: Any) -> Settings:
    from dataclasses import replace
    return replace(settings, **changes)


__all__ = ["Settings", "Peer", "load_settings", "uuid_oid"]

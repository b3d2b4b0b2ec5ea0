"""Patient identity tables: the seed of the patient master index (ITI TF-2a 3.8 Patient Identity
Feed now; PIX / PDQ, matching, linking and merging later).

- ``pix_person``: one row per person known to the index — the enterprise identity of the
  affinity domain.  ``enterprise_id`` is the person's identifier in the affinity domain (the
  assigning authority ``HIE_AFFINITY_DOMAIN``) when one has been fed, NULL otherwise; ``status``
  is ``active`` (later ``merged``, with ``merged_into`` naming the survivor, or ``inactive``).
  Demographics the queries will filter on (PDQ: name, birth date, sex) are typed columns; the
  full set from PID (all names, addresses, phones, ethnic group, birthplace, ...) is kept as JSON
  (DESIGN.md principle 7).
- ``pix_identifier``: every patient identifier (HL7 CX) fed, in any domain, each belonging to one
  person.  ``domain_oid`` is the assigning authority's universal id (CX-4.2, an OID when CX-4.3
  is ``ISO``) or, when the sender gave only a namespace, its namespace id (CX-4.1) with an empty
  ``domain_type``; ``domain_namespace`` is CX-4.1 as sent.  ``(domain_oid, value)`` is unique:
  one identifier, one person.  Cross-references (PIX) are identifiers sharing a person.
- ``pix_domain``: the identity domains (assigning authorities) the index knows: registered by
  the first feed that uses one when ``HIE_PIX_AUTO_DOMAINS`` is true, else only by an operator;
  the affinity domain and the national resident-ID domain are always known.
- ``pix_block``: the blocking keys of every active person (:func:`pix_pdq.matching.blocking_keys`,
  plus ``n:<name>`` for name frequencies): the candidates for a new identity are the persons
  sharing a key, found through the primary key's index.
- ``pix_match``: every matching decision — the incoming identity (source and identifiers), the
  person it was compared with, the score, the per-field levels and weights, the thresholds and the
  outcome (``link``, ``review``, ``new``; later ``unlink``, ``merge``) — the evidence and history of
  each link.
- ``pix_review``: potential duplicates between the two thresholds, waiting for a person to link
  or reject them.
- ``pix_feed_log``: every feed message by (sending application, sending facility, message control
  id) with the acknowledgement sent, so a message delivered twice is acknowledged again with the
  stored ACK and not applied twice (HL7 v2.5 2.10.1 sequence/duplicate handling; DESIGN.md
  principle 5).  The original message is kept for provenance and re-processing.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from hie.db import metadata

BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID_LEN = 128       # identifier value (CX-1: ST, 15 in v2.5 but longer in practice)
DOMAIN_LEN = 128   # OID (ISO/IEC 8824 limit 64 arcs in practice) or namespace id
HD_LEN = 256       # an encoded HD (MSH-3/4)

ACTIVE, MERGED, INACTIVE = "active", "merged", "inactive"

person = sa.Table(
    "pix_person", metadata,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("enterprise_id", sa.String(ID_LEN), unique=True),
    sa.Column("status", sa.String(16), nullable=False, default=ACTIVE),
    sa.Column("merged_into", BIGINT, sa.ForeignKey("pix_person.id", ondelete="SET NULL")),
    sa.Column("name", sa.String(256), index=True),  # display name, e.g. 张三
    sa.Column("family_name", sa.String(128)),
    sa.Column("given_name", sa.String(128)),
    sa.Column("birth_date", sa.String(8), index=True),  # YYYYMMDD (or shorter when so sent)
    sa.Column("sex", sa.String(1)),  # HL7 Table 0001
    sa.Column("demographics", JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # PDQ by family name (ITI-21 @PID.5.1, ITI-47, PDQm family): equality and prefix (张*) —
    # pattern operators on PostgreSQL, whose LIKE cannot use a collation-ordered index
    sa.Index("ix_pix_person_family_name", "family_name", "id",
             postgresql_ops={"family_name": "varchar_pattern_ops"}),
)

identifier = sa.Table(
    "pix_identifier", metadata,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("person_id", BIGINT, sa.ForeignKey("pix_person.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("domain_oid", sa.String(DOMAIN_LEN), nullable=False),
    sa.Column("domain_namespace", sa.String(DOMAIN_LEN), nullable=False, default=""),
    sa.Column("domain_type", sa.String(16), nullable=False, default=""),  # CX-4.3, ISO
    sa.Column("value", sa.String(ID_LEN), nullable=False),
    sa.Column("id_type", sa.String(8), nullable=False, default=""),  # CX-5, Table 0203
    sa.Column("status", sa.String(16), nullable=False, default=ACTIVE),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("domain_oid", "value", name="uq_pix_identifier_domain_value"),
    # a person's identifiers; its resident ID number read from the index alone (the candidates
    # of matching, linking.find_match)
    sa.Index("ix_pix_identifier_person_id_domain_oid_status_value", "person_id", "domain_oid",
             "status", "value"),
    # the rare merged ones (index.has_merges, patient_aliases); active ones are not filed
    sa.Index("ix_pix_identifier_merged", "status", postgresql_where=sa.text("status = 'merged'"),
             sqlite_where=sa.text("status = 'merged'")),
)

domain = sa.Table(
    "pix_domain", metadata,
    sa.Column("oid", sa.String(DOMAIN_LEN), primary_key=True),   # as Identifier.domain
    sa.Column("namespace", sa.String(DOMAIN_LEN), nullable=False, default=""),
    sa.Column("source", sa.String(HD_LEN), nullable=False, default=""),  # who first sent it
    sa.Column("auto", sa.Boolean, nullable=False, default=True),  # registered by a feed
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

block = sa.Table(
    "pix_block", metadata,
    sa.Column("key", sa.String(160), primary_key=True),
    # no foreign key: derived data (rebuilt by hie mpi reindex), written for every feed, of
    # persons never deleted — a referential check per key cost more than it guards
    sa.Column("person_id", BIGINT, primary_key=True, index=True),
    # the person's resident ID number, when it holds exactly one (pix_pdq.recording): matching
    # drops a candidate with another number without reading anything else of it (on
    # PostgreSQL the primary key's index carries it too, INCLUDE: migration f2c8e5a7b9d1)
    sa.Column("number", sa.String(18)),
)

match = sa.Table(
    "pix_match", metadata,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(HD_LEN), nullable=False, default=""),  # e.g. ITI-8 HIS|协和医院
    sa.Column("identifiers", sa.Text, nullable=False),                    # the CXs fed, ~-joined
    sa.Column("person_id", BIGINT, sa.ForeignKey("pix_person.id", ondelete="CASCADE"),
              index=True),                                              # where they went
    sa.Column("candidate_id", BIGINT, sa.ForeignKey("pix_person.id", ondelete="CASCADE"),
              index=True),                                              # compared with
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("evidence", JSON, nullable=False, default=dict),
)

review = sa.Table(
    "pix_review", metadata,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("person_id", BIGINT, sa.ForeignKey("pix_person.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("candidate_id", BIGINT, sa.ForeignKey("pix_person.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("evidence", JSON, nullable=False, default=dict),
    sa.Column("status", sa.String(16), nullable=False, default="pending", index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("decided_by", sa.String(256)),
)

feed_log = sa.Table(
    "pix_feed_log", metadata,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("sending_application", sa.String(HD_LEN), nullable=False),
    sa.Column("sending_facility", sa.String(HD_LEN), nullable=False),
    sa.Column("control_id", sa.String(199), nullable=False),
    sa.Column("message_type", sa.String(16), nullable=False),  # ADT^A01
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("remote_addr", sa.String(64)),
    sa.Column("ack_code", sa.String(2), nullable=False),
    sa.Column("ack", sa.LargeBinary, nullable=False),
    sa.Column("message", sa.LargeBinary),
    sa.Column("person_id", BIGINT, sa.ForeignKey("pix_person.id", ondelete="SET NULL"),
              index=True),
    sa.UniqueConstraint("sending_application", "sending_facility", "control_id",
                        name="uq_pix_feed_log_sender_control_id"),
)

# PDQV3 continuation state (ITI TF-2b 3.47.4.3): a QUQI_IN000003UV01 names only the queryId, so
# the query it continues is kept here — in the database, so any HTTP worker process can answer
# it — by (sender device id, queryId): the parameters, the echoed queryByParameter, the last
# person id sent (the index is paged by person id, as ITI-21 pages its DSC pointer) and the
# counts.  Rows go when the query is finished or cancelled, or a day after their last use.
pdq_query = sa.Table(
    "pix_pdq_query", metadata,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("sender", sa.String(HD_LEN), nullable=False),
    sa.Column("query_id", sa.String(HD_LEN), nullable=False),
    sa.Column("params", JSON, nullable=False, default=dict),
    sa.Column("query", sa.LargeBinary),                         # queryByParameter, echoed
    sa.Column("after", BIGINT, nullable=False, default=0),      # last person id sent
    sa.Column("sent", sa.Integer, nullable=False, default=0),
    sa.Column("total", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.UniqueConstraint("sender", "query_id", name="uq_pix_pdq_query_sender_query_id"),
)

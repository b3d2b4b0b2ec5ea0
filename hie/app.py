"""The composition root for HTTP: one Starlette ASGI application carrying every SOAP endpoint of
CONTRACT.md, ``GET /healthz`` and ``GET /metrics``.  Only this module (and ``hie.cli`` /
``hie.server``) imports the actor packages to assemble them (DESIGN.md, "Dependencies point one
way")."""
from __future__ import annotations

import os
import socket

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hie.node import Node
from hie.soap_http import SoapService


def install_deliverers(node: Node) -> None:
    """Register the outbox deliverers of every actor (the outbox worker sends through them)."""
    from xds_registry import forward
    from pix_pdq import notify
    from dicom_qr import commitment, forward as dicom_forward
    forward.install(node.outbox)
    notify.install(node)
    commitment.install(node)
    dicom_forward.install(node)


def soap_services(node: Node) -> list[SoapService]:
    from xds_registry.service import OPERATIONS as REGISTRY
    from xds_repository.service import OPERATIONS as REPOSITORY
    from pix_pdq.v3_service import PDQ_OPERATIONS, PIX_OPERATIONS
    from hie import gateway
    from hie.transactions import ITI_18, ITI_38, ITI_39, ITI_43, RAD_69
    from dicom_qr import rad69
    from xds_registry import query_find as F
    patient_queries = (F.FIND_DOCUMENTS, F.FIND_DOCUMENTS_BY_REFERENCE_ID,
                       F.FIND_SUBMISSION_SETS, F.FIND_FOLDERS, F.GET_ALL)
    services = [
        SoapService(node, "/xds/registry", "DocumentRegistry", REGISTRY),
        SoapService(node, "/xds/repository", "DocumentRepository", REPOSITORY),
        # the XCA Responding Gateway of this community over the registry and repository
        SoapService(node, "/xca/query", "RespondingGateway_Query", {
            ITI_38.action: (ITI_38, gateway.query(REGISTRY[ITI_18.action][1],
                                                  patient_queries))}),
        SoapService(node, "/xca/retrieve", "RespondingGateway_Retrieve", {
            ITI_39.action: (ITI_39, gateway.retrieve(REPOSITORY[ITI_43.action][1]))}),
        # XDS-I.b Imaging Document Source: RAD-69 for the instances of its KOS manifests
        SoapService(node, "/xds/imaging", "ImagingDocumentSource", {
            RAD_69.action: (RAD_69, rad69.handle)}),
    ]
    if PIX_OPERATIONS:
        services.append(SoapService(node, "/pix", "PIXManager", PIX_OPERATIONS, soap11=True))
    if PDQ_OPERATIONS:
        services.append(SoapService(node, "/pdq", "PDQSupplier", PDQ_OPERATIONS, soap11=True))
    return services


def _accepts(host: str, port: int) -> bool:
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def bench_routes() -> list[Route]:
    """The benchmarks' floor (HIE_BENCH_ENDPOINTS=true only): the cheapest possible request of
    the same size through the same server stack — a static body of ``?size=`` bytes, and an
    upload that is read to the end and answered with a static body."""
    cache: dict[int, bytes] = {}

    async def static(request: Request) -> Response:
        size = int(request.query_params.get("size", "1000"))
        body = cache.get(size)
        if body is None:
            body = cache.setdefault(size, b"x" * size)
        if request.method == "POST":
            async for _ in request.stream():
                pass
        return Response(body, media_type="application/soap+xml")

    return [Route("/bench/static", static, methods=["GET", "POST"])]


def create_app(node: Node) -> Starlette:
    install_deliverers(node)
    async def healthz(request: Request) -> JSONResponse:
        listeners = {name: f"{h}:{p}" for name, (h, p) in node.listeners.items()}
        ok = bool(node.listeners) and all(_accepts(h, p) for h, p in node.listeners.values())
        try:
            with node.db.read() as conn:
                conn.exec_driver_sql("SELECT 1")
            db_ok = True
        except Exception:
            db_ok = False
        status = "ok" if ok and db_ok else "starting" if db_ok else "database unavailable"
        return JSONResponse({"status": status, "listeners": listeners, "database": db_ok,
                             "process": os.getpid(),  # which HTTP worker answered
                             "home_community_id": node.settings.home_community_id,
                             "repository_unique_id": node.settings.repository_unique_id},
                            status_code=200 if ok and db_ok else 503)

    async def metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(node.metrics.render(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    from pix_pdq import admin as mpi_admin
    from pix_pdq import fhir_service
    from dicom_qr import dicomweb
    routes: list = [Route("/healthz", healthz), Route("/metrics", metrics)]
    routes.extend(mpi_admin.routes(node))
    routes.extend(fhir_service.routes(node))
    routes.extend(dicomweb.routes(node))
    if node.settings.bench_endpoints:
        routes.extend(bench_routes())
    for service in soap_services(node):
        routes.extend(service.routes())
    return Starlette(routes=routes)

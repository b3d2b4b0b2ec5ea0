"""DICOMweb at /dicomweb (CONTRACT.md; DICOM PS3.18): the HTTP transport of QIDO-RS
(:mod:`dicom_qr.qido`), WADO-RS (:mod:`dicom_qr.wado`) and STOW-RS (:mod:`dicom_qr.stow`) — it
decodes the request, calls the transaction, encodes the answer.  Database and file work runs in
worker threads; every request is audited (PS3.15 A.5: QIDO-RS 110112 Query, WADO-RS 110106
Export, STOW-RS 110104 DICOM Instances Transferred) with the client's address.

Errors are HTTP statuses with a short text body: 400 a malformed request, 404 nothing of
that UID, 406 nothing acceptable, 409 / 415 for STOW-RS (PS3.18 8.6.1, 10.5.3).
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from dicom_qr import cfind, qido, retrieve, stow, wado
from dicom_qr.store import LevelCache
from hie.context import SERIOUS_FAILURE, Context
from hie.mtom import MtomError, MtomParser
from hie.transactions import QIDO_RS, STOW_RS, WADO_RS

log = logging.getLogger("dicom_qr.dicomweb")

JSON = "application/dicom+json"
BASE = "/dicomweb"


def _json(body: Any, status: int = 200, warnings: list[str] | None = None) -> Response:
    headers = {"Warning": ", ".join(f'299 hie "{w}"' for w in warnings)} if warnings else None
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type=JSON,
                    headers=headers)


def _text(status: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status)


class DicomWeb:
    def __init__(self, node: Any):
        self.node = node

    def _ctx(self, request: Request, tx) -> Context:
        return Context(self.node, tx, remote_addr=request.client.host if request.client else "")

    def _base(self, request: Request) -> str:
        return str(request.base_url).rstrip("/") + BASE

    # -- QIDO-RS -------------------------------------------------------------------------
    async def search(self, request: Request) -> Response:
        resource = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        study, series = request.path_params.get("study"), request.path_params.get("series")
        ctx, started = self._ctx(request, QIDO_RS), time.perf_counter()
        try:
            try:
                found = qido.search(resource, request.query_params.multi_items(), study, series,
                                    self.node.settings.max_query_results)
            except qido.QidoError as exc:
                ctx.fail(SERIOUS_FAILURE, str(exc))
                return _text(400, str(exc))
            if "PatientID" in found.query.matching:
                ctx.note(found.query.matching["PatientID"])
            base, level = self._base(request), found.query.level

            def run() -> list[dict]:
                with self.node.db.read() as conn:
                    return [qido.to_json(ds, base, level) for ds in cfind.answers(
                        conn, found.query, self.node.settings.dicom_ae_title,
                        limit=found.limit, offset=found.offset)]
            return _json(await run_in_threadpool(run), warnings=found.warnings)
        finally:
            ctx.finish(time.perf_counter() - started)

    # -- WADO-RS -------------------------------------------------------------------------
    def _found(self, params: dict) -> list[tuple[str, Any, str]]:
        keys = {k: params[p] for k, p in (("StudyInstanceUID", "study"),
                                         ("SeriesInstanceUID", "series"),
                                         ("SOPInstanceUID", "instance")) if p in params}
        query = cfind.Query(cfind.STUDY_ROOT, "IMAGE", keys)
        with self.node.db.read() as conn:
            stored = retrieve.instances(conn, query)
        out = []
        for s in stored:
            try:
                out.append((s.sop_uid, self.node.blobs.path(s.blob_key), s.transfer_syntax))
            except Exception:  # noqa: BLE001 - a lost blob: not served
                log.error("instance %s: its stored bytes are missing", s.sop_uid)
        return out

    async def retrieve(self, request: Request) -> Response:
        ctx, started = self._ctx(request, WADO_RS), time.perf_counter()
        try:
            try:
                syntax = wado.wanted_syntax(request.headers.get("accept", ""))
            except wado.NotAcceptable as exc:
                ctx.fail(SERIOUS_FAILURE, str(exc))
                return _text(406, str(exc))
            found = await run_in_threadpool(self._found, request.path_params)
            if not found:
                ctx.fail(SERIOUS_FAILURE, "not found")
                return _text(404, "no such study, series or instance")
            try:
                parts = wado.plan(found, syntax)
            except wado.NotAcceptable as exc:
                ctx.fail(SERIOUS_FAILURE, str(exc))
                return _text(406, str(exc))
            ctx.note(None, [p.sop_uid for p in parts])
            mark = wado.boundary()
            return StreamingResponse(
                _threaded(wado.multipart(parts, mark)),
                media_type=f'multipart/related; type="application/dicom"; boundary={mark}')
        finally:
            ctx.finish(time.perf_counter() - started)

    async def metadata(self, request: Request) -> Response:
        ctx, started = self._ctx(request, WADO_RS), time.perf_counter()
        try:
            found = await run_in_threadpool(self._found, request.path_params)
            if not found:
                ctx.fail(SERIOUS_FAILURE, "not found")
                return _text(404, "no such study, series or instance")
            ctx.note(None, [uid for uid, _p, _s in found])
            base = self._base(request)
            params = request.path_params

            def run() -> list[dict]:
                out = []
                for uid, path, _syntax in found:
                    url = (f"{base}/studies/{params['study']}/series/"
                           f"{params.get('series', '-')}/instances/{uid}")
                    out.append(wado.metadata(path, url))
                return out
            return _json(await run_in_threadpool(run))
        finally:
            ctx.finish(time.perf_counter() - started)

    async def rendered(self, request: Request) -> Response:
        ctx, started = self._ctx(request, WADO_RS), time.perf_counter()
        try:
            try:
                media = wado.rendered_media(request.headers.get("accept", ""))
                frame = int(request.path_params.get("frame", "1"))
            except wado.NotAcceptable as exc:
                return _text(406, str(exc))
            except ValueError:
                return _text(400, "a frame number is a positive integer")
            found = await run_in_threadpool(self._found, request.path_params)
            if len(found) != 1:
                ctx.fail(SERIOUS_FAILURE, "not found")
                return _text(404, "no such instance")
            ctx.note(None, [found[0][0]])
            try:
                body = await run_in_threadpool(wado.rendered, found[0][1], frame, media)
            except wado.CannotRender as exc:
                ctx.fail(SERIOUS_FAILURE, str(exc))
                return _text(exc.status, str(exc))
            return Response(body, media_type=media)
        finally:
            ctx.finish(time.perf_counter() - started)

    # -- STOW-RS -------------------------------------------------------------------------
    async def store(self, request: Request) -> Response:
        ctx, started = self._ctx(request, STOW_RS), time.perf_counter()
        parser = None
        try:
            ctype = request.headers.get("content-type", "")
            try:
                stow.check_content_type(ctype)
                settings = self.node.settings
                parser = MtomParser(ctype, settings.data_dir / "spool",
                                    int(settings.spool_threshold), 1024 * 1024 * 1024)
                async for chunk in request.stream():
                    if chunk:
                        await run_in_threadpool(parser.feed, chunk)
                root, attachments = await run_in_threadpool(parser.close)
            except stow.StowError as exc:
                ctx.fail(SERIOUS_FAILURE, str(exc))
                return _text(exc.status, str(exc))
            except MtomError as exc:
                ctx.fail(SERIOUS_FAILURE, exc.reason)
                return _text(400, f"malformed multipart body: {exc.reason}")
            study = request.path_params.get("study")
            source = request.client.host if request.client else "STOW-RS"
            parts = [(root, parser.root_content_type or "application/dicom")] + [
                (a, a.content_type) for a in attachments.values()]
            result = await run_in_threadpool(self._store_all, ctx, parts, study, source)
            base = self._base(request)
            body = stow.answer(result, lambda o: f"{base}/studies/{o.study_uid}/instances/"
                               f"{o.sop_uid}", f"{base}/studies/{study}" if study else None)
            if result.failed:
                ctx.fail(SERIOUS_FAILURE, f"{len(result.failed)} instance(s) not stored")
            warnings = ([f"{len(result.failed)} of {len(parts)} instances were not stored"]
                        if result.failed and result.stored else None)
            return _json(body, result.http_status, warnings)
        finally:
            if parser is not None:
                parser.cleanup()
            ctx.finish(time.perf_counter() - started)

    def _store_all(self, ctx: Context, parts: list, study: str | None, source: str
                   ) -> stow.Result:
        result, cache = stow.Result(), LevelCache()
        for part, ctype in parts:
            if isinstance(part, bytes):
                data = part
            else:
                with part.open() as f:
                    data = f.read()
            outcome = stow.store_part(self.node, ctx, data, ctype, study, source[:16], cache)
            (result.stored if outcome.status == 0 else result.failed).append(outcome)
        return result


async def _threaded(chunks):
    """An iterator of file reads, each read in a worker thread (the event loop never waits on
    the disk)."""
    it = iter(chunks)
    done = object()
    while (chunk := await run_in_threadpool(next, it, done)) is not done:
        yield chunk


def routes(node: Any) -> list[Route]:
    w = DicomWeb(node)
    s, se, i = "/studies/{study}", "/series/{series}", "/instances/{instance}"
    get = ["GET"]
    return [
        Route(f"{BASE}/studies", w.search, methods=get),
        Route(f"{BASE}/studies", w.store, methods=["POST"]),
        Route(f"{BASE}/series", w.search, methods=get),
        Route(f"{BASE}/instances", w.search, methods=get),
        Route(f"{BASE}{s}/series", w.search, methods=get),
        Route(f"{BASE}{s}/instances", w.search, methods=get),
        Route(f"{BASE}{s}{se}/instances", w.search, methods=get),
        Route(f"{BASE}{s}/metadata", w.metadata, methods=get),
        Route(f"{BASE}{s}{se}/metadata", w.metadata, methods=get),
        Route(f"{BASE}{s}{se}{i}/metadata", w.metadata, methods=get),
        Route(f"{BASE}{s}{se}{i}/rendered", w.rendered, methods=get),
        Route(f"{BASE}{s}{se}{i}/frames/{{frame}}/rendered", w.rendered, methods=get),
        Route(f"{BASE}{s}{se}{i}", w.retrieve, methods=get),
        Route(f"{BASE}{s}{se}", w.retrieve, methods=get),
        Route(f"{BASE}{s}", w.retrieve, methods=get),
        Route(f"{BASE}{s}", w.store, methods=["POST"]),
    ]


__all__ = ["DicomWeb", "routes"]

"""`medprobclip serve`: a local web page and a JSON API over one `Retriever` (the class behind
`medprobclip retrieve` and the MLflow model), for trying a trained model on an X-ray of your own.

Binds 127.0.0.1 by default: the gallery holds report text (protected health information on real
MIMIC-CXR), so exposing it beyond this machine is a deliberate choice (``--host``). Every upload is checked
before the model sees it — size while the body is read, pixel count from the header before any pixel is
decoded, format, mode, completeness — and each failure is a one-line message (page) or a 4xx JSON (API),
never a stack trace. Report text is HTML-escaped by the template engine (autoescape), never by hand.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image
from starlette.concurrency import run_in_threadpool

from pipeline.retrieval.upload import (  # re-exported: the page's checks live FastAPI-free in upload.py
    MAX_K,
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    Limits,
    UploadError,
    check_upload,
    parse_k,
    read_upload,
)

__all__ = [
    "MAX_K", "MAX_PIXELS", "MAX_UPLOAD_BYTES", "Limits", "UploadError", "check_upload", "create_app",
    "parse_k", "read_upload", "serve",
]  # fmt: skip

FORM_OVERHEAD = 64 * 1024  # multipart boundaries, headers and the small fields around the file
RESEARCH_NOTICE = (
    "Research use only. Not a medical device: not for diagnosis, triage or treatment decisions. "
    "Matches are reports of other patients' studies retrieved by a model, not a reading of your image."
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class SearchesImages(Protocol):
    """What the page needs of a `pipeline.retrieval.Retriever` (also what unit tests substitute)."""

    method: str

    def read_image(self, data: bytes, name: str = "image") -> Image.Image: ...

    def search_images(self, images: Any, k: int = 5, names: Any = None) -> list[Any]: ...

    def uncertainty_threshold(self, k: int) -> float | None: ...

    def describe(self) -> dict[str, Any]: ...


class BodyLimit:
    """ASGI middleware: stop reading a request body once it exceeds `max_bytes` (a chunked upload has no
    Content-Length to check up front), so an oversized upload never fills memory or disk."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadError(
                        413, f"the upload exceeds the {self.max_bytes - FORM_OVERHEAD:,}-byte limit"
                    )
            return message

        await self.app(scope, limited, send)


def uncertainty_position(uncertainty: float, threshold: float | None, scale: float | None = None) -> float:
    """Where the uncertainty sits on the page's bar, in [0, 1], with the abstention threshold at 0.5: a
    logistic of (u − threshold) / scale, so the bar reads "left of the mark: answered, right: abstained"
    whatever the confidence kind's units. No threshold: the bar shows nothing (0)."""
    if threshold is None or not math.isfinite(uncertainty):
        return 0.0
    width = scale if scale and scale > 0 else max(abs(threshold), 1e-6) / 2
    z = max(-50.0, min(50.0, (uncertainty - threshold) / width))
    return 1.0 / (1.0 + math.exp(-z))


def create_app(
    retriever: SearchesImages,
    limits: Limits = Limits(),  # noqa: B008 (a frozen dataclass, from upload.py)
    default_k: int | None = None,
) -> FastAPI:
    """The FastAPI application: ``GET /`` the page, ``POST /`` an upload from the page's form, ``POST
    /api/retrieve`` the same as JSON (the issue's shape), ``GET /api/model`` what is loaded."""
    env = Environment(
        loader=PackageLoader("pipeline.retrieval", "web"), autoescape=select_autoescape(default=True)
    )
    page = env.get_template("index.html")
    about = retriever.describe()
    default_k = default_k or int(getattr(retriever, "k_default", 5))  # the k the threshold is calibrated at
    if default_k > limits.max_k:
        limits = dataclasses.replace(limits, max_k=default_k)
    app = FastAPI(title="MedProbCLIP retrieval", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, max_bytes=limits.max_bytes + FORM_OVERHEAD)

    def render(status: int = 200, **context: Any) -> HTMLResponse:
        html = page.render(
            about=about, notice=RESEARCH_NOTICE, default_k=default_k, max_k=limits.max_k,
            max_mb=limits.max_bytes / 2**20, position=uncertainty_position, **context,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status)

    async def query(request: Request) -> tuple[str, int, dict[str, Any]]:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limits.max_bytes + FORM_OVERHEAD:
            raise UploadError(413, f"the upload is {int(length):,} bytes; the limit is {limits.max_bytes:,}")
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise UploadError(400, "no file uploaded: choose a JPEG or PNG chest X-ray")
        k = parse_k(form.get("k"), default_k, limits)
        data = await upload.read(limits.max_bytes + 1)
        name = (upload.filename or "upload")[:200]
        image = await run_in_threadpool(read_upload, retriever, data, name, limits)
        results = await run_in_threadpool(retriever.search_images, [image], k=k, names=[name])
        return name, k, results[0].to_dict()

    @app.exception_handler(UploadError)
    async def refused(request: Request, exc: UploadError) -> Any:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return render(exc.status, error=str(exc))

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> Any:  # a bug: logged by uvicorn, not shown
        message = "internal error; the server log has the details"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=500)
        return HTMLResponse(f"<!doctype html><title>error</title><p>{message}</p>", status_code=500)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return render()

    @app.post("/", response_class=HTMLResponse)
    async def upload(request: Request) -> HTMLResponse:
        name, k, result = await query(request)
        return render(result=result, name=name, k=k, threshold=retriever.uncertainty_threshold(k))

    @app.post("/api/retrieve")
    async def api_retrieve(request: Request) -> JSONResponse:
        _, _, result = await query(request)
        return JSONResponse(result)

    @app.get("/api/model")
    async def api_model() -> JSONResponse:
        return JSONResponse(about)

    return app


def serve(
    retriever: SearchesImages, host: str = "127.0.0.1", port: int = 8000, default_k: int | None = None
) -> None:
    """Run the page with uvicorn until interrupted (Ctrl-C)."""
    import uvicorn

    if not is_loopback(host):
        print(
            f"serve: warning: {host} is not a loopback address; this unauthenticated page shows gallery "
            "report text (PHI on real MIMIC-CXR) to anyone who can reach it",
            flush=True,
        )
    print(f"serve: {retriever.method} on http://{host}:{port}/ (research use only; Ctrl-C stops)", flush=True)
    uvicorn.run(create_app(retriever, default_k=default_k), host=host, port=port, log_level="warning")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``: the only hosts `serve` binds without a warning."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

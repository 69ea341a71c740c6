"""The HTTP layer around ConveyorModel: KServe's REST server with Conveyor's rules on top.

- binds 127.0.0.1 unless told otherwise (KServe hard-codes 0.0.0.0; the image passes --host);
- TLS when given a certificate (KServe's listener, which reloads a renewed one), mutual TLS with a
  client CA; health and /metrics are on the same listener;
- with a data-plane token, every route but health needs `Authorization: Bearer <token>` (401 with
  WWW-Authenticate otherwise; /metrics only with its own token); a body route answers 415 to any
  Content-Type but JSON (and OIP's binary tensors on infer): no browser "simple request" reaches it;
- KServe's model-repository extension (load/unload over HTTP, on by default upstream) is off:
  anyone who could reach it could take the model away while readiness still said ready. With
  `repository_token` it is on for this one model, and every repository call must carry
  `Authorization: Bearer <token>` (401 otherwise); unload drains the server (ready 503, still
  live), load resolves the model reference again (an alias picks up its current version);
- one error table: every error, KServe's own included, becomes {"error": message} (bounded) with
  its status; 4xx are logged as one line, only 5xx with a traceback;
- every answer on a predict/infer path is counted by code, version and role in one place (an ASGI
  middleware outside the routes), so the canary's error rate also sees errors KServe raises
  before or after the model;
- v2 requests are parsed by components.stages.serve.oip (malformed bodies are 400, never 500), the
  served version answers at /v2/models/NAME/versions/V/..., any other version is 404;
- `run_workers` serves N processes on one socket, with Prometheus multiprocess collection so that
  /metrics (from any worker) covers every worker.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Callable

from components.cluster import kserve_sdk

kserve_sdk.load()
import orjson  # noqa: E402
from cloudevents.sdk.converters.util import has_binary_headers  # noqa: E402
from fastapi import Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady  # noqa: E402
from kserve.metrics import POST_HIST_TIME, PRE_HIST_TIME, PREDICT_HIST_TIME, get_labels  # noqa: E402
from kserve.protocol.rest.server import RESTServer  # noqa: E402
from kserve.protocol.rest.v1_endpoints import V1Endpoints  # noqa: E402
from kserve.utils.utils import is_structured_cloudevent  # noqa: E402
from prometheus_client import REGISTRY, CollectorRegistry, exposition, multiprocess  # noqa: E402

from components.common.errors import ConveyorError  # noqa: E402
from components.stages.serve import oip  # noqa: E402
from components.stages.serve.security import ServerSecurity, bearer_matches  # noqa: E402

log = logging.getLogger("conveyor.serve")
MAX_ERROR_CHARS = 1000
# The paths whose answers are requests in the canary's sense (health and metadata are not).
PREDICT_PATH = re.compile(r"^/(v1/models/[^/]+:predict|v2/models/[^/]+(/versions/[^/]+)?/infer)$")
VERSIONED = re.compile(r"^/v2/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)(?P<rest>/ready|/infer)?$")
REPOSITORY = "/v2/repository/"
# Open without the data-plane token: kubelet's probes and KServe's readiness (not ":predict").
OPEN_PATHS = re.compile(r"^/(|v2/health/(live|ready)|v2/models/[^/]+(/versions/[^/]+)?/ready|v1/models/[^/:]+)$")
# The routes that take a request body; anything but JSON (or OIP's binary tensors on infer) is 415.
BODY_PATH = re.compile(r"^/(v1/models/[^/]+:(predict|explain)|v2/models/[^/]+(/versions/[^/]+)?/(infer|explain))$")
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch, read at its import
KSERVE_TIMERS = (PRE_HIST_TIME, PREDICT_HIST_TIME, POST_HIST_TIME)
# KServe's and FastAPI's errors; the project's own carry their status (components.common.errors).
STATUS = [(InvalidInput, 400), (RequestValidationError, 400), (ModelNotFound, 404), (ModelNotReady, 503),
          (NotImplementedError, 501)]


def status_of(exc: BaseException) -> int:
    if isinstance(exc, ConveyorError):
        return exc.http_status
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 500)


def _message(exc: BaseException) -> str:
    if isinstance(exc, RequestValidationError):  # pydantic's own text echoes the whole input
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"request body: {where}: {first.get('msg', 'invalid')}" if where else "request body: invalid"
    text = exc.message if isinstance(exc, ConveyorError) else str(exc)
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    code = status_of(exc)
    if code >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc, exc_info=exc)
    else:
        log.info("%s %s: %d %s", request.method, request.url.path, code, _message(exc))
    return JSONResponse(status_code=code, content={"error": _message(exc)})


def _media_type(headers: dict) -> str:
    return headers.get(b"content-type", b"").decode("latin-1").split(";", 1)[0].strip().lower()


def unsupported_media(scope) -> JSONResponse | None:
    """415 for a body that is not JSON on a body route. A text/plain or form POST is a CORS "simple
    request": any web page a user opens could send one to an internal predictor without a preflight."""
    if scope["method"] != "POST" or not BODY_PATH.match(scope["path"]):
        return None
    headers = dict(scope["headers"])
    media = _media_type(headers)
    binary_ok = scope["path"].endswith("/infer")  # OIP's binary tensor extension, with its header
    if media == "application/json" or (binary_ok and media == "application/octet-stream"):
        return None
    if not media and b"origin" not in headers:
        # NVIDIA's tritonclient sends no Content-Type, JSON or binary. A browser sends Origin with
        # every cross-origin POST, so a body without a type is refused only from a web page.
        return None
    accepted = "application/json" + (" (or application/octet-stream with Inference-Header-Content-Length)"
                                      if binary_ok else "")
    return JSONResponse(status_code=415, content={
        "error": f"Content-Type {media[:100] or '(none)'} is not accepted here: send {accepted}, e.g. "
                 "curl -H 'Content-Type: application/json' -d '{...}'"})


def unauthorized(scope, auth_token: str | None, metrics_token: str | None) -> JSONResponse | None:
    """401 unless the request carries the token its path needs. Health stays open for kubelet;
    /metrics is open unless it has its own token; the repository has its own (checked apart)."""
    path = scope["path"]
    token = metrics_token if path == "/metrics" else None if OPEN_PATHS.match(path) else auth_token
    if token is None or path.startswith(REPOSITORY):
        return None
    if bearer_matches(dict(scope["headers"]).get(b"authorization", b"").decode("latin-1"), token):
        return None
    what = "/metrics" if path == "/metrics" else "this route"
    return JSONResponse(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="conveyor"'}, content={
        "error": f"{what} needs 'Authorization: Bearer <token>' with this server's token"})


class RequestAccounting:
    """ASGI middleware: counts every predict/infer answer (status code as sent), routes a versioned
    v2 path to the served version or answers 404 for any other version, and answers 404 for the
    model-repository extension unless it is on and the request carries its token."""

    def __init__(self, app, model, repository_token: str | None = None, auth_token: str | None = None,
                 metrics_token: str | None = None):
        self.app, self.model, self.repository_token = app, model, repository_token
        self.auth_token, self.metrics_token = auth_token, metrics_token

    def _repository_refusal(self, scope) -> JSONResponse | None:
        if self.repository_token is None:  # KServe registers these inside an included router; refused here
            return JSONResponse(status_code=404, content={
                "error": "the model repository extension is off: this server serves one version, fixed at "
                         "start (conveyor serve --model-repository turns it on, behind a token)"})
        given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if not bearer_matches(given, self.repository_token):
            return JSONResponse(status_code=401, headers={"WWW-Authenticate": "Bearer"}, content={
                "error": "the model repository needs 'Authorization: Bearer <token>' with this server's token"})
        return None

    def _not_served(self, version: str) -> JSONResponse:
        return JSONResponse(status_code=404, content={
            "error": f"model {self.model.name} version {version[:100]} is not served here (this server serves "
                     f"{self.model.version})"})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path.startswith(REPOSITORY) and (refusal := self._repository_refusal(scope)) is not None:
            log.info("%s %s: %d %s", scope["method"], path, refusal.status_code, "model repository refused")
            return await refusal(scope, receive, send)
        # Refused before routing, and counted on a predict path like any other answer. The log line
        # names the path and the code, never a header.
        refusal = unauthorized(scope, self.auth_token, self.metrics_token) or unsupported_media(scope)
        if refusal is not None:
            log.info("%s %s: %d", scope["method"], path, refusal.status_code)
            if PREDICT_PATH.match(path):
                self.model.count(refusal.status_code)
            return await refusal(scope, receive, send)
        app = self.app
        versioned = VERSIONED.match(path)
        model_version = path.startswith("/v2/models/") and b"model_version" in scope["query_string"]
        name = path.split("/")[3] if versioned or model_version else None
        if name is not None and name != self.model.name:
            # KServe answers a version of an unknown model 501; it is simply not here
            app = JSONResponse(status_code=404, content={
                "error": f"model {name[:100]} is not served here (this server serves {self.model.name})"})
        elif versioned:
            if versioned["version"] != self.model.version:  # answered here, and counted like any other
                app = self._not_served(versioned["version"])
            else:
                scope = {**scope, "path": f"/v2/models/{self.model.name}{versioned['rest'] or ''}"}
        elif model_version:
            # KServe's own form (?model_version=V, which it answers 501): the same rule as the path form
            query = urllib.parse.parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            other = next((v for k, v in query if k == "model_version" and v != self.model.version), None)
            if other is not None:
                app = self._not_served(other)
            else:
                kept = urllib.parse.urlencode([(k, v) for k, v in query if k != "model_version"])
                scope = {**scope, "query_string": kept.encode("latin-1")}
        if not PREDICT_PATH.match(path):
            return await app(scope, receive, send)
        sent = {}

        async def send_counted(message):
            if message["type"] == "http.response.start":
                sent["code"] = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_counted)
        except Exception:
            sent.setdefault("code", 500)  # Starlette's outermost layer answers it with a 500
            raise
        finally:
            self.model.count(sent.get("code", 500))


async def metrics(request: Request) -> Response:
    """KServe's /metrics, but across every worker when they share a multiprocess directory."""
    registry = REGISTRY
    if os.environ.get(MULTIPROCESS_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    encoder, content_type = exposition.choose_encoder(request.headers.get("accept"))
    return Response(content=encoder(registry), headers={"content-type": content_type})


# Where the OpenAPI document gains a request body (the routes read raw bodies, so FastAPI cannot
# infer one) and the error answers every route can give.
REQUEST_BODIES = {"/v1/models/{model_name}:predict": oip.V1_REQUEST_SCHEMA,
                  "/v1/models/{model_name}:explain": oip.V1_REQUEST_SCHEMA,
                  "/v2/models/{model_name}/infer": oip.INFER_REQUEST_SCHEMA}
ERROR_ANSWERS = {"400": "bad request (the message names the field)", "404": "no such model or version",
                 "503": "model not ready"}


def document(app, model_name: str) -> None:
    """Complete the app's OpenAPI document: request bodies, {"error"} answers, the one model name."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = generate()
            for path, operations in doc["paths"].items():
                for operation in operations.values():
                    for parameter in operation.get("parameters", []):
                        if parameter["name"] == "model_name":
                            parameter["schema"] = {"type": "string", "enum": [model_name]}
                    responses = operation.setdefault("responses", {})
                    responses.pop("422", None)  # validation errors are answered 400 (error table)
                    for code, what in ERROR_ANSWERS.items():
                        responses.setdefault(code, {"description": what, "content": {
                            "application/json": {"schema": oip.ERROR_SCHEMA}}})
                    if path in REQUEST_BODIES:
                        operation["requestBody"] = {"required": True, "content": {
                            "application/json": {"schema": REQUEST_BODIES[path]}}}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi


class ConveyorRESTServer(RESTServer):
    def __init__(self, *args, host: str, model, repository_token: str | None = None,
                 security: ServerSecurity | None = None, timing_log: bool = True, **kwargs):
        security = security or ServerSecurity()
        self.timing_log = timing_log
        # KServe's own TLS (and its watcher that reloads a renewed certificate, as cert-manager writes it)
        super().__init__(*args, ssl_certfile=security.tls_cert, ssl_keyfile=security.tls_key, **kwargs)
        if security.tls_client_ca:  # read by uvicorn when it loads the config, at start
            self.config.ssl_ca_certs = security.tls_client_ca
            self.config.ssl_cert_reqs = ssl.CERT_REQUIRED
        self.config.host = host
        self.model = model
        self.repository_token = repository_token
        self.security = security

    def _register_endpoints(self, app):
        model = self.model
        predict = self._v1_predict()

        async def infer(model_name: str, request: Request):
            if model_name != model.name:
                raise ModelNotFound(model_name)
            if not model.ready:
                raise ModelNotReady(model_name)
            parsed = oip.parse_request(await request.body(), dict(request.headers))
            return await model.infer_v2(parsed)

        async def metadata(model_name: str):
            if model_name != model.name:
                raise ModelNotFound(model_name)
            return model.metadata()

        async def server_ready():
            if not model.ready:
                return JSONResponse(status_code=503, content={"ready": False})
            return {"ready": True}

        async def server_live():
            # Live while a model is held: a server whose model is gone should be restarted, not kept
            # (one drained on purpose through the repository is not: a restart would undo the unload)
            if model.loaded is None and not model.unloaded_on_request:
                return JSONResponse(status_code=503, content={"live": False})
            return {"live": True}

        # Registered before KServe's routes, so these win for the same paths.
        if self.repository_token is not None:
            self._register_repository(app)
        app.add_api_route("/metrics", metrics, methods=["GET"])
        app.add_api_route("/v2/health/live", server_live, methods=["GET"])
        # KServe's route of the same path stays in the OpenAPI document: the contract is its own
        app.add_api_route("/v1/models/{model_name}:predict", predict, methods=["POST"], include_in_schema=False)
        app.add_api_route("/v2/models/{model_name}/infer", infer, methods=["POST"])
        app.add_api_route("/v2/models/{model_name}", metadata, methods=["GET"])
        app.add_api_route("/v2/health/ready", server_ready, methods=["GET"])
        super()._register_endpoints(app)
        document(app, model.name)

    def _v1_predict(self):
        """v1 `:predict` for the one model this server holds, without KServe's generic data plane.

        KServe's route looks the model up in its registry, decodes the body with its CloudEvents
        checks, calls the model through `Model.__call__` (identity pre- and post-processing, each
        timed) and encodes the answer again: about a quarter of a one-text request's time at one
        client (bench/README.md). This route does the same for a plain JSON body, with the same
        errors and KServe's three latency histograms (preprocess and postprocess are identity steps
        here: observed as 0). A CloudEvent goes through KServe's own route: a binary one is answered
        with one, a structured one in an application/json body has its data read."""
        model = self.model
        kserve_route = V1Endpoints(self.dataplane, self.model_repository_extension)
        timers = {}

        async def predict(model_name: str, request: Request):
            if model_name != model.name:
                raise ModelNotFound(model_name)
            if has_binary_headers(request.headers):  # (a structured one's own type is 415 before here)
                return await kserve_route.predict(model_name, request)
            if not model.ready:
                raise ModelNotReady(model_name)
            try:
                payload = orjson.loads(await request.body())
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"Unrecognized request format: {exc}") from None
            if isinstance(payload, dict) and is_structured_cloudevent(payload):
                return await kserve_route.predict(model_name, request)  # the body is kept: read again there
            if not timers:
                timers.update((h, h.labels(**get_labels(model.name))) for h in KSERVE_TIMERS)
            started = time.perf_counter()
            answer = await model.predict(model.validate(payload))  # KServe's own checks first, as there
            timers[PREDICT_HIST_TIME].observe(time.perf_counter() - started)
            timers[PRE_HIST_TIME].observe(0.0)
            timers[POST_HIST_TIME].observe(0.0)
            return Response(content=orjson.dumps(answer), media_type="application/json")

        return predict

    def _register_repository(self, app):
        """The OIP model-repository extension for the one model this server holds."""
        model = self.model

        def known(model_name: str) -> None:
            if model_name != model.name:
                raise ModelNotFound(model_name)

        async def index():
            state = "READY" if model.ready else "UNAVAILABLE"
            return [{"name": model.name, "version": model.version, "state": state,
                     "reason": "" if model.ready else "unloaded"}]

        async def load(model_name: str):
            known(model_name)
            await asyncio.to_thread(model.load)  # the event loop keeps answering health meanwhile
            log.info("model repository: %s loaded version %s", model_name, model.version)
            return {"name": model_name, "load": True, "version": model.version}

        async def unload(model_name: str):
            known(model_name)
            model.release()
            log.info("model repository: %s unloaded; readiness is 503 until it is loaded again", model_name)
            return {"name": model_name, "unload": True}

        app.add_api_route("/v2/repository/index", index, methods=["POST"])
        app.add_api_route("/v2/repository/models/{model_name}/load", load, methods=["POST"])
        app.add_api_route("/v2/repository/models/{model_name}/unload", unload, methods=["POST"])

    async def start(self, sockets: list[socket.socket] | None = None):
        self.create_application()
        await self._server.serve(sockets=sockets)

    def _add_exception_handlers(self, app):
        for cls in (ConveyorError, *(cls for cls, _ in STATUS)):
            app.add_exception_handler(cls, error_response)
        app.add_exception_handler(Exception, error_response)

    def _add_middlewares(self, app):
        if self.timing_log or self.access_log_format:
            super()._add_middlewares(app)
        # else: KServe's TimingMiddleware only feeds the kserve.trace log, which is off without
        # --access-log; it matched every route a second time and read the CPU clock twice per
        # request (~10% of a request's time), for lines nobody sees.
        # added last: outermost
        app.add_middleware(RequestAccounting, model=self.model, repository_token=self.repository_token,
                           auth_token=self.security.auth_token, metrics_token=self.security.metrics_token)


def start(server, model, host: str, sockets: list[socket.socket] | None = None,
          repository_token: str | None = None, security: ServerSecurity | None = None,
          timing_log: bool = True) -> None:
    """ModelServer.start for one model in this process, with ConveyorRESTServer in place of KServe's
    (on `sockets` when a parent bound them for several workers)."""
    # lazy: kserve loads in seconds; only serving needs it
    from kserve.model_server import FASTAPI_APP_IMPORT_STRING

    server._register_and_check_atleast_one_model_is_ready([model])
    rest = ConveyorRESTServer(FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension,
                              server.http_port, access_log_format=server.access_log_format, workers=1,
                              grace_period=server.grace_period, event_loop=server.event_loop,
                              timeout_keep_alive=server.timeout_keep_alive, host=host, model=model,
                              repository_token=repository_token, security=security, timing_log=timing_log)
    server._rest_server = rest
    server.servers.append(rest.start(sockets))
    server.register_signal_handler()
    with asyncio.Runner(loop_factory=loop_factory(server.event_loop)) as runner:
        # KServe's setup_event_loop sets the exception handler and default executor on the current
        # loop: the one that runs, here (under a bare asyncio.run it configured another one).
        asyncio.set_event_loop(runner.get_loop())
        server.setup_event_loop()
        runner.run(server._serve())


def loop_factory(event_loop: str):
    """KServe's --event_loop ("auto": uvloop where installed, as uvicorn.run does; "asyncio";
    "uvloop"). KServe's own start() runs asyncio.run, which ignores the setting: the stdlib loop
    gives way to uvloop here as under uvicorn.run (the 1-client p50 0.724 -> 0.693 ms)."""
    if event_loop == "asyncio":
        return None
    try:
        import uvloop  # lazy: optional (KServe's "auto" falls back to asyncio where it is missing)
    except ImportError:
        if event_loop == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


MAX_KILLED_BEFORE_READY = 3  # per worker slot, in a row: then the parent stops rather than loop


def _exit_status(exitcode: int | None) -> int:
    """The parent's exit status for a worker that ended before it was ready: its own error code, or
    128 + signal as a shell reports a kill; never 0 (that worker never served)."""
    if exitcode is None or exitcode == 0:
        return 1
    return exitcode if exitcode > 0 else 128 - exitcode


class _Worker:
    """One spawned worker process and the event it sets once its model is loaded."""

    def __init__(self, context, target: Callable, options: dict, sock: socket.socket):
        self.ready = context.Event()
        self.process = context.Process(target=target, args=(options, sock, self.ready), daemon=False)
        self.process.start()


def run_workers(target: Callable, options: dict, workers: int, host: str, port: int,
                grace_seconds: float = 30.0) -> int:
    """Serve with `workers` processes accepting on one socket bound here. `target(options, sock,
    ready)` runs in each (spawned: torch and its thread pools are not fork-safe) and sets `ready`
    once its model is loaded. A worker that dies after that is replaced; one that dies before it
    was ever ready stops them all when it exited with an error (a model that cannot load would fail
    the same way again); one killed by a signal before it was ready is replaced, up to
    MAX_KILLED_BEFORE_READY times in a row.
    Counters and histograms go to a fresh multiprocess directory, removed on exit."""
    metrics_dir = tempfile.mkdtemp(prefix="conveyor-metrics-")
    os.environ[MULTIPROCESS_DIR] = metrics_dir  # inherited by the spawned workers before they import
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this; the event loop does not set it on a socket handed to it, and
    # without it a response written in two parts waits out the client's delayed ACK (~40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    context = multiprocessing.get_context("spawn")
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    pool = [_Worker(context, target, options, sock) for _ in range(workers)]
    killed_before_ready = [0] * workers
    log.info("serving on %s:%d with %d workers (metrics from every worker: %s)", host, port, workers, metrics_dir)
    code = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for i, worker in enumerate(pool):
                if worker.process.is_alive():
                    continue
                multiprocess.mark_process_dead(worker.process.pid)
                exitcode = worker.process.exitcode
                if not worker.ready.is_set():
                    # An error while loading would fail the same way again; a kill (the OOM killer, an
                    # operator) says nothing about the model, so that worker is replaced, a few times.
                    killed_before_ready[i] += 1
                    if exitcode is None or exitcode >= 0 or killed_before_ready[i] > MAX_KILLED_BEFORE_READY:
                        log.error("worker %d exited with %s before its model was ready: stopping", i, exitcode)
                        code = _exit_status(exitcode)
                        stopping.append(None)
                        break
                else:
                    killed_before_ready[i] = 0
                log.warning("worker %d (pid %s) exited with %s: replacing it", i, worker.process.pid,
                            worker.process.exitcode)
                pool[i] = _Worker(context, target, options, sock)
    finally:
        for worker in pool:
            if worker.process.is_alive():
                worker.process.terminate()  # uvicorn drains open requests on SIGTERM
        deadline = time.monotonic() + grace_seconds
        for worker in pool:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return code

"""The HTTP layer around ConveyorModel: KServe's REST server with Conveyor's rules on top.

- binds 127.0.0.1 unless told otherwise (KServe hard-codes 0.0.0.0; the image passes --host);
- KServe's model-repository extension (load/unload over HTTP, on by default upstream) is not
  served: anyone who could reach it could take the model away while readiness still said ready;
- one error table: every error, KServe's own included, becomes {"error": message} (bounded) with
  its status; 4xx are logged as one line, only 5xx with a traceback;
- every answer on a predict/infer path is counted by code, version and role in one place (an ASGI
  middleware outside the routes), so the canary's error rate also sees errors KServe raises
  before or after the model;
- v2 requests are parsed by components.serve.oip (malformed bodies are 400, never 500), the
  served version answers at /v2/models/NAME/versions/V/..., any other version is 404.
"""

from __future__ import annotations

import logging
import re

from components.serve import kserve_sdk

kserve_sdk.load()
from fastapi import Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady  # noqa: E402
from kserve.protocol.rest.server import RESTServer  # noqa: E402

from components.common.errors import InputError  # noqa: E402
from components.serve import oip  # noqa: E402

log = logging.getLogger("conveyor.serve")
MAX_ERROR_CHARS = 1000
# The paths whose answers are requests in the canary's sense (health and metadata are not).
PREDICT_PATH = re.compile(r"^/(v1/models/[^/]+:predict|v2/models/[^/]+(/versions/[^/]+)?/infer)$")
VERSIONED = re.compile(r"^/v2/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)(?P<rest>/ready|/infer)?$")
REPOSITORY = "/v2/repository/"
STATUS = [(InputError, 400), (InvalidInput, 400), (RequestValidationError, 400), (ModelNotFound, 404),
          (ModelNotReady, 503), (NotImplementedError, 501)]


def status_of(exc: BaseException) -> int:
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 500)


def _message(exc: BaseException) -> str:
    if isinstance(exc, RequestValidationError):  # pydantic's own text echoes the whole input
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"request body: {where}: {first.get('msg', 'invalid')}" if where else "request body: invalid"
    text = exc.message if isinstance(exc, InputError) else str(exc)
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    code = status_of(exc)
    if code >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc, exc_info=exc)
    else:
        log.info("%s %s: %d %s", request.method, request.url.path, code, _message(exc))
    return JSONResponse(status_code=code, content={"error": _message(exc)})


class RequestAccounting:
    """ASGI middleware: counts every predict/infer answer (status code as sent), routes a versioned
    v2 path to the served version or answers 404 for any other version, and answers 404 for the
    model-repository extension."""

    def __init__(self, app, model):
        self.app, self.model = app, model

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path.startswith(REPOSITORY):  # KServe registers these inside an included router; refused here
            return await JSONResponse(status_code=404, content={
                "error": "the model repository extension is off: this server serves one version, fixed at "
                         "start"})(scope, receive, send)
        app = self.app
        versioned = VERSIONED.match(path)
        if versioned and versioned["name"] == self.model.name:
            if versioned["version"] != self.model.version:  # answered here, and counted like any other
                app = JSONResponse(status_code=404, content={
                    "error": f"model {self.model.name} version {versioned['version']} is not served here (this "
                             f"server serves {self.model.version})"})
            else:
                scope = {**scope, "path": f"/v2/models/{self.model.name}{versioned['rest'] or ''}"}
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


class ConveyorRESTServer(RESTServer):
    def __init__(self, *args, host: str, model, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.host = host
        self.model = model

    def _register_endpoints(self, app):
        model = self.model

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
            if model.loaded is None:
                return JSONResponse(status_code=503, content={"live": False})
            return {"live": True}

        # Registered before KServe's routes, so these win for the same paths.
        app.add_api_route("/v2/health/live", server_live, methods=["GET"])
        app.add_api_route("/v2/models/{model_name}/infer", infer, methods=["POST"])
        app.add_api_route("/v2/models/{model_name}", metadata, methods=["GET"])
        app.add_api_route("/v2/health/ready", server_ready, methods=["GET"])
        super()._register_endpoints(app)

    def _add_exception_handlers(self, app):
        for cls, _ in STATUS:
            app.add_exception_handler(cls, error_response)
        app.add_exception_handler(Exception, error_response)

    def _add_middlewares(self, app):
        super()._add_middlewares(app)
        app.add_middleware(RequestAccounting, model=self.model)  # added last: outermost


def start(server, model, host: str) -> None:
    """ModelServer.start for one model and one worker, with ConveyorRESTServer in place of KServe's."""
    import asyncio

    from kserve.model_server import FASTAPI_APP_IMPORT_STRING

    server._register_and_check_atleast_one_model_is_ready([model])
    rest = ConveyorRESTServer(FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension,
                              server.http_port, access_log_format=server.access_log_format, workers=1,
                              grace_period=server.grace_period, event_loop=server.event_loop,
                              timeout_keep_alive=server.timeout_keep_alive, host=host, model=model)
    server._rest_server = rest
    server.servers.append(rest.start())
    server.setup_event_loop()
    server.register_signal_handler()
    asyncio.run(server._serve())

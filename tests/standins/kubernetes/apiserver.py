"""A Kubernetes API server stand-in over real HTTP, for the official `kubernetes` client that the
Katib launcher, the deploy step, the canary controller and the kubectl plugin use. No API server
runs on these machines; this one keeps the rules the code depends on, the way kube-apiserver does:

- authentication by bearer token (one per ServiceAccount) and authorization by the RBAC Roles and
  RoleBindings the chart renders: a call the Role does not allow is answered 403 Forbidden;
  every call is recorded (verb, group, resource, subresource, namespace, name, who, status);
- custom resources: create/update/patch validated against the upstream CRD schema and its CEL rules
  (strict field validation: unknown fields are 400 BadRequest, other schema errors 422 Invalid) and
  then by the ported admission webhooks (KServe, Katib, training operator, Trainer, Spark
  Operator): 400 with the webhook's message;
- PATCH: application/merge-patch+json (RFC 7386) and application/json-patch+json (RFC 6902);
  strategic merge patch is 415 UnsupportedMediaType for custom resources, as on a real cluster;
- optimistic concurrency: a resourceVersion in the body that is not the current one is 409;
  create of an existing name is 409 AlreadyExists; get/patch/delete of a missing one 404;
- metadata.generation bumps on spec changes only; resourceVersion on every write;
- LIST with fieldSelector metadata.name / labelSelector k=v; WATCH streams ADDED then MODIFIED /
  DELETED events and ends at timeoutSeconds, or earlier at the server's own `max_watch_s` (a real
  API server closes watches after --min-request-timeout): clients must resume.

Controllers (KServe's status, Katib's trials) are plain functions called after each write.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from components.cluster.deploy import merge_patch
from tests.standins.kubernetes import rules

KINDS = {("serving.kserve.io", "inferenceservices"): "InferenceService",
         ("serving.kserve.io", "inferencegraphs"): "InferenceGraph",
         ("kubeflow.org", "experiments"): "Experiment", ("kubeflow.org", "trials"): "Trial",
         ("kubeflow.org", "pytorchjobs"): "PyTorchJob",
         ("sparkoperator.k8s.io", "sparkapplications"): "SparkApplication",
         ("trainer.kubeflow.org", "trainjobs"): "TrainJob",
         ("trainer.kubeflow.org", "trainingruntimes"): "TrainingRuntime",
         ("gateway.networking.k8s.io", "httproutes"): "HTTPRoute", ("", "events"): "Event",
         ("batch", "jobs"): "Job", ("batch", "cronjobs"): "CronJob"}
# Built-in kinds validated against the Kubernetes OpenAPI schema (kubernetes-validate, strict), as
# the API server's own validation does; custom resources against their upstream CRDs.
BUILTIN = {"Job", "CronJob"}
SELF_REVIEWS = re.compile(r"^/apis/(?P<group>authentication\.k8s\.io|authorization\.k8s\.io)/v1/"
                          r"(?P<resource>selfsubjectreviews|selfsubjectaccessreviews)$")
PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                  r"/namespaces/(?P<ns>[^/]+)/(?P<resource>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")


@dataclass(frozen=True)
class Call:
    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    user: str
    status: int


ApiError = rules.Refused  # what the server answers instead of a write: code, reason, message


def rbac_allows(rbac: list[dict], user: str, verb: str, group: str, resource: str, sub: str, namespace: str,
                name: str, groups: tuple[str, ...] = ()) -> bool:
    """Role/RoleBinding evaluation as the RBAC authorizer does it (namespaced rules only)."""
    roles = {(o["metadata"].get("namespace", namespace), o["metadata"]["name"]): o for o in rbac
             if o["kind"] == "Role"}
    target = f"{resource}/{sub}" if sub else resource
    for binding in (o for o in rbac if o["kind"] == "RoleBinding"):
        if binding["metadata"].get("namespace", namespace) != namespace:
            continue
        subjects = [f"system:serviceaccount:{s.get('namespace', namespace)}:{s['name']}"
                    for s in binding.get("subjects", []) if s["kind"] == "ServiceAccount"]
        subjects += [s["name"] for s in binding.get("subjects", []) if s["kind"] == "User"]
        bound_groups = {s["name"] for s in binding.get("subjects", []) if s["kind"] == "Group"}
        if (user not in subjects and not bound_groups & set(groups)) or binding["roleRef"]["kind"] != "Role":
            continue
        role = roles.get((namespace, binding["roleRef"]["name"]))
        for rule in (role or {}).get("rules", []):
            if (set(rule.get("apiGroups", [])) & {group, "*"} and set(rule.get("resources", [])) & {target, "*"}
                    and set(rule.get("verbs", [])) & {verb, "*"}
                    and (not rule.get("resourceNames") or name in rule["resourceNames"])):
                return True
    return False


def json_patch(doc: Any, ops: list[dict]) -> Any:
    """RFC 6902 (add, remove, replace, move, copy, test)."""
    doc = copy.deepcopy(doc)

    def split(pointer: str) -> list[str]:
        return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]

    def parent(pointer: str):
        parts = split(pointer)
        node = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node, parts[-1]

    def get(pointer: str):
        node = doc
        for part in split(pointer):
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    for op in ops:
        kind, path = op["op"], op["path"]
        try:
            if kind == "test":
                if get(path) != op["value"]:
                    raise ApiError(422, "Invalid", f"json patch test failed at {path}")
                continue
            value = get(op["from"]) if kind in ("move", "copy") else op.get("value")
            if kind == "move":
                node, key = parent(op["from"])
                node.pop(int(key)) if isinstance(node, list) else node.pop(key)
            if kind == "remove":
                node, key = parent(path)
                node.pop(int(key)) if isinstance(node, list) else node.pop(key)
                continue
            node, key = parent(path)
            if isinstance(node, list):
                index = len(node) if key == "-" else int(key)
                if kind == "replace":
                    node[index] = copy.deepcopy(value)
                else:
                    node.insert(index, copy.deepcopy(value))
            else:
                if kind == "replace" and key not in node:
                    raise ApiError(422, "Invalid", f"json patch replace: {path} does not exist")
                node[key] = copy.deepcopy(value)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(422, "Invalid", f"json patch {kind} at {path}: {exc}") from exc
    return doc


class FakeApiServer:
    def __init__(self, rbac: list[dict], controllers: dict[str, Callable[[FakeApiServer, dict], None]] | None = None,
                 max_watch_s: float = 2.0):
        self.rbac, self.controllers, self.max_watch_s = rbac, controllers or {}, max_watch_s
        self.objects: dict[tuple[str, str, str, str], dict] = {}  # (group, resource, ns, name)
        self.calls: list[Call] = []
        self.version = 0
        self.cond = threading.Condition()
        self.tokens: dict[str, str] = {}
        self.groups: dict[str, tuple[str, ...]] = {}  # user -> groups (people; ServiceAccounts have none here)
        self.revisions: dict[tuple[str, str], list[str]] = {}  # KServe controller: revision templates
        self.spark_env: dict[str, str] = {}  # operator-run pods' environment (the S3 secret's keys)
        self.trainjob_logs: dict[str, list[str]] = {}  # each TrainJob node's output
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> FakeApiServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server._handle(self, "GET")

            def do_POST(self):
                server._handle(self, "POST")

            def do_PATCH(self):
                server._handle(self, "PATCH")

            def do_PUT(self):
                server._handle(self, "PUT")

            def do_DELETE(self):
                server._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def token_for(self, namespace: str, service_account: str) -> str:
        user = f"system:serviceaccount:{namespace}:{service_account}"
        token = f"token-{uuid.uuid4().hex}"
        self.tokens[token] = user
        return token

    def token_for_user(self, user: str, groups: tuple[str, ...] = ()) -> str:
        """A person, as an authenticating proxy or OIDC would present them (RoleBinding kind User/Group)."""
        token = f"token-{uuid.uuid4().hex}"
        self.tokens[token] = user
        self.groups[user] = (*groups, "system:authenticated")
        return token

    def kubeconfig(self, path, namespace: str, service_account: str, token: str | None = None) -> str:
        """A kubeconfig file for one ServiceAccount, or for the holder of `token` (the client's
        load_kube_config reads it)."""
        import yaml

        token = token or self.token_for(namespace, service_account)
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "standin",
                  "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
                  "users": [{"name": service_account, "user": {"token": token}}],
                  "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": service_account,
                                                               "namespace": namespace}}]}
        with open(path, "w") as handle:
            yaml.safe_dump(config, handle)
        return str(path)

    # -- object store (also used by controllers) ----------------------------------------------
    def put(self, group: str, resource: str, obj: dict) -> dict:
        with self.cond:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            key = (group, resource, obj["metadata"]["namespace"], obj["metadata"]["name"])
            self.objects[key] = obj
            self.cond.notify_all()
            return copy.deepcopy(obj)

    def find(self, group: str, resource: str, namespace: str, name: str) -> dict | None:
        with self.cond:
            obj = self.objects.get((group, resource, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def calls_by(self, user_suffix: str) -> list[Call]:
        return [c for c in self.calls if c.user.endswith(user_suffix)]

    # -- request handling ---------------------------------------------------------------------
    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(req.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        match = PATH.match(url.path)
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        review = SELF_REVIEWS.match(url.path)
        if review and method == "POST":
            return self._self_review(req, review["group"], review["resource"], body)
        if not match:
            return self._send(req, 404, self._status(404, "NotFound", f"no route {url.path}"))
        group = "" if match["core"] else match["group"]
        resource, ns, name, sub = match["resource"], match["ns"], match["name"] or "", match["sub"] or ""
        verb = {"GET": "get" if name else ("watch" if query.get("watch", "").lower() in ("true", "1") else "list"),
                "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
        token = (req.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        user = self.tokens.get(token, "system:anonymous")
        record = lambda status: self.calls.append(Call(verb, group, resource, sub, ns, name, user, status))  # noqa: E731
        if not rbac_allows(self.rbac, user, verb, group, resource, sub, ns, name, self.groups.get(user, ())):
            record(403)
            message = (f'{resource} "{name}" is forbidden: User "{user}" cannot {verb} resource "{resource}" in API '
                       f'group "{group}" in the namespace "{ns}"')
            return self._send(req, 403, self._status(403, "Forbidden", message))
        try:
            if verb == "watch":
                record(200)
                return self._watch(req, group, resource, ns, query)
            code, out = self._serve(verb, group, resource, ns, name, query, body,
                                    req.headers.get("Content-Type", ""))
        except ApiError as exc:
            record(exc.code)
            return self._send(req, exc.code, self._status(exc.code, exc.reason, exc.message))
        record(code)
        self._send(req, code, out)

    def _self_review(self, req, group: str, resource: str, body: bytes) -> None:
        """SelfSubjectReview and SelfSubjectAccessReview: every authenticated user may create them
        (the system:basic-user ClusterRole); the answer is about the caller alone."""
        token = (req.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        user = self.tokens.get(token)
        if user is None:
            self.calls.append(Call("create", group, resource, "", "", "", "system:anonymous", 401))
            return self._send(req, 401, self._status(401, "Unauthorized", "Unauthorized"))
        review = json.loads(body or b"{}")
        groups = list(self.groups.get(user, ("system:serviceaccounts", "system:authenticated")))
        if resource == "selfsubjectreviews":
            review["status"] = {"userInfo": {"username": user, "groups": groups, "uid": f"uid-{user}"}}
        else:
            attrs = (review.get("spec") or {}).get("resourceAttributes") or {}
            allowed = rbac_allows(self.rbac, user, attrs.get("verb", ""), attrs.get("group", ""),
                                  attrs.get("resource", ""), attrs.get("subresource", ""), attrs.get("namespace", ""),
                                  attrs.get("name", ""), tuple(groups))
            review["status"] = {"allowed": allowed, **({} if allowed else {"reason": "no RBAC rule allows it"})}
        self.calls.append(Call("create", group, resource, "", "", "", user, 201))
        self._send(req, 201, review)

    def _serve(self, verb, group, resource, ns, name, query, body, content_type):
        kind = KINDS.get((group, resource))
        if kind is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({group}/{resource})")
        if verb == "get":
            obj = self.find(group, resource, ns, name)
            if obj is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            return 200, obj
        if verb == "list":
            return 200, {"apiVersion": "v1", "kind": f"{kind}List", "metadata": {"resourceVersion": str(self.version)},
                         "items": self._select(group, resource, ns, query)}
        if verb == "create":
            obj = json.loads(body)
            obj.setdefault("metadata", {})["namespace"] = ns
            if obj["metadata"].get("generateName") and not obj["metadata"].get("name"):
                obj["metadata"]["name"] = obj["metadata"]["generateName"] + uuid.uuid4().hex[:5]
            if self.find(group, resource, ns, obj["metadata"]["name"]) is not None:
                raise ApiError(409, "AlreadyExists", f'{resource} "{obj["metadata"]["name"]}" already exists')
            self._admit(kind, obj, None)
            obj["metadata"].update(uid=str(uuid.uuid4()), generation=1,
                                   creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            stored = self.put(group, resource, obj)
            self._reconcile(kind, stored)
            return 201, self.find(group, resource, ns, obj["metadata"]["name"])
        if verb in ("patch", "update"):
            current = self.find(group, resource, ns, name)
            if current is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            payload = json.loads(body)
            if verb == "update":
                updated = payload
            elif content_type.startswith("application/merge-patch+json"):
                updated = merge_patch(current, payload)
            elif content_type.startswith("application/json-patch+json"):
                updated = json_patch(current, payload)
            else:  # strategic merge patch (or apply) is not supported for custom resources
                raise ApiError(415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format - accepted media types include: "
                               f"application/json-patch+json, application/merge-patch+json (got {content_type})")
            wanted = (payload.get("metadata") or {}).get("resourceVersion") if isinstance(payload, dict) else None
            updated = rules.replaced(current, updated, wanted, resource, name,
                                     check=lambda new, old: self._admit(kind, new, old))
            stored = self.put(group, resource, updated)
            self._reconcile(kind, stored)
            return 200, self.find(group, resource, ns, name)
        if verb == "delete":
            with self.cond:
                obj = self.objects.pop((group, resource, ns, name), None)
                self.version += 1
                self.cond.notify_all()
            if obj is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            return 200, self._status(200, "", "deleted") | {"status": "Success"}
        raise ApiError(405, "MethodNotAllowed", verb)

    def _admit(self, kind: str, obj: dict, old: dict | None) -> None:
        """The API server's schema validation (the upstream CRD, CEL rules included) and the
        upstream admission webhooks (ported), as tests/standins/kubernetes/custom_resources.py applies them."""
        if kind == "Event":
            if not obj.get("involvedObject", {}).get("name") or not obj.get("reason"):
                raise ApiError(422, "Invalid", "Event: involvedObject.name and reason are required")
            return
        if kind in BUILTIN:
            import kubernetes_validate

            clean = {k: v for k, v in obj.items() if k != "status"}
            clean["metadata"] = {k: v for k, v in obj["metadata"].items()
                                 if k not in ("uid", "resourceVersion", "generation", "creationTimestamp")}
            for version in rules.KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(clean, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    raise ApiError(422, "Invalid", f"{kind}: {exc.message} at {list(exc.path)}") from exc
            return
        runtime = None
        if kind == "TrainJob":  # the TrainJob webhook reads the runtime it references, when it is here
            ref = (obj.get("spec") or {}).get("runtimeRef") or {}
            if ref.get("kind") == "TrainingRuntime":
                runtime = self.find("trainer.kubeflow.org", "trainingruntimes", obj["metadata"]["namespace"],
                                    ref.get("name", ""))
        rules.admit(obj, old, runtime=runtime)

    def _reconcile(self, kind: str, obj: dict) -> None:
        controller = self.controllers.get(kind)
        if controller:
            threading.Timer(0.05, controller, args=(self, copy.deepcopy(obj))).start()

    def _select(self, group, resource, ns, query) -> list[dict]:
        field = query.get("fieldSelector", "")
        labels = dict(p.split("=", 1) for p in query.get("labelSelector", "").split(",") if "=" in p)
        with self.cond:
            items = [copy.deepcopy(o) for (g, r, n, _), o in self.objects.items() if (g, r, n) == (group, resource, ns)]
        if field.startswith("metadata.name="):
            items = [o for o in items if o["metadata"]["name"] == field.split("=", 1)[1]]
        return [o for o in items if all((o["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())]

    def _watch(self, req, group, resource, ns, query) -> None:
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + min(timeout, self.max_watch_s)
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Transfer-Encoding", "chunked")
        req.end_headers()

        def chunk(data: bytes) -> None:
            req.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            req.wfile.flush()

        seen: dict[str, str] = {}
        try:
            while True:
                current = {o["metadata"]["name"]: o for o in self._select(group, resource, ns, query)}
                for name, obj in current.items():
                    if seen.get(name) != obj["metadata"]["resourceVersion"]:
                        kind = "ADDED" if name not in seen else "MODIFIED"
                        chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                        seen[name] = obj["metadata"]["resourceVersion"]
                for name in [n for n in seen if n not in current]:
                    chunk(json.dumps({"type": "DELETED", "object": {"metadata": {"name": name}}}).encode() + b"\n")
                    del seen[name]
                with self.cond:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.cond.wait(min(left, 0.5))
            chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            pass

    @staticmethod
    def _status(code: int, reason: str, message: str) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
                "code": code}

    @staticmethod
    def _send(req, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        req.send_response(code)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)


# -- controllers ---------------------------------------------------------------------------------
def kserve_controller(server: FakeApiServer, obj: dict) -> None:
    """KServe's status (rules.kserve_status) on the object as last written."""
    name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
    current = server.find("serving.kserve.io", "inferenceservices", ns, name)
    if current is None or current["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
        return  # a newer write will be reconciled on its own
    rules.kserve_status(current, server.revisions.setdefault((ns, name), []), f"http://{name}.{ns}.example.com")
    server.put("serving.kserve.io", "inferenceservices", current)


def katib_trial(experiment: dict, name: str, assignments: list[dict]) -> dict:
    """A Trial as Katib's experiment controller builds it from the Experiment (TrialSpec in
    pkg/apis/controller/trials/v1beta1/trial_types.go): objective, assignments, the run spec with
    the parameters substituted, the collector, primary pod and container, conditions."""
    from tests.support.katib_trial import trial_run_spec

    spec, template = experiment["spec"], experiment["spec"]["trialTemplate"]
    ns = experiment["metadata"]["namespace"]
    run_spec = trial_run_spec(experiment, {a["name"]: a["value"] for a in assignments}, name)
    run_spec["metadata"] = {**(run_spec.get("metadata") or {}), "name": name, "namespace": ns}
    trial_spec = {"objective": spec["objective"], "parameterAssignments": assignments, "runSpec": run_spec,
                  "metricsCollector": spec.get("metricsCollectorSpec") or {"collector": {"kind": "StdOut"}},
                  "primaryContainerName": template["primaryContainerName"],
                  "successCondition": template["successCondition"], "failureCondition": template["failureCondition"],
                  "retainRun": template.get("retain", False)}
    if template.get("primaryPodLabels"):
        trial_spec["primaryPodLabels"] = template["primaryPodLabels"]
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": "Trial",
            "metadata": {"name": name, "namespace": ns, "labels": {"katib.kubeflow.org/experiment":
                                                                   experiment["metadata"]["name"]}},
            "spec": trial_spec}


def katib_controller(server: FakeApiServer, obj: dict) -> None:
    """Katib in brief: each new Experiment gets two succeeded Trials (labelled with the experiment,
    at the feasible space's min and max, each checked as the API server checks a Trial) and ends
    Succeeded with the better as currentOptimalTrial."""
    from tests.standins.kubernetes.custom_resources import validate_custom

    if obj.get("status"):
        return
    name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
    metric = obj["spec"]["objective"]["objectiveMetricName"]
    best = None
    for i, pick in enumerate(("min", "max")):
        assignments = [{"name": p["name"], "value": (p["feasibleSpace"]["list"][0 if pick == "min" else -1]
                                                     if "list" in p["feasibleSpace"] else p["feasibleSpace"][pick])}
                       for p in obj["spec"]["parameters"]]
        value = 0.9 + 0.05 * i
        trial = katib_trial(obj, f"{name}-t{i}", assignments)
        validate_custom(trial)
        trial["status"] = {"conditions": [{"type": "Succeeded", "status": "True"}],
                           "observation": {"metrics": [{"name": metric, "latest": str(value), "max": str(value)}]}}
        server.put("kubeflow.org", "trials", trial)
        best = {"bestTrialName": f"{name}-t{i}", "parameterAssignments": assignments,
                "observation": {"metrics": [{"name": metric, "latest": str(value), "max": str(value)}]}}
    current = server.find("kubeflow.org", "experiments", ns, name)
    if current is None:
        return
    current["status"] = {"conditions": [{"type": "Succeeded", "status": "True",
                                         "reason": "ExperimentMaxTrialsReached", "message": "done"}],
                         "currentOptimalTrial": best}
    server.put("kubeflow.org", "experiments", current)


def spark_operator(server: FakeApiServer, obj: dict) -> None:
    """The Spark Operator in brief: a new SparkApplication is SUBMITTED, then its driver program
    really runs (the mainApplicationFile from the installed package, with the manifest's arguments,
    Spark local[2] for the cluster), and the state becomes COMPLETED or FAILED with its stderr."""
    import os
    import subprocess
    import sys

    if obj.get("status"):
        return
    name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]

    def set_state(state: str, message: str = "") -> None:
        current = server.find("sparkoperator.k8s.io", "sparkapplications", ns, name)
        if current is not None:
            current["status"] = {"applicationState": {"state": state, **({"errorMessage": message} if message else {})},
                                 "driverInfo": {"podName": f"{name}-driver"}}
            server.put("sparkoperator.k8s.io", "sparkapplications", current)

    set_state("SUBMITTED")
    main = obj["spec"]["mainApplicationFile"]
    module = main.split("/site-packages/", 1)[1].removesuffix(".py").replace("/", ".")  # the image's path
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, **server.spark_env}
    done = subprocess.run([sys.executable, "-m", module, *obj["spec"]["arguments"]], env=env, capture_output=True,
                          text=True, timeout=600)
    set_state("COMPLETED") if done.returncode == 0 else set_state("FAILED", done.stderr.strip()[-500:])


def trainer_controller(server: FakeApiServer, obj: dict) -> None:
    """Kubeflow Trainer's torch runtime in brief: numNodes "node" pods, each running the manifest's
    trainer command with the environment the torch plugin gives it (PET_NNODES, PET_NPROC_PER_NODE,
    PET_NODE_RANK, PET_MASTER_ADDR/PORT) plus the manifest's env; all nodes here, on loopback. The
    TrainJob gets a true Complete condition when every node exits 0, else Failed with the output."""
    import os
    import socket
    import subprocess
    import sys

    if obj.get("status"):
        return
    name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
    trainer = obj["spec"]["trainer"]
    command = list(trainer["command"])
    if command[0] == "torchrun":  # the image's console script: this interpreter's module here
        command[:1] = [sys.executable, "-m", "torch.distributed.run"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **{e["name"]: e["value"] for e in trainer.get("env") or [] if "value" in e},
           **{e["name"]: server.spark_env[e["name"]] for e in trainer.get("env") or []
              if "valueFrom" in e and e["name"] in server.spark_env}}
    nodes = trainer.get("numNodes", 1)
    procs = [subprocess.Popen(command, env={**env, "PET_NNODES": str(nodes),
                                            "PET_NPROC_PER_NODE": str(trainer.get("numProcPerNode", 1)),
                                            "PET_NODE_RANK": str(rank), "PET_MASTER_ADDR": "127.0.0.1",
                                            "PET_MASTER_PORT": str(port)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in range(nodes)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    server.trainjob_logs[name] = outputs
    current = server.find("trainer.kubeflow.org", "trainjobs", ns, name)
    if current is None:
        return
    if all(p.returncode == 0 for p in procs):
        current["status"] = {"conditions": [{"type": "Complete", "status": "True", "reason": "JobsCompleted"}]}
    else:
        current["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "TrainingFailed",
                                             "message": outputs[0][-500:]}]}
    server.put("trainer.kubeflow.org", "trainjobs", current)

"""The data plane of a Gateway API implementation for one HTTPRoute, on loopback.

No Envoy Gateway or Istio runs on these machines, so this stands in for what such a gateway does
with the route Conveyor writes, following the HTTPRoute spec (gateway-api v1.6, HTTPRouteRule and
HTTPRouteMatch docs): the request's Host must be one of the route's hostnames; of the rules whose
matches fit (path PathPrefix/Exact, Exact header matches with case-insensitive names), the most
specific wins (Exact path, then the longest prefix, then the most header matches, then list order);
a backendRef is drawn by weight (proportional, 0 never chosen, 1 when unset); a RequestMirror
filter sends a copy to its backendRef (`percent` of requests, or `fraction`) and discards the
answer. The route is read from the API stand-in on every request, so a patch takes effect at once.
Service names resolve through `services` (the cluster DNS a pod would use: name -> base URL)."""

from __future__ import annotations

import http.server
import random
import threading
import urllib.error
import urllib.request
from collections import Counter


def forwarding_server(forward) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A loopback HTTP server answering each POST with `forward(path, headers, body)` -> (status,
    JSON bytes); header names lower-cased. Returns the server (shut it down) and its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            code, data = forward(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class GatewayStandIn:
    def __init__(self, routes, namespace: str, name: str, services: dict[str, str], seed: int = 7):
        self.routes, self.namespace, self.name, self.services = routes, namespace, name, services
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.served: Counter = Counter()     # backend Service -> requests answered through it
        self.mirrored: Counter = Counter()   # backend Service -> mirrored copies sent
        self.server, self.url = forwarding_server(self.forward)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- routing --------------------------------------------------------------------------------
    def _rule(self, route: dict, path: str, headers: dict[str, str]) -> dict | None:
        best, best_score = None, None
        for order, rule in enumerate(route["spec"].get("rules") or []):
            for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
                want = match.get("path") or {"type": "PathPrefix", "value": "/"}
                value = want.get("value", "/")
                if want.get("type", "PathPrefix") == "Exact":
                    fits = path == value
                else:
                    fits = path == value or path.startswith(value.rstrip("/") + "/") or value == "/"
                fits = fits and all(headers.get(h["name"].lower()) == h["value"] for h in match.get("headers") or [])
                if not fits:
                    continue
                score = (want.get("type") == "Exact", len(value), len(match.get("headers") or []), -order)
                if best_score is None or score > best_score:
                    best, best_score = rule, score
        return best

    def _draw(self, refs: list[dict]) -> dict | None:
        weights = [ref.get("weight", 1) for ref in refs]
        if not refs or sum(weights) == 0:
            return None
        with self.lock:
            return self.rng.choices(refs, weights=weights)[0]

    def _send(self, service: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(self.services[service] + path, data=body,
                                         headers={"Content-Type": headers.get("content-type", "application/json")})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 503, b'{"error": "upstream unreachable"}'

    def forward(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        route = self.routes.get(self.name, self.namespace)
        host = headers.get("host", "").split(":")[0]
        if route is None or host not in (route["spec"].get("hostnames") or []):
            return 404, b'{"error": "no route for this host"}'
        rule = self._rule(route, path.split("?")[0], headers)
        if rule is None:
            return 404, b'{"error": "no rule matches"}'
        for f in rule.get("filters") or []:
            if f.get("type") != "RequestMirror":
                continue
            mirror = f["requestMirror"]
            share = (mirror["fraction"]["numerator"] / mirror["fraction"].get("denominator", 100)
                     if "fraction" in mirror else mirror.get("percent", 100) / 100)
            with self.lock:
                mirrored = self.rng.random() < share
            if mirrored:
                service = mirror["backendRef"]["name"]
                with self.lock:
                    self.mirrored[service] += 1
                threading.Thread(target=self._send, args=(service, path, headers, body), daemon=True).start()
        ref = self._draw(rule.get("backendRefs") or [])
        if ref is None:
            return 500, b'{"error": "no backend with weight"}'  # the spec's answer when all weights are 0
        with self.lock:
            self.served[ref["name"]] += 1
        return self._send(ref["name"], path, headers, body)

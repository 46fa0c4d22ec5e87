#!/usr/bin/env python3
"""Stand-in for the Kubernetes API server and the kubelet's checkpoint API, for reel's tests.

No kubelet or API server can run on the test machines. This HTTPS server answers the few
requests reel's k8s-api method makes, the way the upstream sources answer them:

* API server (k8s.io/apiserver): GET /version, GET /api/v1/namespaces/NS/pods[/POD],
  GET /api/v1/nodes/NODE, POST .../selfsubjectaccessreviews (status.allowed); errors as a `Status` object (401 Unauthorized, 404 NotFound,
  403 Forbidden `... cannot create resource "nodes/proxy" ...`).
* The node proxy, POST /api/v1/nodes/NODE/proxy/checkpoint/NS/POD/CONTAINER?timeout=S, and
  the kubelet itself, POST /checkpoint/NS/POD/CONTAINER (kubernetes pkg/kubelet/server/
  server.go `checkpoint`): 200 {"items":[PATH]} with the archive written under
  KUBELET_DIR/checkpoints/checkpoint-POD_NS-CONTAINER-TIME.tar (by checkpointing a real runc
  container, tests/standins/crio-archive.sh); 404 `404 page not found` when the
  ContainerCheckpoint gate is off; 404 `pod does not exist` / `container X does not exist`;
  403 `Forbidden (user=..., verb=create, resource=nodes, subresource(s)=[checkpoint])` from
  the kubelet's authorizer; 500 `checkpointing of NS/POD/CONTAINER failed (<CRI error>)`.

Bearer-token authentication. The behaviour is read from a JSON file on every request, so a
test changes it between calls:

  {"token": "...", "denied": ["nodes/proxy"...], "mode": "ok" | "401" | "403-proxy" | "403-kubelet" | "404-gate" |
   "404-container" | "404-pod" | "500-unimplemented" | "500-criu-off" | "sleep",
   "sleep": SECONDS, "kubelet_dir": DIR, "archive_script": PATH,
   "pods": {"NS/POD": {"node": NODE, "containers": [NAME...],
                        "runc_id": ID, "bundle": DIR, "runc_root": DIR}}}

  kube-api.py CONFIG.json CERT.pem KEY.pem PORT_FILE
"""
import datetime
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONFIG, CERT, KEY, PORT_FILE = sys.argv[1:5]


def config():
    with open(CONFIG) as f:
        return json.load(f)


def status(code, reason, message):
    return code, "application/json", json.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})


def pod_object(ns, name, p):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": "uid-" + name},
        "spec": {"nodeName": p["node"],
                 "containers": [{"name": c, "image": "reel-test/busybox"} for c in p["containers"]]},
        "status": {"phase": "Running"},
    }


def node_object(name):
    info = {k: "standin" for k in ("architecture", "bootID", "containerRuntimeVersion",
                                   "kernelVersion", "kubeProxyVersion", "machineID",
                                   "operatingSystem", "osImage", "systemUUID")}
    info["kubeletVersion"] = "v1.33.0-standin"
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"nodeInfo": info}}


def checkpoint(cfg, ns, pod, container, direct):
    mode = cfg.get("mode", "ok")
    user = "standin-user" if direct else "kube-apiserver-kubelet-client"
    if mode == "403-kubelet":
        return 403, "text/plain", ("Forbidden (user=%s, verb=create, resource=nodes, "
                                   "subresource(s)=[checkpoint])" % user)
    if mode == "404-gate":
        return 404, "text/plain", "404 page not found"
    p = cfg["pods"].get(ns + "/" + pod)
    if p is None or mode == "404-pod":
        return 404, "text/plain", "pod does not exist"
    if container not in p["containers"] or mode == "404-container":
        return 404, "text/plain", "container %s does not exist" % container
    if mode == "sleep":
        time.sleep(cfg.get("sleep", 30))
        return 500, "text/plain", "checkpointing of %s/%s/%s failed (rpc error: code = DeadlineExceeded desc = context deadline exceeded)" % (ns, pod, container)
    if mode == "500-unimplemented":
        return 500, "text/plain", ("checkpointing of %s/%s/%s failed (rpc error: code = "
                                   "Unimplemented desc = method CheckpointContainer not implemented)"
                                   % (ns, pod, container))
    if mode == "500-criu-off":
        return 500, "text/plain", ("checkpointing of %s/%s/%s failed (rpc error: code = Unknown "
                                   "desc = checkpoint/restore support not available)" % (ns, pod, container))
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    d = os.path.join(cfg["kubelet_dir"], "checkpoints")
    os.makedirs(d, mode=0o700, exist_ok=True)
    path = os.path.join(d, "checkpoint-%s_%s-%s-%s.tar" % (pod, ns, container, when))
    env = dict(os.environ, REEL_STANDIN_CONTAINER=container)
    r = subprocess.run([cfg["archive_script"], p["runc_id"], p["bundle"], path,
                        p.get("runc_root", "/run/runc")], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return 500, "text/plain", "checkpointing of %s/%s/%s failed (%s)" % (ns, pod, container, r.stderr.strip())
    return 200, "application/json", json.dumps({"items": [path]})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("kube-api standin: " + (fmt % args) + "\n")

    def answer(self, code, ctype, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self, method):
        cfg = config()
        url = urllib.parse.urlparse(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        if self.headers.get("Authorization") != "Bearer " + cfg["token"] or cfg.get("mode") == "401":
            return status(401, "Unauthorized", "Unauthorized")
        if method == "GET" and parts == ["version"]:
            return 200, "application/json", json.dumps({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-standin", "gitCommit": "0",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go",
                "compiler": "gc", "platform": "linux/amd64"})
        if method == "GET" and len(parts) in (5, 6) and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            ns = parts[3]
            pods = {k.split("/", 1)[1]: v for k, v in cfg["pods"].items() if k.startswith(ns + "/")}
            if len(parts) == 5:
                return 200, "application/json", json.dumps({
                    "apiVersion": "v1", "kind": "PodList", "metadata": {},
                    "items": [pod_object(ns, n, p) for n, p in sorted(pods.items())]})
            if parts[5] not in pods:
                return status(404, "NotFound", 'pods "%s" not found' % parts[5])
            return 200, "application/json", json.dumps(pod_object(ns, parts[5], pods[parts[5]]))
        if method == "GET" and len(parts) == 4 and parts[:3] == ["api", "v1", "nodes"]:
            return 200, "application/json", json.dumps(node_object(parts[3]))
        if method == "POST" and len(parts) == 9 and parts[:3] == ["api", "v1", "nodes"] and parts[4:6] == ["proxy", "checkpoint"]:
            if cfg.get("mode") == "403-proxy":
                return status(403, "Forbidden", 'nodes "%s" is forbidden: User "standin-user" cannot create resource "nodes/proxy" in API group "" at the cluster scope' % parts[3])
            return checkpoint(cfg, parts[6], parts[7], parts[8], False)
        if method == "POST" and parts == ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"]:
            review = json.loads(self.body or b"{}")
            attrs = review.get("spec", {}).get("resourceAttributes", {})
            denied = cfg.get("denied", [])
            review["status"] = {"allowed": "nodes/" + attrs.get("subresource", "") not in denied}
            return 201, "application/json", json.dumps(review)
        if method == "POST" and len(parts) == 4 and parts[0] == "checkpoint":
            return checkpoint(cfg, parts[1], parts[2], parts[3], True)
        return status(404, "NotFound", "the server could not find the requested resource")

    def do_GET(self):
        self.answer(*self.route("GET"))

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(n) if n else b""
        self.answer(*self.route("POST"))


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()

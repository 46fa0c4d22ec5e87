#!/usr/bin/env python3
"""Stand-in for the AWS credential services a node tool reads, for reel's S3 export tests.

No STS, SSO portal, ECS/EKS credentials endpoint or EC2 instance metadata service can be
reached from the test machines. This HTTP server on loopback answers the requests reel's
credential chain makes, in the formats the AWS documentation and SDK sources give:

* STS `AssumeRoleWithWebIdentity` (POST /, form-encoded; unsigned): the
  `<AssumeRoleWithWebIdentityResponse>` XML with `Credentials/{AccessKeyId, SecretAccessKey,
  SessionToken, Expiration}`; a token that is not the expected one gets the
  `<ErrorResponse><Error><Code>InvalidIdentityToken</Code>...` answer with 400.
* The container credentials endpoint (GET /container-credentials): ECS and EKS Pod Identity
  JSON `{AccessKeyId, SecretAccessKey, Token, Expiration}`; with a token configured, a request
  whose `Authorization` header differs gets 401.
* IMDSv2: PUT /latest/api/token (needs `X-aws-ec2-metadata-token-ttl-seconds`) gives a session
  token; GET /latest/meta-data/iam/security-credentials/ lists the role and GET .../ROLE gives
  `{Code: "Success", AccessKeyId, SecretAccessKey, Token, Expiration, ...}`; a GET without the
  session token gets 401 (IMDSv2 only).
* The IAM Identity Center portal, GET /federation/credentials?account_id=&role_name= with
  `x-amz-sso_bearer_token`: `{"roleCredentials": {accessKeyId, secretAccessKey, sessionToken,
  expiration (ms)}}`; a wrong token gets 401.

The credentials handed out are temporary ones the real S3 server (moto) issued for an assumed
role, session token included, so an export only succeeds
if reel fetched and used them. Every request is appended to LOG as a JSON line.

  aws-creds.py CONFIG.json LOG PORT_FILE
  CONFIG: {"access_key_id", "secret_access_key", "web_identity_token", "container_token",
           "sso_token", "role": "reel-role"}
"""
import datetime
import json
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONFIG, LOG, PORT_FILE = sys.argv[1:4]
cfg = json.load(open(CONFIG))
IMDS_TOKEN = "imds-session-token-1"
EXPIRES = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self, body):
        with open(LOG, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path,
                                "headers": {k.lower(): v for k, v in self.headers.items()},
                                "body": body}) + "\n")

    def answer(self, status, body, ctype="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n).decode() if n else ""

    def do_PUT(self):
        body = self.body()
        self.record(body)
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.answer(200, IMDS_TOKEN, "text/plain")
        self.answer(400, "bad request", "text/plain")

    def do_GET(self):
        self.record("")
        url = urllib.parse.urlparse(self.path)
        if url.path == "/container-credentials":
            want = cfg.get("container_token")
            if want and self.headers.get("Authorization") != want:
                return self.answer(401, json.dumps({"Code": "Unauthorized", "Message": "bad token"}))
            return self.answer(200, json.dumps({
                "AccessKeyId": cfg["access_key_id"], "SecretAccessKey": cfg["secret_access_key"],
                "Token": cfg["session_token"], "Expiration": EXPIRES.strftime("%Y-%m-%dT%H:%M:%SZ")}))
        if url.path.startswith("/latest/meta-data/iam/security-credentials/"):
            if self.headers.get("X-aws-ec2-metadata-token") != IMDS_TOKEN:
                return self.answer(401, "", "text/plain")
            role = url.path.rsplit("/", 1)[1]
            if role == "":
                return self.answer(200, cfg["role"], "text/plain")
            if role != cfg["role"]:
                return self.answer(404, "", "text/plain")
            return self.answer(200, json.dumps({
                "Code": "Success", "LastUpdated": EXPIRES.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "Type": "AWS-HMAC", "AccessKeyId": cfg["access_key_id"],
                "SecretAccessKey": cfg["secret_access_key"], "Token": cfg["session_token"],
                "Expiration": EXPIRES.strftime("%Y-%m-%dT%H:%M:%SZ")}))
        if url.path == "/federation/credentials":
            if self.headers.get("x-amz-sso_bearer_token") != cfg.get("sso_token"):
                return self.answer(401, json.dumps({"message": "Session token not found or invalid"}))
            return self.answer(200, json.dumps({"roleCredentials": {
                "accessKeyId": cfg["access_key_id"], "secretAccessKey": cfg["secret_access_key"],
                "sessionToken": cfg["session_token"], "expiration": int(EXPIRES.timestamp() * 1000)}}))
        self.answer(404, "not found", "text/plain")

    def do_POST(self):
        body = self.body()
        self.record(body)
        form = urllib.parse.parse_qs(body)
        if form.get("Action") == ["AssumeRoleWithWebIdentity"]:
            if form.get("WebIdentityToken") != [cfg.get("web_identity_token")]:
                return self.answer(400, "<ErrorResponse><Error><Type>Sender</Type>"
                                   "<Code>InvalidIdentityToken</Code><Message>Incorrect token audience"
                                   "</Message></Error></ErrorResponse>", "text/xml")
            return self.answer(200, (
                "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
                "<AssumeRoleWithWebIdentityResult><Credentials>"
                "<AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey>"
                "<SessionToken>%s</SessionToken><Expiration>%s</Expiration>"
                "</Credentials><AssumedRoleUser><Arn>%s/reel</Arn></AssumedRoleUser>"
                "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>") % (
                    cfg["access_key_id"], cfg["secret_access_key"], cfg["session_token"],
                    EXPIRES.strftime("%Y-%m-%dT%H:%M:%SZ"), form.get("RoleArn", [""])[0]), "text/xml")
        self.answer(400, "bad request", "text/plain")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()

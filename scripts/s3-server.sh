#!/usr/bin/env bash
# A real S3-compatible server on loopback for the export tests and benchmarks: moto's server
# mode (PyPI `moto[server]`), with credentials checked.
#
#   scripts/s3-server.sh start [--port PORT] [--dir DIR] [--tls]   # idempotent; prints the env file
#   scripts/s3-server.sh stop  [--dir DIR]
#   scripts/s3-server.sh status [--dir DIR]
#
# `start` installs moto if needed, starts it on 127.0.0.1:PORT (default 9324) in its own
# session, creates an IAM user `reel` allowed s3:* with an access key, creates the bucket
# `reel-test`, then turns moto's authentication on: from then on only that key (and its secret)
# is accepted, so wrong credentials fail as they do on AWS. DIR (default /run/reel-s3) holds
# `pid`, `server.log` and `env`, a shell file with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_REGION, AWS_EC2_METADATA_DISABLED, REEL_S3_ENDPOINT, REEL_S3_BUCKET and REEL_S3_PYTHON
# (the Python that runs moto, which has boto3 for tests that look into the bucket).
#
# With --tls the server speaks HTTPS only, with a certificate for 127.0.0.1 signed by a private
# CA made for it in DIR (`ca.pem`, also named by REEL_S3_CA in the env file): what `--s3-ca` is
# for. moto comes from the Python in PATH if it has it, else from a venv in /opt/reel/s3-venv.
set -euo pipefail

cmd=${1:-}
shift || true
port=9324
dir=/run/reel-s3
tls=0
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --tls) tls=1; shift ;;
        *) echo "s3-server.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-python3}
VENV=/opt/reel/s3-venv
if [ -z "${PYTHON:-}" ] && [ -x "$VENV/bin/python" ] && ! "$PY" -c 'import moto.server' 2>/dev/null; then
    PY=$VENV/bin/python
fi
scheme=http
[ "$tls" = 1 ] && scheme=https

# The server of $dir runs (a pid file left by a server that died, its pid reused, does not count).
alive() {
    [ -f "$dir/pid" ] || return 1
    local pid
    pid=$(cat "$dir/pid")
    kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'moto.server'
}

healthy() {
    "$PY" - "$1" "$scheme" "$dir/ca.pem" <<'EOF' >/dev/null 2>&1
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[3]) if sys.argv[2] == "https" else None
urllib.request.urlopen("%s://127.0.0.1:%s/moto-api/" % (sys.argv[2], sys.argv[1]),
                       timeout=2, context=ctx).read()
EOF
}

# A private CA and a server certificate for 127.0.0.1 signed by it.
make_certs() {
    [ -s "$dir/server.pem" ] && [ -s "$dir/ca.pem" ] && return 0
    command -v openssl >/dev/null || { echo "s3-server.sh: --tls needs openssl (scripts/setup.sh installs it)" >&2; exit 1; }
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=reel test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
        >"$dir/server.ext"
    openssl x509 -req -days 2 -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
    chmod 600 "$dir"/*.key
}

case "$cmd" in
start)
    if alive && [ -f "$dir/env" ]; then
        cat "$dir/env"
        exit 0
    fi
    if ! "$PY" -c 'import moto.server, boto3, flask' 2>/dev/null; then
        echo "s3-server.sh: installing moto[server] from PyPI" >&2
        if ! "$PY" -m pip install --quiet --disable-pip-version-check 'moto[server]>=5' >&2; then
            # A Python that pip may not touch (Debian's, PEP 668): a venv of reel's own.
            echo "s3-server.sh: installing it into $VENV instead" >&2
            python3 -m venv "$VENV" >&2
            "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'moto[server]>=5' >&2
            PY=$VENV/bin/python
        fi
    fi
    mkdir -p "$dir"
    chmod 700 "$dir"
    rm -f "$dir/env"
    tls_args=()
    if [ "$tls" = 1 ]; then
        make_certs
        tls_args=(-c "$dir/server.pem" -k "$dir/server.key")
    fi
    # Its own session, so that the caller's process group and terminal do not take it down.
    setsid "$PY" -m moto.server -H 127.0.0.1 -p "$port" "${tls_args[@]}" >"$dir/server.log" 2>&1 < /dev/null &
    echo $! >"$dir/pid"
    for _ in $(seq 1 150); do
        healthy "$port" && break
        alive || { cat "$dir/server.log" >&2; echo "s3-server.sh: moto exited" >&2; exit 1; }
        sleep 0.1
    done
    healthy "$port" || { echo "s3-server.sh: moto did not answer on port $port" >&2; exit 1; }
    "$PY" - "$port" "$dir/env" "$scheme" "$dir/ca.pem" <<'EOF'
import json, os, ssl, sys, urllib.request
import boto3
port, env_path, scheme, ca = sys.argv[1:5]
tls = scheme == "https"
url = "%s://127.0.0.1:%s" % (scheme, port)
anon = dict(endpoint_url=url, region_name="us-east-1", verify=ca if tls else None,
            aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam = boto3.client("iam", **anon)
iam.create_user(UserName="reel")
iam.put_user_policy(UserName="reel", PolicyName="s3", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sts:AssumeRole"], "Resource": "*"}]}))
key = iam.create_access_key(UserName="reel")["AccessKey"]
# A user that may only assume roles (no S3): a source_profile whose own keys cannot upload.
iam.create_user(UserName="reel-assumer")
iam.put_user_policy(UserName="reel-assumer", PolicyName="sts", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))
assumer = iam.create_access_key(UserName="reel-assumer")["AccessKey"]
s3 = boto3.client("s3", **anon)
s3.create_bucket(Bucket="reel-test")
# Temporary credentials with a session token, as STS, SSO, ECS, EKS and IMDS hand them out: a
# role allowed s3:*, assumed once (the credential sources' tests hand these out).
iam.create_role(RoleName="reel-role", AssumeRolePolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))
iam.put_role_policy(RoleName="reel-role", PolicyName="s3", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
arn = iam.get_role(RoleName="reel-role")["Role"]["Arn"]
temp = boto3.client("sts", **anon).assume_role(
    RoleArn=arn, RoleSessionName="reel-tests", DurationSeconds=43200)["Credentials"]
# From now on, every request must be signed with a known key.
urllib.request.urlopen(urllib.request.Request(
    url + "/moto-api/reset-auth", data=b"0", method="POST",
    headers={"Content-Type": "text/plain"}), timeout=5,
    context=ssl.create_default_context(cafile=ca) if tls else None).read()
with open(env_path + ".tmp", "w") as f:
    f.write("export AWS_ACCESS_KEY_ID=%s\n" % key["AccessKeyId"])
    f.write("export AWS_SECRET_ACCESS_KEY=%s\n" % key["SecretAccessKey"])
    f.write("export AWS_REGION=us-east-1\n")
    f.write("export AWS_EC2_METADATA_DISABLED=true\n")
    f.write("export REEL_S3_ENDPOINT=%s\n" % url)
    f.write("export REEL_S3_BUCKET=reel-test\n")
    f.write("export REEL_S3_PYTHON=%s\n" % sys.executable)
    f.write("export REEL_S3_TEMP_ACCESS_KEY_ID=%s\n" % temp["AccessKeyId"])
    f.write("export REEL_S3_TEMP_SECRET_ACCESS_KEY=%s\n" % temp["SecretAccessKey"])
    f.write("export REEL_S3_TEMP_SESSION_TOKEN=%s\n" % temp["SessionToken"])
    f.write("export REEL_S3_ROLE_ARN=%s\n" % arn)
    f.write("export REEL_S3_ASSUMER_ACCESS_KEY_ID=%s\n" % assumer["AccessKeyId"])
    f.write("export REEL_S3_ASSUMER_SECRET_ACCESS_KEY=%s\n" % assumer["SecretAccessKey"])
    if tls:
        f.write("export REEL_S3_CA=%s\n" % ca)
os.chmod(env_path + ".tmp", 0o600)
os.rename(env_path + ".tmp", env_path)
EOF
    cat "$dir/env"
    ;;
stop)
    if alive; then
        pid=$(cat "$dir/pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/pid" "$dir/env"
    ;;
status)
    if alive && [ -f "$dir/env" ]; then
        echo "running (pid $(cat "$dir/pid"))"
        cat "$dir/env"
    else
        echo "not running"
        exit 1
    fi
    ;;
*)
    echo "usage: $0 start|stop|status [--port PORT] [--dir DIR] [--tls]" >&2
    exit 2
    ;;
esac

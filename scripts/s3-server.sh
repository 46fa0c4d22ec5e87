#!/usr/bin/env bash
# A real S3-compatible server on loopback for the export tests and benchmarks: moto's server
# mode (PyPI `moto[server]`), with credentials checked.
#
#   scripts/s3-server.sh start [--port PORT] [--dir DIR]   # idempotent; prints the env file
#   scripts/s3-server.sh stop  [--dir DIR]
#   scripts/s3-server.sh status [--dir DIR]
#
# `start` installs moto if needed, starts it on 127.0.0.1:PORT (default 9324) in its own
# session, creates an IAM user `reel` allowed s3:* with an access key, creates the bucket
# `reel-test`, then turns moto's authentication on: from then on only that key (and its secret)
# is accepted, so wrong credentials fail as they do on AWS. DIR (default /run/reel-s3) holds
# `pid`, `server.log` and `env`, a shell file with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_REGION, AWS_EC2_METADATA_DISABLED, REEL_S3_ENDPOINT and REEL_S3_BUCKET.
set -euo pipefail

cmd=${1:-}
shift || true
port=9324
dir=/run/reel-s3
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        *) echo "s3-server.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-python3}

alive() {
    [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null
}

healthy() {
    "$PY" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen("http://127.0.0.1:%s/moto-api/" % sys.argv[1], timeout=2).read()
EOF
}

case "$cmd" in
start)
    if alive && [ -f "$dir/env" ]; then
        cat "$dir/env"
        exit 0
    fi
    if ! "$PY" -c 'import moto.server, boto3, flask' 2>/dev/null; then
        echo "s3-server.sh: installing moto[server] from PyPI" >&2
        "$PY" -m pip install --quiet --disable-pip-version-check 'moto[server]>=5' >&2
    fi
    mkdir -p "$dir"
    chmod 700 "$dir"
    rm -f "$dir/env"
    # Its own session, so that the caller's process group and terminal do not take it down.
    setsid "$PY" -m moto.server -H 127.0.0.1 -p "$port" >"$dir/server.log" 2>&1 < /dev/null &
    echo $! >"$dir/pid"
    for _ in $(seq 1 150); do
        healthy "$port" && break
        alive || { cat "$dir/server.log" >&2; echo "s3-server.sh: moto exited" >&2; exit 1; }
        sleep 0.1
    done
    healthy "$port" || { echo "s3-server.sh: moto did not answer on port $port" >&2; exit 1; }
    "$PY" - "$port" "$dir/env" <<'EOF'
import json, os, sys, urllib.request
import boto3
port, env_path = sys.argv[1], sys.argv[2]
url = "http://127.0.0.1:%s" % port
anon = dict(endpoint_url=url, region_name="us-east-1",
            aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam = boto3.client("iam", **anon)
iam.create_user(UserName="reel")
iam.put_user_policy(UserName="reel", PolicyName="s3", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="reel")["AccessKey"]
s3 = boto3.client("s3", **anon)
s3.create_bucket(Bucket="reel-test")
# From now on, every request must be signed with a known key.
urllib.request.urlopen(urllib.request.Request(
    url + "/moto-api/reset-auth", data=b"0", method="POST",
    headers={"Content-Type": "text/plain"}), timeout=5).read()
with open(env_path + ".tmp", "w") as f:
    f.write("export AWS_ACCESS_KEY_ID=%s\n" % key["AccessKeyId"])
    f.write("export AWS_SECRET_ACCESS_KEY=%s\n" % key["SecretAccessKey"])
    f.write("export AWS_REGION=us-east-1\n")
    f.write("export AWS_EC2_METADATA_DISABLED=true\n")
    f.write("export REEL_S3_ENDPOINT=%s\n" % url)
    f.write("export REEL_S3_BUCKET=reel-test\n")
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
    echo "usage: $0 start|stop|status [--port PORT] [--dir DIR]" >&2
    exit 2
    ;;
esac

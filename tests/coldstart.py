#!/usr/bin/env python3
"""Cold start of the release Lambda bootstraps, measured on this machine.

For each function (receiver, processor) it execs the release `bootstrap` with the environment
Lambda gives a `provided.al2023` function, against a stub Runtime API on 127.0.0.1, and measures

- exec -> first poll: from spawning the process until its first
  `GET /2018-06-01/runtime/invocation/next` reaches the stub (init done, ready for an event);
- peak RSS: the child's VmHWM (/proc/PID/status), read while it waits on that first poll
  (wait4's ru_maxrss would not do: Linux carries the parent's peak across fork + exec).

Each is the median of --runs runs (min and max shown too), in two set-ups:

- inline: the configuration in HOOKGATE_CONFIG, HOOKGATE_QUEUE_URL a full URL (no
  GetQueueUrl). Init must make no network call. The check: AWS_ENDPOINT_URL and the EC2
  metadata endpoint both point at a sentinel listener on 127.0.0.1 that records every
  connection and never answers - so an SDK call during init would be counted, and would also
  stall init past the timeout. The stub Runtime API records every request too; anything but the
  one poll fails the run. A control run first gives the queue by name (so init must call
  GetQueueUrl) and requires the sentinel to see that call: the check can fail.
- secret (unless --no-secret; needs moto_server, found next to this Python): the configuration
  read from Secrets Manager (HOOKGATE_CONFIG_SECRET_ID) on a moto server the script starts on
  127.0.0.1 - the one call init makes. Its extra cost over `inline` is the secret fetch (the
  Secrets Manager client, one plain-HTTP round trip to moto on loopback; against AWS add the
  TLS handshake and the network round trip).

Build first (what is deployed): `cargo lambda build --release` (x86_64 here), then

    .venv/bin/python tests/coldstart.py [--runs 10] [--target-dir target] [--json]

(--target-dir defaults to $CARGO_TARGET_DIR, else ./target.)

Not part of tests/run: it measures, it does not test.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEXT = "/2018-06-01/runtime/invocation/next"
CONFIG = """
[sources.demo]
scheme = "hmac-sha256"
secrets = ["local-demo-s3cr3t"]

[sources.standard]
scheme = "standard"
secrets = ["whsec_aG9va2dhdGUtbG9jYWwtc3RhbmRhcmQtc2VjcmV0ISE="]
"""


class RuntimeApi:
    """A stub Lambda Runtime API: records the time of the first poll and holds it unanswered."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                now = time.monotonic_ns()
                with api.lock:
                    api.requests.append(("GET", self.path))
                    if self.path == NEXT and api.first_poll is None:
                        api.first_poll = now
                        api.polled.set()
                # Hold the poll: no event comes. The run kills the process.
                api.release.wait(30)

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace")
                with api.lock:
                    api.requests.append(("POST", self.path, body[:500]))
                    api.polled.set()  # an init error ends the wait too
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self):
        with self.lock:
            self.first_poll = None
            self.requests = []
            self.polled = threading.Event()
            self.release = threading.Event()

    def close(self):
        self.release.set()
        self.server.shutdown()


class Sentinel:
    """A loopback listener standing for every AWS endpoint: counts connections, never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def lambda_env(function, runtime_api, endpoint, metadata_endpoint):
    """The environment Lambda gives a provided.al2023 function, plus hookgate's variables."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "_HANDLER": "bootstrap",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": f"hookgate-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/hookgate-{function}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2030/01/01/[$LATEST]00000000000000000000000000000000",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_LEVEL": "INFO",
        "RUST_LOG": "info",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata_endpoint,
        "HOOKGATE_TABLE": "hookgate-events",
        # A full URL: no GetQueueUrl at init.
        "HOOKGATE_QUEUE_URL": f"{endpoint}/123456789012/hookgate-events",
    }
    if function == "processor":
        env["HOOKGATE_DLQ_URL"] = f"{endpoint}/123456789012/hookgate-events-dlq"
        env["HOOKGATE_MAX_RECEIVE_COUNT"] = "5"
    return env


def one_run(bootstrap, env, api, timeout):
    """Exec -> first poll (ms) and peak RSS (KiB) of one cold start."""
    api.reset()
    with tempfile.TemporaryFile() as log:
        start = time.monotonic_ns()
        child = subprocess.Popen(
            [str(bootstrap)], env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        polled = api.polled.wait(timeout)
        # The child's own high-water mark, read while it waits on its first poll. (Not wait4's
        # ru_maxrss: Linux carries the parent's peak across fork + exec into it.)
        peak_kib = vm_hwm_kib(child.pid)
        try:
            os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(child.pid, 0)
        child.returncode = status
        api.release.set()
        with api.lock:
            first_poll, requests = api.first_poll, list(api.requests)
        if not polled or first_poll is None or requests != [("GET", NEXT)]:
            log.seek(0)
            output = log.read().decode("utf-8", "replace")[-3000:]
            raise SystemExit(
                f"{bootstrap}: no clean first poll within {timeout} s; runtime API saw "
                f"{requests}\n{output}"
            )
    if peak_kib is None:
        raise SystemExit(f"{bootstrap}: no VmHWM in /proc/{child.pid}/status")
    return (first_poll - start) / 1e6, peak_kib


def vm_hwm_kib(pid):
    """Peak resident set size of `pid` (VmHWM), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(moto_server):
    port = free_port()
    process = subprocess.Popen(
        [moto_server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            return process, endpoint
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("moto_server did not start")


def put_secret(endpoint, name, value):
    import boto3  # in the test venv with moto

    client = boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_secret(Name=name, SecretString=value)


def summary(values):
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    parser.add_argument("--target-dir", type=Path, default=default_target)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per cold start")
    parser.add_argument("--moto-server", default=shutil.which("moto_server")
                        or str(Path(sys.executable).parent / "moto_server"))
    parser.add_argument("--no-secret", action="store_true",
                        help="skip the Secrets Manager set-up (needs moto_server)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the measured runs (e.g. SSL_CERT_FILE=...)")
    args = parser.parse_args()

    bootstraps = {f: args.target_dir / "lambda" / f / "bootstrap" for f in ("receiver", "processor")}
    for function, path in bootstraps.items():
        if not path.is_file():
            raise SystemExit(f"no {path}: build with `cargo lambda build --release` first")

    api = RuntimeApi()
    sentinel = Sentinel()
    sentinel_url = f"http://127.0.0.1:{sentinel.port}"
    results = {}
    moto = None
    try:
        # The control: a queue given by name makes init call GetQueueUrl, and the sentinel must
        # see it - else a count of 0 below would prove nothing.
        env = lambda_env("receiver", api.address, sentinel_url, sentinel_url)
        env["HOOKGATE_CONFIG"] = CONFIG
        env["HOOKGATE_QUEUE_URL"] = "hookgate-events"
        try:
            one_run(bootstraps["receiver"], env, api, 3.0)
        except SystemExit:
            pass
        if sentinel.connections == 0:
            raise SystemExit("control failed: GetQueueUrl at init did not reach the sentinel")
        control = sentinel.connections

        setups = ["inline"]
        if not args.no_secret and Path(args.moto_server).exists():
            moto, moto_endpoint = start_moto(args.moto_server)
            put_secret(moto_endpoint, "hookgate-config", CONFIG)
            setups.append("secret")
        for function, bootstrap in bootstraps.items():
            for setup in setups:
                if setup == "inline":
                    env = lambda_env(function, api.address, sentinel_url, sentinel_url)
                    env["HOOKGATE_CONFIG"] = CONFIG
                else:
                    env = lambda_env(function, api.address, moto_endpoint, sentinel_url)
                    env["HOOKGATE_CONFIG_SECRET_ID"] = "hookgate-config"
                env.update(dict(kv.split("=", 1) for kv in args.env))
                before = sentinel.connections
                one_run(bootstrap, env, api, args.timeout)  # warm the page cache
                times, rss = [], []
                for _ in range(args.runs):
                    ms, kib = one_run(bootstrap, env, api, args.timeout)
                    times.append(ms)
                    rss.append(kib / 1024)
                results[f"{function}/{setup}"] = {
                    "exec_to_first_poll_ms": summary(times),
                    "peak_rss_mib": summary(rss),
                    "sentinel_connections": sentinel.connections - before,
                }
    finally:
        api.close()
        sentinel.close()
        if moto is not None:
            moto.kill()
            moto.wait()

    sizes = {f: p.stat().st_size for f, p in bootstraps.items()}
    if args.json:
        print(json.dumps({"runs": args.runs, "results": results, "bootstrap_bytes": sizes,
                          "control_connections": control}, indent=2))
    else:
        print(f"cold start, median of {args.runs} runs (min-max); {os.cpu_count()} cores")
        print(f"control: a queue given by name (GetQueueUrl at init) reached the sentinel "
              f"{control} time(s)")
        for name, r in results.items():
            t, m = r["exec_to_first_poll_ms"], r["peak_rss_mib"]
            print(
                f"{name:20} exec->first poll {t['median']:6.1f} ms ({t['min']:.1f}-{t['max']:.1f})"
                f"   peak RSS {m['median']:5.1f} MiB ({m['min']:.1f}-{m['max']:.1f})"
                f"   connections to AWS endpoints during init: {r['sentinel_connections']}"
            )
        for function, size in sizes.items():
            print(f"{function} bootstrap: {size / 1024 / 1024:.2f} MiB ({size} bytes)")
    inline_calls = sum(r["sentinel_connections"] for k, r in results.items() if k.endswith("/inline"))
    if inline_calls:
        raise SystemExit(f"init with an inline configuration made {inline_calls} network connection(s)")


if __name__ == "__main__":
    main()

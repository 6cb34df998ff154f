#!/usr/bin/env python3
"""Cost per event of the release Lambda bootstraps, driven as Lambda drives them.

Each function's release `bootstrap` runs against a stub Runtime API on 127.0.0.1 that hands it
one event at a time (as Lambda does) and against moto for DynamoDB, SQS and S3, reached through
a counting proxy on loopback that keeps connections alive (as AWS does; moto alone closes every
connection). For each scenario it prints:

- CPU per invocation: the process's on-CPU time (the sum of /proc/PID/task/*/schedstat, in ns)
  from its first poll to its last answer, divided by the invocations - init is not counted;
- warm latency p50/p99: from handing an event to the function to receiving its answer;
- peak RSS (VmHWM) at the end;
- context switches per invocation: the waits that ended in a wake-up, each paid in the
  kernel's scheduler;
- AWS requests per event, by operation, as the proxy saw them.

Scenarios: `echo` (a `lambda_runtime` function that does nothing - the floor every other line
is read against), `receiver/new` (1 KiB Standard Webhooks events, each new), `receiver/duplicate`
(the same events again, to the container that queued them), `receiver/duplicate
(elsewhere)` (again, to a fresh container), `receiver/rejected` (a wrong signature), `processor/batch10` (the
messages `receiver/new` queued, in SQS batches of 10, forwarded over HTTP to a sink on loopback).

Several builds can be compared in one run (`--set before=DIR --set after=DIR`, each DIR holding
`receiver/bootstrap`, `processor/bootstrap` and `echo/bootstrap` as `cargo lambda build
--release` lays them out under target/lambda): their rounds alternate so that both see the same
machine. Build first, then

    .venv/bin/python tests/lambda_bench.py [--events 400] [--rounds 2] [--set NAME=DIR ...]

Not part of tests/run: it measures, it does not test (tests/tests/request_counts.rs counts the
AWS requests per event in the test suite).
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import queue
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "/2018-06-01/runtime/invocation/"
SECRET = "whsec_aG9va2dhdGUtbG9jYWwtc3RhbmRhcmQtc2VjcmV0ISE="
KEY = base64.b64decode(SECRET.removeprefix("whsec_"))
FORWARD_SECRET = "whsec_" + base64.b64encode(b"hookgate-bench-forward-secret-32b").decode()


def config(sink_port, fan_out=False):
    """The functions' configuration: one source forwarding to the sink; with `fan_out`, one
    more routed to three destinations on it (a build from before routes refuses that table)."""
    forward = f"""
[sources.standard]
scheme = "standard"
secrets = ["{SECRET}"]

[sources.standard.forward]
url = "http://127.0.0.1:{sink_port}/hooks"
secret = "{FORWARD_SECRET}"
allow_http = true
allow_private_networks = true

"""
    if not fan_out:
        return forward
    return forward + f"""
[sources.fanout]
scheme = "standard"
secrets = ["{SECRET}"]

[[routes]]
source = "fanout"
to = ["f0", "f1", "f2"]
""" + "".join(f"""
[destinations.f{i}]
url = "http://127.0.0.1:{sink_port}/f{i}"
secret = "{FORWARD_SECRET}"
allow_http = true
allow_private_networks = true
""" for i in range(3))


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server that does not print a killed client's reset connection."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)


class RuntimeApi:
    """A stub Runtime API: hands out one event at a time and records each answer."""

    def __init__(self):
        self.events = queue.Queue()
        self.answers = queue.Queue()
        self.polled = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.endswith("/next"):
                    self.send_error(404)
                    return
                api.polled.set()
                request_id, body = api.events.get()
                if request_id is None:  # the end: answer nothing, the run kills the process
                    time.sleep(3600)
                    return
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                deadline = int(time.time() * 1000) + 30_000
                self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 "arn:aws:lambda:us-east-1:123456789012:function:hookgate-bench")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                kind = "error" if self.path.endswith("/error") else "response"
                if "/init/error" in self.path:
                    kind = "init-error"
                api.answers.put((time.monotonic_ns(), kind, body))

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, payload):
        """Hands one event over and waits for its answer: (latency ns, kind, body)."""
        start = time.monotonic_ns()
        self.events.put((str(uuid.uuid4()), json.dumps(payload).encode()))
        at, kind, body = self.answers.get(timeout=30)
        return at - start, kind, body


class CountingProxy:
    """A keep-alive HTTP proxy in front of moto that counts requests by AWS operation."""

    def __init__(self, upstream_port):
        self.counts = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with proxy.lock:
                    proxy.counts["(connections)"] += 1

            def _forward(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                target = self.headers.get("x-amz-target")
                op = target.split(".")[-1] if target else f"S3 {self.command}"
                with proxy.lock:
                    proxy.counts[op] += 1
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("connection", "content-length", "transfer-encoding",
                                         "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self):
        with self.lock:
            counts, self.counts = self.counts, Counter()
        return counts


class Sink:
    """The forwarding destination: answers 200 to every POST and counts them."""

    def __init__(self):
        self.count = 0

        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                sink.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def cpu_ns(pid):
    """On-CPU time of every thread of `pid` so far, in ns (/proc/PID/task/*/schedstat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def switches(pid):
    """Context switches of every thread of `pid` so far: each voluntary one is a wait for I/O
    or a timer that ended in a wake-up (/proc/PID/task/*/status)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(python):
    port = free_port()
    process = subprocess.Popen([python, str(ROOT / "tests" / "moto_server.py"), "-H", "127.0.0.1",
                                "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("moto did not start")


def standard_event(body, webhook_id, good=True, source="standard"):
    """An API Gateway HTTP API (v2) event carrying a Standard Webhooks request."""
    ts = str(int(time.time()))
    mac = hmac.new(KEY, f"{webhook_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    if not good:
        mac = bytes(32)
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/{source}",
        "rawPath": f"/webhooks/{source}",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": ts,
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        },
        "pathParameters": {"source": source},
        "requestContext": {
            "accountId": "123456789012", "apiId": "hookgate", "domainName": "hookgate.local",
            "domainPrefix": "hookgate", "requestId": str(uuid.uuid4()),
            "routeKey": "POST /webhooks/{source}", "stage": "$default",
            "time": "01/Dec/2026:12:00:00 +0000", "timeEpoch": int(time.time() * 1000),
            "http": {"method": "POST", "path": f"/webhooks/{source}", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "hookgate-bench"},
        },
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def body_1kib(i):
    doc = {"type": "invoice.paid", "data": {"invoice": f"in_{i}", "amount": 4200, "pad": ""}}
    raw = json.dumps(doc)
    doc["data"]["pad"] = "x" * (1024 - len(raw))
    return json.dumps(doc).encode()


def sqs_records(messages, queue_arn):
    """SQS messages as received by boto3, as the records of a Lambda SQS event."""
    records = []
    for m in messages:
        attrs = {}
        for name, value in (m.get("MessageAttributes") or {}).items():
            attrs[name] = {"stringValue": value.get("StringValue"), "stringListValues": [],
                           "binaryListValues": [], "dataType": value["DataType"]}
        records.append({
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": {k: str(v) for k, v in m.get("Attributes", {}).items()},
            "messageAttributes": attrs, "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": "us-east-1",
        })
    return records


class Function:
    """One bootstrap process under a fresh stub Runtime API."""

    def __init__(self, bootstrap, env):
        self.api = RuntimeApi()
        env = dict(env, AWS_LAMBDA_RUNTIME_API=self.api.address)
        self.log = open(ROOT / "target" / f"bench-{Path(bootstrap).parent.name}.log", "ab")
        self.child = subprocess.Popen([str(bootstrap)], env=env, stdout=self.log,
                                      stderr=self.log, stdin=subprocess.DEVNULL)
        if not self.api.polled.wait(15):
            self.close()
            raise SystemExit(f"{bootstrap}: no first poll")

    def run(self, payloads, check):
        """Invokes each payload in turn: (cpu ns, latencies ns, peak RSS KiB); the log bytes
        the invocations wrote (what CloudWatch Logs would ingest) are left in `log_bytes`."""
        time.sleep(0.05)  # let init settle: only the invocations are measured
        before = cpu_ns(self.child.pid)
        switches_before = switches(self.child.pid)
        log_before = os.fstat(self.log.fileno()).st_size
        latencies = []
        for payload in payloads:
            ns, kind, body = self.api.invoke(payload)
            check(kind, body)
            latencies.append(ns)
        cpu = cpu_ns(self.child.pid) - before
        self.switches = switches(self.child.pid) - switches_before
        time.sleep(0.05)  # the last lines reach the file
        self.log_bytes = os.fstat(self.log.fileno()).st_size - log_before
        return cpu, latencies, vm_hwm_kib(self.child.pid)

    def close(self):
        self.child.kill()
        self.child.wait()
        self.api.events.put((None, b""))
        self.api.server.shutdown()
        self.log.close()


def expect_status(*codes):
    def check(kind, body):
        answer = json.loads(body) if kind == "response" else None
        if kind != "response" or answer.get("statusCode") not in codes:
            raise SystemExit(f"expected HTTP {codes}, got {kind}: {body[:300]!r}")
    return check


def expect_no_failures(kind, body):
    if kind != "response" or json.loads(body).get("batchItemFailures"):
        raise SystemExit(f"expected a batch with no failures, got {kind}: {body[:300]!r}")


def expect_echo(kind, body):
    if kind != "response":
        raise SystemExit(f"echo answered {kind}: {body[:300]!r}")


def setup_resources(hookgate, env, name):
    out = subprocess.run([hookgate, "setup", "--table", name, "--queue", name, "--bucket", name],
                         env=env, capture_output=True, text=True, check=True).stdout
    resources = {}
    for line in out.splitlines():
        key, value = line.removeprefix("export ").split("=", 1)
        resources[key] = value
    return resources


def measure_set(name, directory, args, proxy, moto_url, sink, base_env, boto_sqs):
    """One round of every scenario with the bootstraps under `directory`."""
    results = {}
    n = args.events
    resources = setup_resources(args.hookgate, dict(base_env, AWS_ENDPOINT_URL=moto_url),
                                f"bench-{uuid.uuid4().hex[:10]}")
    env = dict(base_env, **resources, AWS_ENDPOINT_URL=proxy.url,
               HOOKGATE_CONFIG=config(sink.port, args.fan_out), HOOKGATE_MAX_RECEIVE_COUNT="5")
    env.pop("HOOKGATE_ARCHIVE_BUCKET", None) if args.no_archive else None

    def record(scenario, per, cpu, lat, rss, counts, function):
        results[scenario] = {
            "log_bytes": function.log_bytes / per,
            "cpu_ms": cpu / per / 1e6,
            "p50_ms": statistics.median(lat) / 1e6,
            "p99_ms": sorted(lat)[max(0, int(len(lat) * 0.99) - 1)] / 1e6,
            "rss_mib": rss / 1024,
            "switches": function.switches / per,
            "requests": {k: v / per for k, v in sorted(counts.items())},
        }

    echo = Function(directory / "echo" / "bootstrap", env)
    try:
        cpu, lat, rss = echo.run([{"n": i} for i in range(n)], expect_echo)
        record("echo", n, cpu, lat, rss, proxy.take(), echo)
    finally:
        echo.close()

    events = [standard_event(body_1kib(i), f"msg_{uuid.uuid4().hex}") for i in range(n)]
    receiver = Function(directory / "receiver" / "bootstrap", env)
    try:
        proxy.take()
        cpu, lat, rss = receiver.run(events, expect_status(202))
        record("receiver/new", n, cpu, lat, rss, proxy.take(), receiver)
        bad = [standard_event(body_1kib(i), f"msg_{uuid.uuid4().hex}", good=False)
               for i in range(n)]
        cpu, lat, rss = receiver.run(bad, expect_status(401))
        record("receiver/rejected", n, cpu, lat, rss, proxy.take(), receiver)

        queue_url = resources["HOOKGATE_QUEUE_URL"]
        queue_arn = "arn:aws:sqs:us-east-1:123456789012:" + queue_url.rsplit("/", 1)[-1]

        def drain(count):
            """`count` messages from the queue, as Lambda SQS batches of 10."""
            batches = []
            while sum(len(b["Records"]) for b in batches) < count:
                got = boto_sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                               AttributeNames=["All"],
                                               MessageAttributeNames=["All"],
                                               VisibilityTimeout=600, WaitTimeSeconds=1)
                messages = got.get("Messages", [])
                if not messages:
                    have = sum(len(b["Records"]) for b in batches)
                    raise SystemExit(f"only {have} of {count} messages queued")
                batches.append({"Records": sqs_records(messages, queue_arn)})
            return batches

        batches = drain(n)
        processor = Function(directory / "processor" / "bootstrap", env)
        try:
            proxy.take()
            forwarded = sink.count
            cpu, lat, rss = processor.run(batches, expect_no_failures)
            if sink.count - forwarded != n:
                raise SystemExit(f"the sink saw {sink.count - forwarded} deliveries, not {n}")
            record("processor/batch10 (per record)", n, cpu, lat, rss, proxy.take(), processor)
            # Fan-out to three destinations: the events, then their deliveries (each a
            # message of its own), per event received.
            if args.fan_out:
                fan = [standard_event(body_1kib(i), f"msg_{uuid.uuid4().hex}", source="fanout")
                       for i in range(n)]
                receiver.run(fan, expect_status(202))
                proxy.take()
                forwarded = sink.count
                cpu1, lat1, _ = processor.run(drain(n), expect_no_failures)
                logged, switched = processor.log_bytes, processor.switches
                cpu2, lat2, rss = processor.run(drain(3 * n), expect_no_failures)
                if sink.count - forwarded != 3 * n:
                    raise SystemExit(f"the sink saw {sink.count - forwarded} deliveries, not {3 * n}")
                processor.log_bytes += logged
                processor.switches += switched
                record("processor/fan-out to 3 (per event)", n, cpu1 + cpu2, lat1 + lat2, rss,
                       proxy.take(), processor)
        finally:
            processor.close()

        # The provider's repeats, once the events are processed: each a duplicate. In the
        # container that queued them (it remembers them: no request), then in another one (the
        # ledger's refused claim answers).
        cpu, lat, rss = receiver.run(events, expect_status(200))
        record("receiver/duplicate", n, cpu, lat, rss, proxy.take(), receiver)
    finally:
        receiver.close()
    elsewhere = Function(directory / "receiver" / "bootstrap", env)
    try:
        proxy.take()
        cpu, lat, rss = elsewhere.run(events, expect_status(200))
        record("receiver/duplicate (elsewhere)", n, cpu, lat, rss, proxy.take(), elsewhere)
    finally:
        elsewhere.close()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=DIR",
                        help="a build to measure (default: current=target/lambda)")
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-archive", action="store_true", help="run without the archive")
    parser.add_argument("--fan-out", action="store_true",
                        help="also run events fanned out to three destinations (builds with routes)")
    parser.add_argument("--hookgate", default=str(ROOT / "target" / "debug" / "hookgate"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sets = [s.split("=", 1) for s in args.set] or [["current", str(ROOT / "target" / "lambda")]]
    sets = [(name, Path(d)) for name, d in sets]
    for _, d in sets:
        for f in ("receiver", "processor", "echo"):
            if not (d / f / "bootstrap").is_file():
                raise SystemExit(f"no {d / f / 'bootstrap'}: `cargo lambda build --release` first")

    import boto3  # the test venv has it, with moto

    moto, port = start_moto(sys.executable)
    moto_url = f"http://127.0.0.1:{port}"
    proxy = CountingProxy(port)
    sink = Sink()
    base_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "TZ": ":UTC",
        "AWS_LAMBDA_FUNCTION_NAME": "hookgate-bench", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_LEVEL": "INFO", "RUST_LOG": "info", "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true",
    }
    boto_sqs = boto3.client("sqs", endpoint_url=moto_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    rounds = {name: [] for name, _ in sets}
    try:
        for _ in range(args.rounds):
            for name, directory in sets:
                rounds[name].append(measure_set(name, directory, args, proxy, moto_url, sink,
                                                base_env, boto_sqs))
    finally:
        moto.kill()
        moto.wait()

    report = {}
    for name, runs in rounds.items():
        report[name] = {}
        for scenario in runs[0]:
            rows = [r[scenario] for r in runs]
            report[name][scenario] = {
                key: (statistics.median(row[key] for row in rows)
                      if not isinstance(rows[0][key], dict) else rows[0][key])
                for key in rows[0]
            }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.events} events per scenario, {args.rounds} alternating round(s), medians; "
          f"{os.cpu_count()} cores; archive {'off' if args.no_archive else 'on'}")
    for name, scenarios in report.items():
        print(f"\n[{name}]")
        for scenario, r in scenarios.items():
            reqs = ", ".join(f"{k} {v:g}" for k, v in r["requests"].items()) or "none"
            print(f"{scenario:32} CPU {r['cpu_ms']:.3f} ms   p50 {r['p50_ms']:.2f} ms   "
                  f"p99 {r['p99_ms']:.2f} ms   RSS {r['rss_mib']:.1f} MiB   "
                  f"switches {r['switches']:.1f}   log {r['log_bytes']:.0f} B   AWS: {reqs}")
    if len(report) > 1:
        first, *others = list(report)
        for other in others:
            print(f"\n{other} / {first} (CPU per invocation):")
            for scenario in report[first]:
                a, b = report[first][scenario]["cpu_ms"], report[other][scenario]["cpu_ms"]
                print(f"  {scenario:32} {b / a:.2f}")


if __name__ == "__main__":
    main()

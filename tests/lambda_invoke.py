#!/usr/bin/env python3
"""Invoke every sample event in events/ against the real function binaries.

`cargo lambda watch` (the Lambda Runtime API emulator) runs the receiver and processor
binaries, backed by SQS/DynamoDB on the moto server at $HOOKGATE_MOTO_ENDPOINT; each event
is sent with `cargo lambda invoke --data-file` and its answer asserted. Run by tests/run.
"""
import base64
import json
import os
import socket
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOOKGATE = os.path.join(ROOT, "target", "debug", "hookgate")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    endpoint = os.environ["HOOKGATE_MOTO_ENDPOINT"]
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_EC2_METADATA_DISABLED="true", RUST_LOG="info")
    name = "hookgate-invoke-" + uuid.uuid4().hex[:8]
    # The table, the queues and the archive bucket (the name fits S3's rules: lower case).
    setup = subprocess.run([HOOKGATE, "setup", "--table", name, "--queue", name, "--bucket", name],
                           env=env, capture_output=True, text=True, check=True).stdout
    for line in setup.splitlines():
        key, value = line.removeprefix("export ").split("=", 1)
        env[key] = value
    assert env.get("HOOKGATE_ARCHIVE_BUCKET") == name, setup
    # As events/env.json: the sample configuration, and no DLQ for the processor.
    env.pop("HOOKGATE_DLQ_URL", None)
    with open(os.path.join(ROOT, "events", "sample-config.toml")) as f:
        env["HOOKGATE_CONFIG"] = f.read()
    env["HOOKGATE_MAX_RECEIVE_COUNT"] = "5"

    port = free_port()
    log = open(os.path.join(ROOT, "target", "lambda-watch.log"), "w")
    watch = subprocess.Popen(
        ["cargo", "lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", str(port),
         "--ignore-changes"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if watch.poll() is not None or time.time() > deadline:
                    sys.exit("cargo lambda watch did not start; see target/lambda-watch.log")
                time.sleep(0.5)

        def invoke(function, event):
            out = subprocess.run(
                ["cargo", "lambda", "invoke", function, "--invoke-address", "127.0.0.1",
                 "--invoke-port", str(port), "--data-file", os.path.join("events", event),
                 "--output-format", "json"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
            if out.returncode != 0:
                sys.exit(f"invoke {function} {event} failed:\n{out.stdout}\n{out.stderr}")
            return json.loads(out.stdout)

        checked = 0

        def expect_http(event, code, **fields):
            nonlocal checked
            answer = invoke("receiver", event)
            body = json.loads(answer["body"])
            assert answer["statusCode"] == code, (event, answer)
            for key, value in fields.items():
                assert body.get(key) == value, (event, key, body)
            shown = (body.get("status") or body.get("error")
                     or f"{len(body.get('events', []))} events")
            print(f"ok receiver {event}: {code} {shown}")
            checked += 1
            return body

        events = sorted(os.listdir(os.path.join(ROOT, "events")))
        special = {"webhook-bad-signature.json", "webhook-unknown-source.json",
                   "webhook-github-redelivery.json", "webhook-demo-rest-v1.json"}
        for event in events:
            if event.startswith("webhook-") and event not in special:
                expect_http(event, 202, status="queued")
        # Repeats of events accepted above that still wait in the queue (no processor has taken
        # them), reaching the warm function that queued them: it knows they are on the queue,
        # answers duplicate without asking the ledger, and enqueues no second copy. (Another
        # container would answer 409 event_in_progress: tests/tests/request_counts.rs.)
        expect_http("webhook-github-redelivery.json", 200, status="duplicate")
        expect_http("webhook-demo-rest-v1.json", 200, status="duplicate")
        expect_http("webhook-bad-signature.json", 401, error="signature_mismatch")
        expect_http("webhook-unknown-source.json", 404, error="unknown_source")
        expect_http("status-get.json", 404, error="event_not_found")
        # status=received&source=demo&limit=5, read from the table's by-status index: the three
        # demo events accepted above and waiting in the queue (webhook-demo.json,
        # webhook-demo-base64.json and webhook-demo-large.json, the last one archived and enqueued
        # as a pointer), newest first.
        listed = expect_http("status-list.json", 200)["events"]
        assert len(listed) == 3, listed
        assert all(e["status"] == "received" and e["source"] == "demo" for e in listed), listed
        assert listed[0]["received_at"] >= listed[1]["received_at"], listed
        assert all("attempts" not in e for e in listed), listed

        # The first invocation builds and starts the binary, which can take longer than the
        # invocation's deadline; warm it up with an empty batch first.
        warm = subprocess.run(
            ["cargo", "lambda", "invoke", "processor", "--invoke-address", "127.0.0.1",
             "--invoke-port", str(port), "--data-ascii", '{"Records": []}', "--output-format", "json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert warm.returncode == 0 and json.loads(warm.stdout) == {"batchItemFailures": []}, warm

        ok = invoke("processor", "sqs-batch.json")
        assert ok.get("batchItemFailures") == [], ok
        print("ok processor sqs-batch.json: no batchItemFailures")
        # The pointer message the receiver wrote for webhook-demo-large.json: the processor reads
        # the body the receiver archived in the bucket, checks its size and SHA-256, and runs it.
        pointer = invoke("processor", "sqs-batch-pointer.json")
        assert pointer.get("batchItemFailures") == [], pointer
        print("ok processor sqs-batch-pointer.json: the archived body read and processed")
        checked += 1

        # The first event of sqs-batch.json, processed: its payload (kept inline in the ledger
        # by the processor), byte for byte, then a replay of it.
        with open(os.path.join(ROOT, "events", "sqs-batch.json")) as f:
            sent = json.load(f)["Records"][0]["body"].split("\n", 1)[1].encode()
        answer = invoke("receiver", "status-payload.json")
        assert answer["statusCode"] == 200, answer
        got = answer["body"]
        got = base64.b64decode(got) if answer.get("isBase64Encoded") else got.encode()
        assert got == sent, (got, sent)
        assert answer["headers"]["content-type"] == "application/json", answer
        print("ok receiver status-payload.json: 200, the payload byte for byte")
        checked += 1
        expect_http("status-replay.json", 202, status="queued", generation=1)
        one = invoke("processor", "sqs-batch-one-fails.json")
        assert one.get("batchItemFailures") == [
            {"itemIdentifier": "44444444-4444-4444-8444-444444444444"}], one
        print("ok processor sqs-batch-one-fails.json: one batchItemFailures entry")
        checked += 2
        unchecked = [e for e in events if e.endswith(".json") and e != "env.json"
                     and not e.startswith(("webhook-", "status-", "sqs-"))]
        assert not unchecked, f"sample events without a check: {unchecked}"
        print(f"{checked} passed, 0 failed")
    finally:
        watch.terminate()
        try:
            watch.wait(timeout=10)
        except subprocess.TimeoutExpired:
            watch.kill()


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Memory of a long-running local stack: `hookgate serve` (release, in-memory backends) takes
# ROUNDS rounds of EVENTS signed events each (default 10 × 10,000 = 100,000) from
# `hookgate bench --url`, and its resident memory (VmRSS) is printed after every round.
# The dedup window is 5 s and the rounds 6 s apart, so the ledger holds about one round of
# events at a time, as a deployment holds one dedup window: RSS must level off, not grow with
# the number of events. Not part of tests/run (it takes about two minutes); run it by hand:
#
#   tests/memory_flat.sh [ROUNDS] [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-10}
events=${2:-10000}
cargo build --release -q -p hookgate-cli
bin=target/release/hookgate
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/config.toml" <<'TOML'
[sources.demo]
scheme = "hmac-sha256"
secrets = ["memory-test-s3cr3t"]

[receiver]
dedup_window_secs = 5

[processor]
pollers = 4
wait_time_ms = 100

[admin]
token = "memory-admin-token"
TOML
RUST_LOG=warn "$bin" serve --addr 127.0.0.1:0 --config "$work/config.toml" >"$work/out" 2>/dev/null &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^hookgate listening on //p' "$work/out")
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
echo "start: VmRSS $(rss) KiB"
for round in $(seq "$rounds"); do
  "$bin" bench --url "$url" --config "$work/config.toml" --events "$events" >"$work/bench" 2>&1 ||
    { cat "$work/bench"; exit 1; }
  echo "after $((round * events)) events: VmRSS $(rss) KiB ($(grep -m1 -i 'processed' "$work/bench" | tr -s ' '))"
  sleep 6
done

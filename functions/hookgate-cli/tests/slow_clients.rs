//! Slow and silent clients over real TCP on 127.0.0.1 against the local stack's HTTP server:
//! each limit of `ServerLimits` is reached and does what it says — the connection is closed, or
//! the request answered `408` — and a request head over hyper's buffer gets hyper's bare `431`.
//!
//! The limits are set to fractions of a second so the tests are quick; what is asserted is
//! behaviour (closed, answered, not kept), never how fast. Every wait has a generous bound
//! only so that a broken server fails the test instead of hanging it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use hookgate_cli::http_server::{serve_with, ServerLimits};
use hookgate_cli::local::LocalStack;
use hookgate_core::memory::{MemoryLedger, MemoryQueue};
use hookgate_core::{Config, Handlers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Long enough for anything that should happen; only a broken server reaches it.
const BOUND: Duration = Duration::from_secs(10);

const SHORT: Duration = Duration::from_millis(300);

fn config() -> Config {
    Config::from_toml(
        "[sources.demo]\nscheme = 'hmac-sha256'\nsecrets = ['local-demo-s3cr3t']\n\
         [receiver]\nmax_body_bytes = 4096",
    )
    .unwrap()
}

struct Stack {
    addr: String,
    ledger: Arc<MemoryLedger>,
    queue: Arc<MemoryQueue>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The local stack on 127.0.0.1 with `limits`, over in-memory ports the test holds.
async fn stack(limits: ServerLimits) -> Stack {
    let config = config();
    let ledger = Arc::new(MemoryLedger::new());
    let queue = Arc::new(MemoryQueue::new(config.processor.visibility_timeout()));
    let stack = LocalStack::new(&config, ledger.clone(), queue.clone(), Handlers::new())
        .unwrap()
        .with_server_limits(limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(stack.serve(listener, async move {
        let _ = stopped.await;
    }));
    Stack {
        addr,
        ledger,
        queue,
        _stop: stop,
    }
}

fn limits() -> ServerLimits {
    ServerLimits {
        header_read_timeout: SHORT,
        body_read_timeout: SHORT,
        write_timeout: SHORT,
        max_connections: 64,
    }
}

/// Reads until the server closes the connection (EOF or reset); what arrived before it.
/// Panics if the connection is still open after [`BOUND`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept the connection open; got {:?}",
        String::from_utf8_lossy(&got)
    );
    got
}

/// Whether the server has closed `stream` already (without waiting for anything).
fn closed_now(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// The status code of the first answer in `bytes`.
fn status(bytes: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn body_of(bytes: &[u8]) -> serde_json::Value {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an answer head");
    serde_json::from_slice(&bytes[split + 4..]).unwrap_or_default()
}

#[tokio::test]
async fn a_request_head_still_arriving_at_the_header_timeout_is_cut_off() {
    let s = stack(limits()).await;
    let mut stream = TcpStream::connect(&s.addr).await.unwrap();
    stream
        .write_all(b"POST /webhooks/demo HTTP/1.1\r\nhost: x\r\nx-padding: ")
        .await
        .unwrap();
    // Bytes keep coming, one every 20 ms, for far longer than the timeout: progress does not
    // earn more time. The head is never finished.
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..500 {
            if writer.write_all(b"p").await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    });
    let mut got = Vec::new();
    let closed = tokio::time::timeout(BOUND, reader.read_to_end(&mut got)).await;
    assert!(closed.is_ok(), "the connection was kept");
    assert_ne!(status(&got), Some(202));
    trickle.abort();
    assert!(s.ledger.is_empty() && s.queue.is_empty());
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let s = stack(limits()).await;
    let mut stream = TcpStream::connect(&s.addr).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut buf = [0u8; 4096];
    // Kept alive: a second request on the same connection is answered.
    for _ in 0..2 {
        stream.write_all(request).await.unwrap();
        let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            status(&buf[..n]),
            Some(200),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    // Then silence: the server closes it.
    let rest = read_until_closed(&mut stream).await;
    assert!(
        status(&rest) != Some(200),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn a_body_still_arriving_at_the_body_timeout_is_answered_408_and_the_connection_closed() {
    let s = stack(limits()).await;
    for trickle in [false, true] {
        let mut stream = TcpStream::connect(&s.addr).await.unwrap();
        stream
            .write_all(
                b"POST /webhooks/demo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                  x-signature: sha256=00\r\ncontent-length: 1000\r\n\r\n{\"type\":",
            )
            .await
            .unwrap();
        let (mut reader, mut writer) = stream.into_split();
        // Either silence after the first bytes, or one byte every 20 ms: both miss the deadline.
        let sender = tokio::spawn(async move {
            for _ in 0..500 {
                if trickle && writer.write_all(b" ").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drop(writer);
        });
        let mut got = Vec::new();
        let closed = tokio::time::timeout(BOUND, reader.read_to_end(&mut got)).await;
        assert!(closed.is_ok(), "trickle {trickle}: the connection was kept");
        assert_eq!(
            status(&got),
            Some(408),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        assert_eq!(body_of(&got)["error"], "request_timeout");
        sender.abort();
    }
    assert!(s.ledger.is_empty() && s.queue.is_empty());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    // An answer that never ends, to a client with a small receive buffer that reads nothing:
    // the server's writes stop making progress.
    let endless = Router::new().route(
        "/endless",
        get(|| async {
            let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
            Body::from_stream(futures::stream::repeat_with(move || {
                Ok::<_, std::io::Error>(chunk.clone())
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_with(listener, endless, limits(), async move {
        let _ = stopped.await;
    }));
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(b"GET /endless HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Reading nothing for many times the write timeout; then whatever was buffered drains and
    // the connection ends. A server that kept it would stream forever.
    tokio::time::sleep(SHORT * 8).await;
    let got = read_until_closed(&mut stream).await;
    assert_eq!(status(&got), Some(200));
    drop(stop);
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let s = stack(ServerLimits {
        header_read_timeout: Duration::from_millis(500),
        max_connections: 2,
        ..limits()
    })
    .await;
    // Two silent connections take both slots; a third, with a request, waits in the backlog.
    let first = TcpStream::connect(&s.addr).await.unwrap();
    let second = TcpStream::connect(&s.addr).await.unwrap();
    let mut third = TcpStream::connect(&s.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut third).await;
    assert_eq!(
        status(&answer),
        Some(200),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    // It was answered only once a slot was free: a silent connection had been closed (by the
    // header timeout) before the third one was served.
    assert!(
        closed_now(&first) || closed_now(&second),
        "the third connection was served while both slots were taken"
    );
}

#[tokio::test]
async fn a_request_head_over_hypers_buffer_gets_a_bare_431_and_nothing_is_kept() {
    let s = stack(ServerLimits::default()).await;
    // Just over hookgate's 10 KiB: hookgate's JSON answer. Over hyper's 16 KiB buffer: hyper's.
    for (padding, json) in [(12 * 1024, true), (20 * 1024, false)] {
        let mut stream = TcpStream::connect(&s.addr).await.unwrap();
        let head = format!(
            "POST /webhooks/demo HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-padding: {}\r\ncontent-length: 2\r\n\r\n{{}}",
            "p".repeat(padding)
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let got = read_until_closed(&mut stream).await;
        assert_eq!(
            status(&got),
            Some(431),
            "{padding}: {:?}",
            String::from_utf8_lossy(&got)
        );
        let error = body_of(&got)["error"].clone();
        if json {
            assert_eq!(error, "headers_too_large");
        } else {
            assert!(error.is_null(), "hyper's own answer has no JSON body");
        }
    }
    assert!(s.ledger.is_empty() && s.queue.is_empty());
}

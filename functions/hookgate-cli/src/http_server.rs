//! The local stack's HTTP/1.1 server: hyper with its header limits raised above hookgate's own.
//!
//! `axum::serve` keeps hyper's defaults (100 header lines, about 400 KiB of read buffer), and
//! hyper answers a request over them with a bare `431` and no body. Here hyper's limits are
//! [`HYPER_MAX_HEADERS`] and [`HYPER_MAX_BUF_SIZE`], so a request over hookgate's limits reaches
//! [`crate::header_limits`] and gets a JSON answer; only a request over hyper's raised limits
//! still gets hyper's bare one. Shutdown is graceful: no new connections, in-flight requests
//! finish.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::header_limits::{HYPER_MAX_BUF_SIZE, HYPER_MAX_HEADERS};

/// How long open connections may take to finish once shutdown has begun.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` completes, then drains open connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_BUF_SIZE);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(router.clone());
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("connections still open after the drain period; closing them");
    }
    Ok(())
}

//! The receiver Lambda: wires the AWS adapters into the receiver core.

use lambda_http::lambda_runtime::{self, service_fn};
use lambda_http::request::LambdaRequest;
use lambda_http::{Error, LambdaEvent};

// mimalloc, not glibc's malloc: allocation was a tenth of the CPU per event (docs/cost.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One event at a time: a single-threaded scheduler spares the cross-thread wake-ups that
// were a third of the CPU per event (docs/cost.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // Lambda's log format and level: see hookgate_core::telemetry.
    hookgate_core::telemetry::init_lambda()?;
    let app = receiver::App::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<LambdaRequest>| {
        app.handle_event(event)
    }))
    .await
}

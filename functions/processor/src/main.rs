//! The processor Lambda: wires the AWS adapters and your handlers into the processor core.

use lambda_runtime::{run, service_fn, Error};

// mimalloc, not glibc's malloc: allocation was a tenth of the CPU per event (docs/cost.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One event at a time: a single-threaded scheduler spares the cross-thread wake-ups that
// were a third of the CPU per event (docs/cost.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // Lambda's log format and level: see hookgate_core::telemetry.
    hookgate_core::telemetry::init_lambda()?;
    let app = processor::App::from_env(handlers::handlers()).await?;
    run(service_fn(|event| app.handle(event))).await
}

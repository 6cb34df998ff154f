//! The processor Lambda: wires the AWS adapters and your handlers into the processor core.

use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Lambda's log format and level: see hookgate_core::telemetry.
    hookgate_core::telemetry::init_lambda()?;
    let app = processor::App::from_env(handlers::handlers()).await?;
    run(service_fn(|event| app.handle(event))).await
}

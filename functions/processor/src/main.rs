//! The processor Lambda: wires the AWS adapters and your handlers into the processor core.

use lambda_runtime::{run, service_fn, tracing, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let app = processor::App::from_env(processor::handlers::handlers()).await?;
    run(service_fn(|event| app.handle(event))).await
}

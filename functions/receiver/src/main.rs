//! The receiver Lambda: wires the AWS adapters into the receiver core.

use lambda_http::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Lambda's log format and level: see hookgate_core::telemetry.
    hookgate_core::telemetry::init_lambda()?;
    let app = receiver::App::from_env().await?;
    run(service_fn(|request| app.handle(request))).await
}

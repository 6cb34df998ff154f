//! The receiver Lambda: wires the AWS adapters into the receiver core.

use lambda_http::{run, service_fn, tracing, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let app = receiver::App::from_env().await?;
    run(service_fn(|request| app.handle(request))).await
}

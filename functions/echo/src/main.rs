//! A `lambda_runtime` function that does nothing but answer each event with itself.
//!
//! It is not deployed. `tests/lambda_bench.py` runs it beside the receiver and processor,
//! built the same way (`cargo lambda build --release`) and with the same runtime flavour, so
//! every figure of theirs is read against the runtime's own floor in one run.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}

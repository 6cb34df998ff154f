//! The `hookgate` command's library: the local stack, usable from your own code too.
//!
//! The local stack runs the receiver and the processor together in one process, on in-memory
//! backends (the default) or on real SQS/DynamoDB endpoints, with the same cores the Lambda
//! functions run. Embed it to try your own handlers:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use hookgate_cli::local::LocalStack;
//! use hookgate_core::{config::EXAMPLE_CONFIG, Config, Envelope, Handlers};
//!
//! let config = Config::from_toml(EXAMPLE_CONFIG).expect("valid");
//! let handlers = Handlers::new().on("demo", "*", |e: Envelope| async move { Ok(()) });
//! let stack = LocalStack::in_memory(config, handlers);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! stack.serve(listener, std::future::pending()).await
//! # }
//! ```

pub mod bench;
pub mod cli;
pub mod config_choice;
pub mod console;
pub mod destinations_command;
pub mod dlq_command;
pub mod events;
pub mod header_limits;
pub mod http_server;
pub mod local;
pub mod provider_request;
pub mod replay_command;
pub mod simulate_command;

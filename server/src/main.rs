//! The `bindery` command line: `serve`, `workerd-config` and wrangler-like data commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bindery: Cloudflare's storage primitives on your own machine.
#[derive(Debug, Parser)]
#[command(name = "bindery", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the binding protocols of a self-hosted workerd.
    Serve {
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
        /// Address to listen on (non-loopback addresses need a token).
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: String,
        /// Bearer token every binding request must carry.
        #[arg(long, env = "BINDERY_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BINDERY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bindery: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), Box<dyn std::error::Error>> = runtime.block_on(async {
        match cli.command {
            Command::Serve {
                data,
                listen,
                token,
            } => bindery::serve::run(bindery::ServeConfig {
                data,
                listen,
                token,
            })
            .await
            .map_err(Into::into),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bindery: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The command line: `serve`, `workerd-config`, and data commands that mirror wrangler's
//! (`bindery kv key put|get|list|delete`).
//!
//! Data commands open the store files directly, so they run while `bindery serve` is
//! stopped (a running server holds the files).

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::data_commands::{D1Command, KvCommand, R2Command};
use crate::workerd_config::WorkerdOptions;
use crate::wrangler::Wrangler;

/// Bindery: Cloudflare's storage primitives on your own machine.
#[derive(Debug, Parser)]
#[command(name = "bindery", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
        /// A project's wrangler.jsonc / wrangler.toml: queue consumers and crons come from it.
        #[arg(long)]
        wrangler: Option<PathBuf>,
        /// Serve only the resources the wrangler file declares.
        #[arg(long, requires = "wrangler")]
        strict: bool,
        /// Address of the driver Worker (`bindery workerd-config --driver-listen`).
        #[arg(long, default_value = "127.0.0.1:8788")]
        driver: String,
        /// Access key id of the S3 API.
        #[arg(long, env = "BINDERY_S3_ACCESS_KEY_ID", default_value = "bindery")]
        s3_access_key_id: String,
        /// Secret access key of the S3 API (default: the token, or `bindery` without one).
        #[arg(long, env = "BINDERY_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
        s3_secret_access_key: Option<String>,
    },
    /// Write a workerd config running a project's Worker against `bindery serve`.
    WorkerdConfig {
        /// The project's wrangler.jsonc, wrangler.json or wrangler.toml (default: found in
        /// the current folder).
        #[arg(long)]
        wrangler: Option<PathBuf>,
        /// Where to write the config.
        #[arg(long, default_value = "bindery.capnp")]
        out: PathBuf,
        /// Address of `bindery serve`.
        #[arg(long, default_value = "127.0.0.1:8787")]
        bindery: String,
        /// Token of `bindery serve`, injected as `Authorization: Bearer`.
        #[arg(long, env = "BINDERY_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Address of the Worker's HTTP socket.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Address of the driver Worker's socket (queue consumers and crons).
        #[arg(long, default_value = "127.0.0.1:8788")]
        driver_listen: String,
        /// The main module, instead of the configuration's `main`.
        #[arg(long)]
        main: Option<PathBuf>,
    },
    /// Workers KV data commands.
    Kv {
        /// What to do.
        #[command(subcommand)]
        command: KvCommand,
    },
    /// D1 data commands.
    D1 {
        /// What to do.
        #[command(subcommand)]
        command: D1Command,
    },
    /// R2 data commands.
    R2 {
        /// What to do.
        #[command(subcommand)]
        command: R2Command,
    },
}

/// What a command returns.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;

/// Runs a parsed command line.
///
/// # Errors
///
/// Whatever the command failed with, to be printed.
pub async fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Serve {
            data,
            listen,
            token,
            wrangler,
            strict,
            driver,
            s3_access_key_id,
            s3_secret_access_key,
        } => {
            let s3 = crate::sigv4::Credentials {
                access_key_id: s3_access_key_id,
                secret_access_key: s3_secret_access_key
                    .or_else(|| token.clone())
                    .unwrap_or_else(|| "bindery".to_owned()),
            };
            crate::serve::run(crate::ServeConfig {
                data,
                listen,
                token,
                wrangler,
                strict,
                driver,
                s3: Some(s3),
            })
            .await?;
            Ok(())
        }
        Command::WorkerdConfig {
            wrangler,
            out,
            bindery,
            token,
            listen,
            driver_listen,
            main,
        } => {
            let wrangler = match wrangler {
                Some(p) => p,
                None => Wrangler::find(Path::new("."))?,
            };
            let options = WorkerdOptions {
                bindery,
                token,
                listen: listen.clone(),
                driver_listen,
                main,
            };
            let generated = crate::workerd_config::write(&wrangler, &out, &options)?;
            let experimental = if generated.with_driver {
                " --experimental"
            } else {
                ""
            };
            println!("wrote {}", out.display());
            println!(
                "run it with: workerd serve{experimental} {}   (the Worker listens on http://{listen})",
                out.display()
            );
            Ok(())
        }
        Command::Kv { command } => crate::data_commands::kv(command).await,
        Command::D1 { command } => crate::data_commands::d1(command).await,
        Command::R2 { command } => crate::data_commands::r2(command).await,
    }
}

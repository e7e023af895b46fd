//! The command line: `serve`, `workerd-config`, and data commands that mirror wrangler's
//! (`bindery kv key put|get|list|delete`).
//!
//! Data commands open the store files directly, so they run while `bindery serve` is
//! stopped (a running server holds the files).

use std::io::Write;
use std::path::{Path, PathBuf};

use bindery_core::kv::{GetOptions, KvStore, ListOptions, PutOptions};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};

use crate::registry::{Kind, Registry, validate_name};
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
}

/// `bindery kv ...`.
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Keys of a namespace.
    Key {
        /// What to do.
        #[command(subcommand)]
        command: KvKeyCommand,
    },
}

/// Which namespace a KV command acts on.
#[derive(Debug, Args)]
pub struct KvTarget {
    /// The binding name, looked up in the wrangler file.
    #[arg(long, conflicts_with = "namespace_id")]
    pub binding: Option<String>,
    /// The namespace id (the resource name).
    #[arg(long)]
    pub namespace_id: Option<String>,
    /// The wrangler file for --binding (default: found in the current folder).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Folder holding every store.
    #[arg(long, default_value = ".bindery")]
    pub data: PathBuf,
}

/// `bindery kv key ...`.
#[derive(Debug, Subcommand)]
pub enum KvKeyCommand {
    /// Write a value.
    Put {
        /// The key.
        key: String,
        /// The value (or use --path).
        value: Option<String>,
        /// Read the value from this file.
        #[arg(long, conflicts_with = "value")]
        path: Option<PathBuf>,
        /// Seconds until the key expires.
        #[arg(long)]
        ttl: Option<u64>,
        /// Expiration as seconds since the UNIX epoch.
        #[arg(long)]
        expiration: Option<u64>,
        /// JSON metadata.
        #[arg(long)]
        metadata: Option<String>,
        /// The namespace.
        #[command(flatten)]
        target: KvTarget,
    },
    /// Print a value.
    Get {
        /// The key.
        key: String,
        /// Decode the value as UTF-8 text (otherwise the raw bytes are written).
        #[arg(long)]
        text: bool,
        /// The namespace.
        #[command(flatten)]
        target: KvTarget,
    },
    /// List keys as JSON.
    List {
        /// Only keys with this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// The namespace.
        #[command(flatten)]
        target: KvTarget,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
        /// The namespace.
        #[command(flatten)]
        target: KvTarget,
    },
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

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
        Command::Kv {
            command: KvCommand::Key { command },
        } => kv_key(command).await,
    }
}

fn kv_name(target: &KvTarget) -> Result<String, Box<dyn std::error::Error>> {
    let name = match (&target.namespace_id, &target.binding) {
        (Some(id), _) => id.clone(),
        (None, Some(binding)) => {
            let path = match &target.config {
                Some(p) => p.clone(),
                None => Wrangler::find(Path::new("."))?,
            };
            Wrangler::load(&path)?.kv_name(binding).ok_or_else(|| {
                format!(
                    "no kv_namespaces entry with binding {binding:?} in {}",
                    path.display()
                )
            })?
        }
        (None, None) => return Err("pass --binding NAME or --namespace-id ID".into()),
    };
    validate_name(&name).map_err(|reason| format!("namespace {name:?}: {reason}"))?;
    Ok(name)
}

async fn open_kv(target: &KvTarget) -> Result<bindery_kv::KvNamespace, Box<dyn std::error::Error>> {
    let name = kv_name(target)?;
    let registry = Registry::new(&target.data, bindery_core::SystemClock::shared(), None);
    let path = registry.path_of(Kind::Kv, &name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    bindery_kv::KvNamespace::builder()
        .open(&path)
        .await
        .map_err(|e| {
            format!(
                "cannot open {} (is `bindery serve` running on it?): {e}",
                path.display()
            )
            .into()
        })
}

async fn kv_key(command: KvKeyCommand) -> CliResult {
    match command {
        KvKeyCommand::Put {
            key,
            value,
            path,
            ttl,
            expiration,
            metadata,
            target,
        } => {
            let bytes = match (value, path) {
                (Some(v), _) => Bytes::from(v.into_bytes()),
                (None, Some(p)) => {
                    Bytes::from(std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?)
                }
                (None, None) => return Err("pass a VALUE or --path FILE".into()),
            };
            let metadata = metadata
                .map(|m| {
                    serde_json::from_str(&m).map_err(|e| format!("--metadata is not JSON: {e}"))
                })
                .transpose()?;
            let kv = open_kv(&target).await?;
            kv.put(
                &key,
                bytes,
                PutOptions {
                    expiration,
                    expiration_ttl: ttl,
                    metadata,
                },
            )
            .await?;
            eprintln!("Writing the value to key {key:?}.");
        }
        KvKeyCommand::Get { key, text, target } => {
            let kv = open_kv(&target).await?;
            match kv.get(&key, GetOptions::default()).await? {
                None => return Err(format!("Value not found for key {key:?}").into()),
                Some(v) => {
                    let mut out = std::io::stdout();
                    if text {
                        writeln!(out, "{}", String::from_utf8_lossy(&v))?;
                    } else {
                        out.write_all(&v)?;
                    }
                    out.flush()?;
                }
            }
        }
        KvKeyCommand::List { prefix, target } => {
            let kv = open_kv(&target).await?;
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = kv
                    .list(ListOptions {
                        prefix: prefix.clone(),
                        limit: None,
                        cursor: cursor.take(),
                    })
                    .await?;
                for k in page.keys {
                    let mut o = serde_json::json!({"name": k.name});
                    if let Some(e) = k.expiration {
                        o["expiration"] = e.into();
                    }
                    if let Some(m) = k.metadata {
                        o["metadata"] = m;
                    }
                    keys.push(o);
                }
                if page.list_complete {
                    break;
                }
                cursor = page.cursor;
                if cursor.is_none() {
                    break;
                }
            }
            println!("{}", serde_json::to_string_pretty(&keys)?);
        }
        KvKeyCommand::Delete { key, target } => {
            let kv = open_kv(&target).await?;
            kv.delete(&key).await?;
            eprintln!("Deleted key {key:?}.");
        }
    }
    Ok(())
}

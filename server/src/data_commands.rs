//! Data commands that mirror wrangler's: `bindery kv key put|get|list|delete`,
//! `bindery d1 execute|export|list`, `bindery r2 bucket create|list|delete` and
//! `bindery r2 object put|get|delete`.
//!
//! They open the stores under the data folder directly, so they run while `bindery serve` is
//! stopped (a running server holds the files).

use std::io::Write;
use std::path::{Path, PathBuf};

use bindery_core::d1::{
    D1Catalog, D1ExportOptions, D1QueryOptions, D1RestoreTarget, D1ResultsFormat, D1Statement,
};
use bindery_core::kv::{GetOptions, KvStore, ListOptions, PutOptions};
use bindery_core::r2::{R2Body, R2BucketExt, R2Buckets};
use bytes::Bytes;
use clap::{Args, Subcommand};
use futures_util::StreamExt;

use crate::cli::CliResult;
use crate::registry::{Kind, Registry, validate_name};
use crate::wrangler::Wrangler;

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

/// `bindery d1 ...`.
#[derive(Debug, Subcommand)]
pub enum D1Command {
    /// Run SQL against a database (created on first use) and print the results as JSON.
    Execute {
        /// The database name.
        database: String,
        /// SQL to run (one statement).
        #[arg(long, conflicts_with = "file")]
        command: Option<String>,
        /// A SQL file to import (many statements, one transaction).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
    /// Write a database as SQL text.
    Export {
        /// The database name.
        database: String,
        /// Where to write the SQL.
        #[arg(long)]
        output: PathBuf,
        /// Only the schema.
        #[arg(long, conflicts_with = "no_schema")]
        no_data: bool,
        /// Only the rows.
        #[arg(long)]
        no_schema: bool,
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
    /// List databases.
    List {
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
    /// Time Travel: bookmarks and restores.
    TimeTravel {
        /// What to do.
        #[command(subcommand)]
        command: TimeTravelCommand,
    },
}

/// `bindery d1 time-travel ...`.
#[derive(Debug, Subcommand)]
pub enum TimeTravelCommand {
    /// Print the bookmark of now, or of a moment (`--timestamp`, ms since the epoch).
    Info {
        /// The database name.
        database: String,
        /// A moment, in milliseconds since the UNIX epoch.
        #[arg(long)]
        timestamp: Option<u64>,
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
    /// Restore a database to a bookmark or a moment.
    Restore {
        /// The database name.
        database: String,
        /// The bookmark to restore to.
        #[arg(long, conflicts_with = "timestamp")]
        bookmark: Option<String>,
        /// The moment to restore to, in milliseconds since the UNIX epoch.
        #[arg(long)]
        timestamp: Option<u64>,
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
}

/// `bindery r2 ...`.
#[derive(Debug, Subcommand)]
pub enum R2Command {
    /// Buckets.
    Bucket {
        /// What to do.
        #[command(subcommand)]
        command: R2BucketCommand,
    },
    /// Objects, named `<bucket>/<key>`.
    Object {
        /// What to do.
        #[command(subcommand)]
        command: R2ObjectCommand,
    },
}

/// `bindery r2 bucket ...`.
#[derive(Debug, Subcommand)]
pub enum R2BucketCommand {
    /// Create a bucket.
    Create {
        /// The bucket.
        name: String,
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
    /// List buckets.
    List {
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
    /// Delete an empty bucket.
    Delete {
        /// The bucket.
        name: String,
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
    /// Event notifications to queues (applied when `bindery serve` starts).
    Notification {
        /// What to do.
        #[command(subcommand)]
        command: NotificationCommand,
    },
}

/// `bindery r2 bucket notification ...`.
#[derive(Debug, Subcommand)]
pub enum NotificationCommand {
    /// Send a bucket's events to a queue.
    Create {
        /// The bucket.
        bucket: String,
        /// `object-create` or `object-delete` (repeat for both).
        #[arg(long = "event-type", required = true)]
        event_types: Vec<String>,
        /// The queue.
        #[arg(long)]
        queue: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Only keys ending with this.
        #[arg(long, default_value = "")]
        suffix: String,
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
    /// List a bucket's rules as JSON.
    List {
        /// The bucket.
        bucket: String,
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
    /// Remove a bucket's rules for a queue.
    Delete {
        /// The bucket.
        bucket: String,
        /// The queue.
        #[arg(long)]
        queue: String,
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
}

/// `bindery r2 object ...`.
#[derive(Debug, Subcommand)]
pub enum R2ObjectCommand {
    /// Store a file as an object.
    Put {
        /// `<bucket>/<key>`.
        path: String,
        /// The file to upload.
        #[arg(long)]
        file: PathBuf,
        /// Its content type.
        #[arg(long)]
        content_type: Option<String>,
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
    /// Print an object (or write it to --file).
    Get {
        /// `<bucket>/<key>`.
        path: String,
        /// Write here instead of standard output.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
    /// Delete an object.
    Delete {
        /// `<bucket>/<key>`.
        path: String,
        /// Folder holding every store.
        #[arg(long, default_value = ".bindery")]
        data: PathBuf,
    },
}

fn registry(data: &Path) -> Registry {
    Registry::new(data, bindery_core::SystemClock::shared(), None)
}

/// Runs `bindery kv ...`.
///
/// # Errors
///
/// What the store or the arguments refused.
pub async fn kv(command: KvCommand) -> CliResult {
    match command {
        KvCommand::Key { command } => kv_key(command).await,
    }
}

/// Runs `bindery d1 ...`.
///
/// # Errors
///
/// What the database or the arguments refused.
pub async fn d1(command: D1Command) -> CliResult {
    match command {
        D1Command::Execute {
            database,
            command,
            file,
            data,
        } => {
            let reg = registry(&data);
            let db = reg.d1(&database).await.map_err(registry_error)?;
            match (command, file) {
                (Some(sql), _) => {
                    let r = db
                        .query_batch(
                            &[D1Statement::new(sql.as_str())],
                            &D1QueryOptions::default(),
                        )
                        .await?;
                    let out: Vec<serde_json::Value> = r
                        .results
                        .iter()
                        .map(|x| x.to_json(D1ResultsFormat::ArrayOfObjects))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&out)?);
                }
                (None, Some(file)) => {
                    let bytes =
                        std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                    let r = db
                        .import(bindery_core::stream::once(Bytes::from(bytes)))
                        .await?;
                    eprintln!(
                        "Executed {} statements ({} bytes); the database is {} bytes.",
                        r.statements, r.bytes, r.size_after
                    );
                }
                (None, None) => return Err("pass --command SQL or --file FILE".into()),
            }
            reg.close().await;
        }
        D1Command::Export {
            database,
            output,
            no_data,
            no_schema,
            data,
        } => {
            let reg = registry(&data);
            let db = reg.d1(&database).await.map_err(registry_error)?;
            let mut stream = db
                .export(D1ExportOptions {
                    tables: Vec::new(),
                    no_schema,
                    no_data,
                })
                .await?;
            let mut out =
                std::fs::File::create(&output).map_err(|e| format!("{}: {e}", output.display()))?;
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk?)?;
            }
            out.sync_all()?;
            eprintln!("Exported {database} to {}", output.display());
        }
        D1Command::TimeTravel { command } => match command {
            TimeTravelCommand::Info {
                database,
                timestamp,
                data,
            } => {
                let db = registry(&data)
                    .d1(&database)
                    .await
                    .map_err(registry_error)?;
                let bookmark = match timestamp {
                    Some(t) => db.bookmark_at(t).await?,
                    None => db.bookmark().await?,
                };
                println!("{bookmark}");
            }
            TimeTravelCommand::Restore {
                database,
                bookmark,
                timestamp,
                data,
            } => {
                let target = match (bookmark, timestamp) {
                    (Some(b), _) => D1RestoreTarget::Bookmark(b),
                    (None, Some(t)) => D1RestoreTarget::TimestampMs(t),
                    (None, None) => return Err("pass --bookmark B or --timestamp MS".into()),
                };
                let db = registry(&data)
                    .d1(&database)
                    .await
                    .map_err(registry_error)?;
                let r = db.restore(target).await?;
                println!(
                    "restored to {}; undo with --bookmark {}",
                    r.bookmark, r.previous_bookmark
                );
            }
        },
        D1Command::List { data } => {
            let catalog = registry(&data).d1_catalog().await?;
            for name in catalog.list().await? {
                println!("{name}");
            }
        }
    }
    Ok(())
}

fn registry_error<E: std::error::Error + Send + Sync + 'static>(
    e: crate::registry::RegistryError<E>,
) -> Box<dyn std::error::Error> {
    match e {
        crate::registry::RegistryError::Server(e) => Box::new(e),
        crate::registry::RegistryError::Store(e) => Box::new(e),
    }
}

fn notification(command: NotificationCommand) -> CliResult {
    use crate::notifications::{Rule, Rules, event_type};
    match command {
        NotificationCommand::Create {
            bucket,
            event_types,
            queue,
            prefix,
            suffix,
            data,
        } => {
            for t in &event_types {
                event_type(t)?;
            }
            bindery_core::r2::validate_bucket_name(&bucket)?;
            bindery_core::queues::validate_queue_name(&queue)?;
            let mut rules = Rules::load(&data)?;
            rules.rules.push(Rule {
                bucket: bucket.clone(),
                queue: queue.clone(),
                event_types,
                prefix,
                suffix,
            });
            rules.save(&data)?;
            eprintln!("Events of {bucket} go to queue {queue} (from the next `bindery serve`).");
        }
        NotificationCommand::List { bucket, data } => {
            let rules: Vec<Rule> = Rules::load(&data)?
                .rules
                .into_iter()
                .filter(|r| r.bucket == bucket)
                .collect();
            println!("{}", serde_json::to_string_pretty(&rules)?);
        }
        NotificationCommand::Delete {
            bucket,
            queue,
            data,
        } => {
            let mut rules = Rules::load(&data)?;
            let before = rules.rules.len();
            rules
                .rules
                .retain(|r| !(r.bucket == bucket && r.queue == queue));
            if rules.rules.len() == before {
                return Err(format!("no rule sends events of {bucket} to {queue}").into());
            }
            rules.save(&data)?;
            eprintln!("Removed the rules sending events of {bucket} to {queue}.");
        }
    }
    Ok(())
}

fn split_object_path(path: &str) -> Result<(&str, &str), Box<dyn std::error::Error>> {
    path.split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(|| format!("{path:?} is not <bucket>/<key>").into())
}

/// Runs `bindery r2 ...`.
///
/// # Errors
///
/// What the bucket or the arguments refused.
pub async fn r2(command: R2Command) -> CliResult {
    match command {
        R2Command::Bucket { command } => match command {
            R2BucketCommand::Create { name, data } => {
                registry(&data)
                    .r2_store()
                    .await?
                    .create_bucket(&name)
                    .await?;
                eprintln!("Created bucket {name}.");
            }
            R2BucketCommand::List { data } => {
                for b in registry(&data).r2_store().await?.list_buckets().await? {
                    println!("{}", b.name);
                }
            }
            R2BucketCommand::Delete { name, data } => {
                registry(&data)
                    .r2_store()
                    .await?
                    .delete_bucket(&name)
                    .await?;
                eprintln!("Deleted bucket {name}.");
            }
            R2BucketCommand::Notification { command } => notification(command)?,
        },
        R2Command::Object { command } => match command {
            R2ObjectCommand::Put {
                path,
                file,
                content_type,
                data,
            } => {
                let (bucket, key) = split_object_path(&path)?;
                let b = registry(&data).r2(bucket).await.map_err(registry_error)?;
                let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                let mut options = bindery_core::r2::PutOptions::default();
                options.http_metadata.content_type = content_type;
                let o = b
                    .put(key, R2Body::Bytes(Bytes::from(bytes)), options)
                    .await?
                    .ok_or("the put's condition did not hold")?;
                eprintln!("Uploaded {path} ({} bytes, etag {}).", o.size, o.etag);
            }
            R2ObjectCommand::Get { path, file, data } => {
                let (bucket, key) = split_object_path(&path)?;
                let store = registry(&data).r2_store().await?;
                let b = store.bucket(bucket).await?;
                let bytes = b
                    .get_bytes(key)
                    .await?
                    .ok_or_else(|| format!("The specified key does not exist: {path}"))?;
                match file {
                    Some(f) => {
                        std::fs::write(&f, &bytes).map_err(|e| format!("{}: {e}", f.display()))?
                    }
                    None => {
                        let mut out = std::io::stdout();
                        out.write_all(&bytes)?;
                        out.flush()?;
                    }
                }
            }
            R2ObjectCommand::Delete { path, data } => {
                let (bucket, key) = split_object_path(&path)?;
                let store = registry(&data).r2_store().await?;
                store.bucket(bucket).await?.delete_one(key).await?;
                eprintln!("Deleted {path}.");
            }
        },
    }
    Ok(())
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

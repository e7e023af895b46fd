//! Reading a Workers project's `wrangler.jsonc`, `wrangler.json` or `wrangler.toml`.
//!
//! Only what Bindery needs is read: the main module, compatibility date and flags, `vars`,
//! `kv_namespaces`, `d1_databases`, `r2_buckets`, `queues` (producers and consumers) and
//! `triggers.crons`. Other keys are ignored. Environments (`[env.x]`) are not applied.
//!
//! Each binding names a Bindery resource: a KV namespace by its `id` (else its binding name),
//! a D1 database by its `database_name` (else `database_id`, else the binding), an R2 bucket by
//! its `bucket_name`, a queue by its name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::registry::{Kind, validate_name};

/// A project configuration that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WranglerError {
    /// No configuration file was found.
    #[error("no wrangler.jsonc, wrangler.json or wrangler.toml in {dir}")]
    NotFound {
        /// The folder searched.
        dir: PathBuf,
    },
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The file-system error.
        source: std::io::Error,
    },
    /// The file is not valid JSONC or TOML, or has keys of the wrong type.
    #[error("cannot parse {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A binding names a resource Bindery cannot store under that name.
    #[error("binding {binding}: resource name {name:?} is not usable: {reason}")]
    BadName {
        /// The binding.
        binding: String,
        /// The resource name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// A `kv_namespaces` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct KvDecl {
    /// The variable name in the Worker.
    pub binding: String,
    /// The namespace id.
    #[serde(default)]
    pub id: Option<String>,
}

/// A `d1_databases` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct D1Decl {
    /// The variable name in the Worker.
    pub binding: String,
    /// The database name.
    #[serde(default)]
    pub database_name: Option<String>,
    /// The database id.
    #[serde(default)]
    pub database_id: Option<String>,
}

/// An `r2_buckets` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct R2Decl {
    /// The variable name in the Worker.
    pub binding: String,
    /// The bucket name.
    #[serde(default)]
    pub bucket_name: Option<String>,
}

/// A `queues.producers` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct ProducerDecl {
    /// The variable name in the Worker.
    pub binding: String,
    /// The queue name.
    pub queue: String,
    /// Default delay of every message, seconds.
    #[serde(default)]
    pub delivery_delay: Option<u64>,
}

/// A `queues.consumers` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ConsumerDecl {
    /// The queue consumed.
    pub queue: String,
    /// `worker` (push, the default) or `http_pull`.
    #[serde(default, rename = "type")]
    pub consumer_type: Option<String>,
    /// Most messages per batch. Default 10.
    #[serde(default)]
    pub max_batch_size: Option<u32>,
    /// Longest wait for a full batch, seconds. Default 5.
    #[serde(default)]
    pub max_batch_timeout: Option<f64>,
    /// Deliveries after the first before a message is dead-lettered or dropped. Default 3.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Default delay of a retry, seconds. Default 0.
    #[serde(default)]
    pub retry_delay: Option<u64>,
    /// Where messages go after the last retry.
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    /// Most batches in flight at once.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}

/// The `queues` table.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct QueuesDecl {
    /// Queue bindings.
    #[serde(default)]
    pub producers: Vec<ProducerDecl>,
    /// Consumers of this Worker.
    #[serde(default)]
    pub consumers: Vec<ConsumerDecl>,
}

/// The `triggers` table.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Triggers {
    /// Cron schedules (5 fields, UTC).
    #[serde(default)]
    pub crons: Vec<String>,
}

/// What Bindery reads from a project's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Wrangler {
    /// The Worker's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The main module, relative to the configuration file.
    #[serde(default)]
    pub main: Option<String>,
    /// The compatibility date.
    #[serde(default)]
    pub compatibility_date: Option<String>,
    /// Compatibility flags.
    #[serde(default)]
    pub compatibility_flags: Vec<String>,
    /// KV bindings.
    #[serde(default)]
    pub kv_namespaces: Vec<KvDecl>,
    /// D1 bindings.
    #[serde(default)]
    pub d1_databases: Vec<D1Decl>,
    /// R2 bindings.
    #[serde(default)]
    pub r2_buckets: Vec<R2Decl>,
    /// Queue producers and consumers.
    #[serde(default)]
    pub queues: QueuesDecl,
    /// Cron triggers.
    #[serde(default)]
    pub triggers: Triggers,
    /// Plain variables: strings become text bindings, other values JSON bindings.
    #[serde(default)]
    pub vars: serde_json::Map<String, Value>,
}

/// A binding of the Worker to a Bindery resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceBinding {
    /// The variable name in the Worker.
    pub binding: String,
    /// The kind of resource.
    pub kind: Kind,
    /// The resource name (the `<name>` of `X-Bindery-Binding`).
    pub name: String,
}

impl Wrangler {
    /// Finds the configuration in `dir`: `wrangler.jsonc`, then `wrangler.json`, then
    /// `wrangler.toml`.
    ///
    /// # Errors
    ///
    /// [`WranglerError::NotFound`] when there is none.
    pub fn find(dir: &Path) -> Result<PathBuf, WranglerError> {
        ["wrangler.jsonc", "wrangler.json", "wrangler.toml"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| WranglerError::NotFound {
                dir: dir.to_owned(),
            })
    }

    /// Reads and parses `path` (TOML if it ends in `.toml`, JSON with comments otherwise).
    ///
    /// # Errors
    ///
    /// [`WranglerError::Read`] or [`WranglerError::Parse`].
    pub fn load(path: &Path) -> Result<Self, WranglerError> {
        let text = std::fs::read_to_string(path).map_err(|source| WranglerError::Read {
            path: path.to_owned(),
            source,
        })?;
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        Self::parse(&text, is_toml).map_err(|reason| WranglerError::Parse {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses configuration text.
    ///
    /// # Errors
    ///
    /// A description of the syntax or type error.
    pub fn parse(text: &str, is_toml: bool) -> Result<Self, String> {
        let value: Value = if is_toml {
            let t: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
            serde_json::to_value(t).map_err(|e| e.to_string())?
        } else {
            serde_json::from_str(&strip_jsonc(text)).map_err(|e| e.to_string())?
        };
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    /// Every resource binding, with the resource names checked.
    ///
    /// # Errors
    ///
    /// [`WranglerError::BadName`] for a name Bindery cannot store.
    pub fn resource_bindings(&self) -> Result<Vec<ResourceBinding>, WranglerError> {
        let mut out = Vec::new();
        for kv in &self.kv_namespaces {
            out.push((
                kv.binding.clone(),
                Kind::Kv,
                kv.id.clone().unwrap_or(kv.binding.clone()),
            ));
        }
        for d1 in &self.d1_databases {
            let name = d1
                .database_name
                .clone()
                .or(d1.database_id.clone())
                .unwrap_or(d1.binding.clone());
            out.push((d1.binding.clone(), Kind::D1, name));
        }
        for r2 in &self.r2_buckets {
            out.push((
                r2.binding.clone(),
                Kind::R2,
                r2.bucket_name.clone().unwrap_or(r2.binding.clone()),
            ));
        }
        for q in &self.queues.producers {
            out.push((q.binding.clone(), Kind::Queue, q.queue.clone()));
        }
        out.into_iter()
            .map(|(binding, kind, name)| {
                validate_name(&name).map_err(|reason| WranglerError::BadName {
                    binding: binding.clone(),
                    name: name.clone(),
                    reason,
                })?;
                Ok(ResourceBinding {
                    binding,
                    kind,
                    name,
                })
            })
            .collect()
    }

    /// Every resource the project declares: its bindings, its consumers' queues and their
    /// dead-letter queues.
    ///
    /// # Errors
    ///
    /// [`WranglerError::BadName`] for a name Bindery cannot store.
    pub fn declared(&self) -> Result<BTreeSet<(Kind, String)>, WranglerError> {
        let mut set: BTreeSet<(Kind, String)> = self
            .resource_bindings()?
            .into_iter()
            .map(|b| (b.kind, b.name))
            .collect();
        for c in &self.queues.consumers {
            set.insert((Kind::Queue, c.queue.clone()));
            if let Some(dlq) = &c.dead_letter_queue {
                set.insert((Kind::Queue, dlq.clone()));
            }
        }
        Ok(set)
    }

    /// The KV namespace name for a binding, if the project has one by that name.
    pub fn kv_name(&self, binding: &str) -> Option<String> {
        self.kv_namespaces
            .iter()
            .find(|k| k.binding == binding)
            .map(|k| k.id.clone().unwrap_or(k.binding.clone()))
    }
}

/// Removes `//` and `/* */` comments and trailing commas from JSON text, leaving strings
/// untouched.
pub fn strip_jsonc(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            out.push(c);
            i += 1;
            while i < chars.len() {
                let d = chars[i];
                out.push(d);
                i += 1;
                if d == '\\' && i < chars.len() {
                    out.push(chars[i]);
                    i += 1;
                } else if d == '"' {
                    break;
                }
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == ',' {
            // A comma followed only by blanks and comments before a closing bracket.
            let mut j = i + 1;
            loop {
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if chars.get(j) == Some(&'/') && chars.get(j + 1) == Some(&'/') {
                    while j < chars.len() && chars[j] != '\n' {
                        j += 1;
                    }
                } else if chars.get(j) == Some(&'/') && chars.get(j + 1) == Some(&'*') {
                    j += 2;
                    while j < chars.len() && !(chars[j] == '*' && chars.get(j + 1) == Some(&'/')) {
                        j += 1;
                    }
                    j += 2;
                } else {
                    break;
                }
            }
            if !matches!(chars.get(j), Some('}') | Some(']')) {
                out.push(c);
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonc_comments_and_trailing_commas_are_removed() {
        let text = r#"{
            // a comment
            "name": "x // not a comment", /* block */
            "list": [1, 2, /* c */ ],
            "o": {"a": "\"/*\"",},
        }"#;
        let v: Value = serde_json::from_str(&strip_jsonc(text)).unwrap();
        assert_eq!(v["name"], "x // not a comment");
        assert_eq!(v["list"], serde_json::json!([1, 2]));
        assert_eq!(v["o"]["a"], "\"/*\"");
    }

    #[test]
    fn jsonc_and_toml_give_the_same_bindings() {
        let jsonc = r#"{
          "name": "app", "main": "src/index.js", "compatibility_date": "2025-01-01",
          "kv_namespaces": [{"binding": "KV", "id": "abc123"}],
          "d1_databases": [{"binding": "DB", "database_name": "prod-db", "database_id": "x"}],
          "r2_buckets": [{"binding": "R2", "bucket_name": "files"}],
          "queues": {"producers": [{"binding": "Q", "queue": "jobs"}],
                     "consumers": [{"queue": "jobs", "max_retries": 2, "dead_letter_queue": "dlq"}]},
          "triggers": {"crons": ["*/5 * * * *"]},
          "vars": {"GREETING": "hi", "N": 3},
        }"#;
        let toml = r#"
            name = "app"
            main = "src/index.js"
            compatibility_date = "2025-01-01"
            kv_namespaces = [{ binding = "KV", id = "abc123" }]
            [[d1_databases]]
            binding = "DB"
            database_name = "prod-db"
            database_id = "x"
            [[r2_buckets]]
            binding = "R2"
            bucket_name = "files"
            [[queues.producers]]
            binding = "Q"
            queue = "jobs"
            [[queues.consumers]]
            queue = "jobs"
            max_retries = 2
            dead_letter_queue = "dlq"
            [triggers]
            crons = ["*/5 * * * *"]
            [vars]
            GREETING = "hi"
            N = 3
        "#;
        let a = Wrangler::parse(jsonc, false).unwrap();
        let b = Wrangler::parse(toml, true).unwrap();
        assert_eq!(
            a.resource_bindings().unwrap(),
            b.resource_bindings().unwrap()
        );
        assert_eq!(a.declared().unwrap(), b.declared().unwrap());
        assert_eq!(a.queues.consumers, b.queues.consumers);
        assert_eq!(a.triggers.crons, b.triggers.crons);
        assert_eq!(a.vars, b.vars);
        assert!(
            a.declared()
                .unwrap()
                .contains(&(Kind::Queue, "dlq".to_owned()))
        );
        assert_eq!(a.kv_name("KV").as_deref(), Some("abc123"));
    }

    #[test]
    fn unusable_resource_names_are_reported_with_their_binding() {
        let w = Wrangler::parse(
            r#"{"r2_buckets":[{"binding":"B","bucket_name":"../x"}]}"#,
            false,
        )
        .unwrap();
        let err = w.resource_bindings().unwrap_err().to_string();
        assert!(err.contains("binding B"), "{err}");
    }
}

//! `bindery workerd-config`: a workerd config that runs a project's Worker with every storage
//! binding pointed at a running `bindery serve`.
//!
//! Each resource becomes an `external` service whose requests carry
//! `X-Bindery-Binding: <kind>/<name>` (and `Authorization: Bearer <token>` with a token);
//! `vars` become text or JSON bindings. When the project has queue consumers or cron
//! triggers, Bindery's driver Worker is added (written beside the config as
//! `bindery-driver.js`) on its own socket; it needs `workerd serve --experimental`.

use std::path::{Component, Path, PathBuf};

use crate::registry::Kind;
use crate::wrangler::{Wrangler, WranglerError};

/// The driver Worker's source.
pub const DRIVER_JS: &str = include_str!("driver.js");

/// The file name of the driver Worker, written beside the config.
pub const DRIVER_FILE: &str = "bindery-driver.js";

/// What the generated config points at.
#[derive(Debug, Clone)]
pub struct WorkerdOptions {
    /// Address of `bindery serve` (`host:port`).
    pub bindery: String,
    /// Bearer token to inject, if the server has one.
    pub token: Option<String>,
    /// Address of the Worker's HTTP socket.
    pub listen: String,
    /// Address of the driver Worker's socket.
    pub driver_listen: String,
    /// The main module, overriding the configuration's `main`.
    pub main: Option<PathBuf>,
}

impl Default for WorkerdOptions {
    fn default() -> Self {
        Self {
            bindery: "127.0.0.1:8787".to_owned(),
            token: None,
            listen: "127.0.0.1:8080".to_owned(),
            driver_listen: "127.0.0.1:8788".to_owned(),
            main: None,
        }
    }
}

/// Why a config could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The project configuration is invalid.
    #[error(transparent)]
    Wrangler(#[from] WranglerError),
    /// The project has no main module.
    #[error("the configuration has no `main` module; set it or pass --main")]
    NoMain,
    /// The main module is not JavaScript.
    #[error(
        "main module {0} is not JavaScript (.js or .mjs); build the Worker first (for example `npx wrangler deploy --dry-run --outdir dist`) and pass the output with --main"
    )]
    NotJavaScript(PathBuf),
    /// A file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The file-system error.
        source: std::io::Error,
    },
}

/// A generated config.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The capnp text.
    pub capnp: String,
    /// Whether the driver Worker is part of it (workerd then needs `--experimental`).
    pub with_driver: bool,
}

/// A capnp text literal.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `path` relative to the folder `base` (both absolute), with `/` separators.
fn relative(path: &Path, base: &Path) -> String {
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = Vec::new();
    for _ in common..b.len() {
        parts.push("..".to_owned());
    }
    for c in &p[common..] {
        parts.push(c.as_os_str().to_string_lossy().into_owned());
    }
    parts.join("/")
}

fn absolute(path: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path)
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })
}

/// The module kind of a file, by extension.
fn module_kind(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()? {
        "js" | "mjs" => Some("esModule"),
        "cjs" => Some("commonJsModule"),
        "wasm" => Some("wasm"),
        "json" => Some("json"),
        "txt" | "html" | "sql" => Some("text"),
        "bin" => Some("data"),
        _ => None,
    }
}

/// The main module and the other module files beside it (recursively, without
/// `node_modules` and hidden folders), main first.
fn collect_modules(main: &Path, skip: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let root = main.parent().unwrap_or(Path::new("/")).to_owned();
    let mut out = vec![main.to_owned()];
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| ConfigError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            let name = name.unwrap_or_default();
            if name.starts_with('.') || name == "node_modules" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p != main && !skip.contains(&p) && module_kind(&p).is_some() {
                out.push(p);
            }
            if out.len() > 1000 {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

/// Generates the config for the project at `wrangler_path`, to be written at `out`.
///
/// # Errors
///
/// Any [`ConfigError`].
pub fn generate(
    wrangler: &Wrangler,
    wrangler_path: &Path,
    out: &Path,
    options: &WorkerdOptions,
) -> Result<Generated, ConfigError> {
    let project_dir = absolute(wrangler_path)?
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default();
    let out_abs = std::path::absolute(out).map_err(|source| ConfigError::Io {
        path: out.to_owned(),
        source,
    })?;
    let out_dir = out_abs.parent().map(Path::to_owned).unwrap_or_default();
    let out_dir = std::fs::canonicalize(&out_dir).unwrap_or(out_dir);
    let main = match &options.main {
        Some(m) => absolute(m)?,
        None => absolute(&project_dir.join(wrangler.main.as_deref().ok_or(ConfigError::NoMain)?))?,
    };
    if !matches!(module_kind(&main), Some("esModule")) {
        return Err(ConfigError::NotJavaScript(main));
    }
    if !main.is_file() {
        return Err(ConfigError::Io {
            path: main.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "main module not found"),
        });
    }
    let skip = vec![out_dir.join(DRIVER_FILE), out_abs.clone()];
    let modules = collect_modules(&main, &skip)?;
    let module_root = main.parent().unwrap_or(Path::new("/")).to_owned();

    let bindings = wrangler.resource_bindings()?;
    let with_driver = !wrangler.queues.consumers.is_empty() || !wrangler.triggers.crons.is_empty();

    let mut services = vec!["    (name = \"main\", worker = .mainWorker),".to_owned()];
    if with_driver {
        services.push("    (name = \"bindery-driver\", worker = .driverWorker),".to_owned());
    }
    let mut seen = std::collections::BTreeSet::new();
    for b in &bindings {
        if !seen.insert((b.kind, b.name.clone())) {
            continue;
        }
        let mut headers = vec![format!(
            "(name = \"X-Bindery-Binding\", value = {})",
            text(&format!("{}/{}", b.kind.as_str(), b.name))
        )];
        if let Some(token) = &options.token {
            headers.push(format!(
                "(name = \"Authorization\", value = {})",
                text(&format!("Bearer {token}"))
            ));
        }
        services.push(format!(
            "    (name = {}, external = (address = {}, http = (injectRequestHeaders = [{}]))),",
            text(&service_name(b.kind, &b.name)),
            text(&options.bindery),
            headers.join(", ")
        ));
    }

    let mut sockets = vec![format!(
        "    (name = \"http\", address = {}, http = (), service = \"main\"),",
        text(&options.listen)
    )];
    if with_driver {
        sockets.push(format!(
            "    (name = \"bindery-driver\", address = {}, http = (), service = \"bindery-driver\"),",
            text(&options.driver_listen)
        ));
    }

    let module_lines: Vec<String> = modules
        .iter()
        .map(|m| {
            format!(
                "    (name = {}, {} = embed {}),",
                text(&relative(m, &module_root)),
                module_kind(m).unwrap_or("esModule"),
                text(&relative(m, &out_dir))
            )
        })
        .collect();

    let mut binding_lines = Vec::new();
    for (name, value) in &wrangler.vars {
        match value {
            serde_json::Value::String(s) => {
                binding_lines.push(format!("    (name = {}, text = {}),", text(name), text(s)));
            }
            other => binding_lines.push(format!(
                "    (name = {}, json = {}),",
                text(name),
                text(&other.to_string())
            )),
        }
    }
    for b in &bindings {
        let service = text(&service_name(b.kind, &b.name));
        let line = match b.kind {
            Kind::Kv => format!(
                "    (name = {}, kvNamespace = {service}),",
                text(&b.binding)
            ),
            Kind::R2 => format!("    (name = {}, r2Bucket = {service}),", text(&b.binding)),
            Kind::Queue => format!("    (name = {}, queue = {service}),", text(&b.binding)),
            Kind::D1 => format!(
                "    (name = {}, wrapped = (moduleName = \"cloudflare-internal:d1-api\", innerBindings = [(name = \"fetcher\", service = {service})])),",
                text(&b.binding)
            ),
        };
        binding_lines.push(line);
    }

    let compat_date = wrangler
        .compatibility_date
        .clone()
        .unwrap_or_else(|| "2025-01-01".to_owned());
    let flags: Vec<String> = wrangler
        .compatibility_flags
        .iter()
        .map(|f| text(f))
        .collect();

    let mut capnp = String::new();
    capnp.push_str("# Generated by `bindery workerd-config`; edits are overwritten.\n");
    capnp.push_str("using Workerd = import \"/workerd/workerd.capnp\";\n\n");
    capnp.push_str("const config :Workerd.Config = (\n  services = [\n");
    capnp.push_str(&services.join("\n"));
    capnp.push_str("\n  ],\n  sockets = [\n");
    capnp.push_str(&sockets.join("\n"));
    capnp.push_str("\n  ],\n);\n\n");
    capnp.push_str("const mainWorker :Workerd.Worker = (\n  modules = [\n");
    capnp.push_str(&module_lines.join("\n"));
    capnp.push_str(&format!(
        "\n  ],\n  compatibilityDate = {},\n  compatibilityFlags = [{}],\n  bindings = [\n",
        text(&compat_date),
        flags.join(", ")
    ));
    capnp.push_str(&binding_lines.join("\n"));
    capnp.push_str("\n  ],\n);\n");
    if with_driver {
        let mut driver_bindings = vec!["(name = \"CONSUMER\", service = \"main\")".to_owned()];
        if let Some(token) = &options.token {
            driver_bindings.push(format!(
                "(name = \"BINDERY_TOKEN\", text = {})",
                text(token)
            ));
        }
        capnp.push_str(&format!(
            "\nconst driverWorker :Workerd.Worker = (\n  modules = [(name = \"driver.js\", esModule = embed {})],\n  compatibilityDate = \"2025-01-01\",\n  compatibilityFlags = [\"service_binding_extra_handlers\"],\n  bindings = [{}],\n);\n",
            text(DRIVER_FILE),
            driver_bindings.join(", ")
        ));
    }
    Ok(Generated { capnp, with_driver })
}

/// The workerd service name of a resource.
pub fn service_name(kind: Kind, name: &str) -> String {
    format!("bindery-{}-{name}", kind.as_str())
}

/// Generates the config and writes it to `out` (and the driver beside it when needed).
///
/// # Errors
///
/// Any [`ConfigError`].
pub fn write(
    wrangler_path: &Path,
    out: &Path,
    options: &WorkerdOptions,
) -> Result<Generated, ConfigError> {
    let wrangler = Wrangler::load(wrangler_path)?;
    let generated = generate(&wrangler, wrangler_path, out, options)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ConfigError::Io { path, source }
    };
    std::fs::write(out, &generated.capnp).map_err(io(out))?;
    if generated.with_driver {
        let driver = out.parent().unwrap_or(Path::new(".")).join(DRIVER_FILE);
        std::fs::write(&driver, DRIVER_JS).map_err(io(&driver))?;
    }
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_out_of_the_base() {
        assert_eq!(
            relative(Path::new("/a/b/src/index.js"), Path::new("/a/b")),
            "src/index.js"
        );
        assert_eq!(
            relative(Path::new("/a/src/x.js"), Path::new("/a/out")),
            "../src/x.js"
        );
    }

    #[test]
    fn capnp_text_escapes_quotes_and_backslashes() {
        assert_eq!(text("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }

    #[test]
    fn every_binding_gets_an_external_service_with_its_header() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/index.js"), "export default {}").unwrap();
        std::fs::write(dir.path().join("src/util.mjs"), "export const x = 1").unwrap();
        let w = Wrangler::parse(
            r#"{"main":"src/index.js","compatibility_date":"2025-01-01",
                "kv_namespaces":[{"binding":"KV","id":"ns1"}],
                "d1_databases":[{"binding":"DB","database_name":"db1"}],
                "triggers":{"crons":["* * * * *"]},
                "vars":{"A":"x\"y","B":{"n":1}}}"#,
            false,
        )
        .unwrap();
        let options = WorkerdOptions {
            token: Some("t0k".into()),
            ..Default::default()
        };
        let g = generate(
            &w,
            &dir.path().join("wrangler.jsonc"),
            &dir.path().join("config.capnp"),
            &options,
        )
        .unwrap();
        let c = &g.capnp;
        assert!(g.with_driver);
        assert!(c.contains("value = \"kv/ns1\""), "{c}");
        assert!(c.contains("value = \"d1/db1\""), "{c}");
        assert!(c.contains("value = \"Bearer t0k\""), "{c}");
        assert!(
            c.contains("(name = \"KV\", kvNamespace = \"bindery-kv-ns1\")"),
            "{c}"
        );
        assert!(c.contains("cloudflare-internal:d1-api"), "{c}");
        assert!(
            c.contains("(name = \"index.js\", esModule = embed \"src/index.js\")"),
            "{c}"
        );
        assert!(
            c.contains("(name = \"util.mjs\", esModule = embed \"src/util.mjs\")"),
            "{c}"
        );
        assert!(c.contains("(name = \"A\", text = \"x\\\"y\")"), "{c}");
        assert!(c.contains("service_binding_extra_handlers"), "{c}");
        let main_pos = c.find("index.js").unwrap();
        assert!(main_pos < c.find("util.mjs").unwrap(), "main comes first");
    }
}

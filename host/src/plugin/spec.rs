//! `--plugin NAME_OR_PATH[,key=value]...`: parsing, lookup and the shipped-plugin list.
//!
//! A value containing `/` (or ending in `.so`) is a path. A bare name `N` is looked up as
//! `libblockscope_N.so` and `N.so` (in that order), first in the directory of the
//! blockscope executable, then in each directory of `BLOCKSCOPE_PLUGIN_PATH` (colon-
//! separated; the caller passes it in, since only `config` reads the environment).

use super::PluginError;
use std::path::{Path, PathBuf};

/// One `--plugin` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginSpec {
    /// Name or path as given.
    pub name_or_path: String,
    /// `key=value` arguments in order.
    pub args: Vec<(String, String)>,
}

/// The plugins that come with blockscope, in listing order.
pub const SHIPPED: &[&str] = &["count", "coverage", "memtrace", "profile"];

/// Parse `NAME_OR_PATH[,key=value]...`. A bare `key` means `key=on`.
pub fn parse_spec(s: &str) -> Result<PluginSpec, PluginError> {
    let bad =
        |reason: &str| PluginError::BadSpec { spec: s.to_string(), reason: reason.to_string() };
    let mut parts = s.split(',');
    let name = parts.next().unwrap_or("").trim();
    if name.is_empty() {
        return Err(bad("no plugin name or path"));
    }
    let mut args = Vec::new();
    for p in parts {
        if p.is_empty() {
            continue;
        }
        let (k, v) = p.split_once('=').unwrap_or((p, "on"));
        if k.is_empty() {
            return Err(bad("an argument has an empty key"));
        }
        args.push((k.to_string(), v.to_string()));
    }
    Ok(PluginSpec { name_or_path: name.to_string(), args })
}

/// Whether `s` names a file rather than a plugin.
fn is_path(s: &str) -> bool {
    s.contains('/') || s.ends_with(".so")
}

/// The library file for `name_or_path`.
pub fn resolve(
    name_or_path: &str,
    exe_dir: Option<&Path>,
    search: &[PathBuf],
) -> Result<PathBuf, PluginError> {
    if is_path(name_or_path) {
        let p = PathBuf::from(name_or_path);
        if p.is_file() {
            return Ok(p);
        }
        return Err(PluginError::NotFound { what: name_or_path.to_string(), searched: vec![] });
    }
    let under = name_or_path.replace('-', "_");
    let files = [
        format!("libblockscope_{name_or_path}.so"),
        format!("libblockscope_{under}.so"),
        format!("{name_or_path}.so"),
    ];
    let dirs: Vec<&Path> = exe_dir.into_iter().chain(search.iter().map(|p| p.as_path())).collect();
    for d in &dirs {
        for f in &files {
            let p = d.join(f);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(PluginError::NotFound {
        what: name_or_path.to_string(),
        searched: dirs.iter().map(|d| d.to_path_buf()).collect(),
    })
}

/// Split a `BLOCKSCOPE_PLUGIN_PATH` value.
pub fn split_search_path(v: &str) -> Vec<PathBuf> {
    v.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect()
}

/// The text `blockscope plugins` prints: each shipped plugin with its description and
/// arguments, read from the library itself (without installing it).
pub fn list_shipped(exe_dir: Option<&Path>, search: &[PathBuf]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for name in SHIPPED {
        let lib =
            resolve(name, exe_dir, search).and_then(|p| super::load::open(&p).map(|v| (p, v)));
        match lib {
            Ok((path, (vt, _))) => {
                let desc =
                    String::from_utf8_lossy(vt.description.as_rslice().as_slice()).into_owned();
                let _ = writeln!(out, "{name:<10} {desc}");
                let _ = writeln!(out, "{:<10} ({})", "", path.display());
                for a in vt.args.as_slice() {
                    let s = |r: abi_stable::std_types::RStr<'_>| {
                        String::from_utf8_lossy(r.as_rslice().as_slice()).into_owned()
                    };
                    let default = s(a.default);
                    let key = if default.is_empty() {
                        s(a.name)
                    } else {
                        format!("{}={}", s(a.name), default)
                    };
                    let _ = writeln!(out, "{:<10}   {key:<22} {}", "", s(a.help));
                }
            }
            Err(e) => {
                let _ = writeln!(out, "{name:<10} (unavailable: {e})");
            }
        }
    }
    out
}

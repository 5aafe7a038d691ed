//! The module dependency rule (DESIGN.md, STYLE.md §2.1): arrows point down the module
//! table, never up. Each `host/src/<module>/**.rs` may name only the modules listed for it
//! via `crate::<module>`; a violation names the file, line and edge.

use std::path::Path;

/// module → modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("cpu", &[]),
    ("mem", &["cpu"]),
    // `ir` and `frontend` name the `GuestMemory` *trait* (helper context, code fetch);
    // a memory model (Direct, SoftMmu) is never named there (checked below).
    ("ir", &["cpu", "mem"]),
    ("frontend", &["ir", "cpu", "mem"]),
    ("backend", &["ir", "cpu", "mem"]),
    ("plugin", &["ir", "cpu", "mem", "config"]),
    ("exec", &["cpu", "ir", "frontend", "backend", "mem", "plugin", "config"]),
    ("user", &["exec", "mem", "cpu", "ir", "frontend", "backend", "plugin", "config"]),
    ("system", &["exec", "mem", "cpu", "ir", "frontend", "backend", "plugin", "config"]),
];

const MODULES: &[&str] = &[
    "cpu", "mem", "ir", "frontend", "backend", "plugin", "exec", "user", "system", "config", "cli",
];

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn modules_only_use_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src");
    let mut violations = Vec::new();
    let mut checked = 0;
    for (module, allowed) in ALLOWED {
        let mut files = Vec::new();
        rs_files(&src.join(module), &mut files);
        let single = src.join(format!("{module}.rs"));
        if single.exists() {
            files.push(single);
        }
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            checked += 1;
            for (ln, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for other in MODULES {
                    if other == module {
                        continue;
                    }
                    let pat = format!("crate::{other}");
                    let mut rest = code;
                    while let Some(i) = rest.find(&pat) {
                        let after = rest[i + pat.len()..].chars().next();
                        let whole = !after.is_some_and(|c| c.is_alphanumeric() || c == '_');
                        if whole && !allowed.contains(other) {
                            violations.push(format!(
                                "{}:{}: `{module}` uses `{other}`",
                                f.strip_prefix(&src).unwrap_or(&f).display(),
                                ln + 1
                            ));
                        }
                        rest = &rest[i + pat.len()..];
                    }
                }
                if matches!(*module, "ir" | "frontend")
                    && (code.contains("Direct") && code.contains("mem::")
                        || code.contains("SoftMmu"))
                {
                    violations.push(format!(
                        "{}:{}: `{module}` names a memory model",
                        f.strip_prefix(&src).unwrap_or(&f).display(),
                        ln + 1
                    ));
                }
            }
        }
    }
    assert!(checked > 10, "found only {checked} files: is host/src where this test expects it?");
    assert!(violations.is_empty(), "layering violations:\n{}", violations.join("\n"));
}

//! The layering rules of ARCHITECTURE.md, checked over the source: every `crate::` path in every
//! file under `src/` (tests included, comments excluded) must name a module its own module may
//! import. Breaking a rule fails this test with the file, the line and the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may import, bottom layer first. Keep in step with
/// "Layers" in ARCHITECTURE.md.
const RULES: &[(&str, &[&str])] = &[
    ("util", &[]),
    ("rules", &["util"]),
    ("model", &["rules", "util"]),
    ("api", &["model", "rules", "util"]),
    ("batch", &["api", "model", "rules", "util"]),
    ("report", &["model", "rules", "util"]),
    ("store", &["model", "util"]),
    ("engine", &["api", "store", "model", "rules", "util"]),
    ("config", &["batch", "api", "model", "rules", "util"]),
    ("inbox", &["util"]),
    ("jobs", &["config", "inbox", "store", "model", "rules", "util"]),
    (
        "notify",
        &["config", "report", "store", "api", "model", "rules", "util"],
    ),
    (
        "app",
        &[
            "notify", "engine", "batch", "report", "store", "config", "api", "model", "rules", "util",
        ],
    ),
    (
        "console",
        &[
            "app", "engine", "batch", "report", "store", "config", "api", "model", "rules", "util",
        ],
    ),
    (
        "daemon",
        &[
            "console", "app", "notify", "jobs", "inbox", "engine", "batch", "report", "store", "config", "api",
            "model", "rules", "util",
        ],
    ),
    (
        "cli",
        &[
            "daemon", "console", "app", "notify", "jobs", "inbox", "engine", "batch", "report", "store", "config",
            "api", "model", "rules", "util", "sandbox",
        ],
    ),
    ("sandbox", &["api", "model", "rules", "util"]),
    (
        "sim",
        &[
            "app", "engine", "batch", "report", "store", "config", "api", "model", "rules", "util", "sandbox",
        ],
    ),
];

/// Files that may name any module: the crate root and the binary.
const ROOTS: &[&str] = &["lib.rs", "main.rs"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `src/engine/runner.rs` → `engine`, `src/config.rs`
/// → `config`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_owned()
}

/// The code of a line without its `//` comment (a `//` inside a string literal is rare enough
/// in this code base to ignore; it can only hide a path, never invent one).
fn code_of(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// The top-level modules named by `crate::` paths in `code`, including every branch of
/// `crate::{a, b::c}` groups.
fn named_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        // `ccpayout_crate::` or `foo_crate::` are not paths into this crate.
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != "self" {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

fn violations() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rules: BTreeMap<&str, BTreeSet<&str>> = RULES
        .iter()
        .map(|(module, allowed)| (*module, allowed.iter().copied().collect()))
        .collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src").display().to_string();
        if ROOTS.contains(&rel.as_str()) {
            continue;
        }
        let module = module_of(&src, &file);
        let Some(allowed) = rules.get(module.as_str()) else {
            found.push(format!(
                "src/{rel}: the module `{module}` has no layer; add it to ARCHITECTURE.md and to RULES in tests/it/layers.rs"
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        for (n, line) in text.lines().enumerate() {
            for named in named_modules(code_of(line)) {
                if named != module && !allowed.contains(named.as_str()) {
                    found.push(format!(
                        "src/{rel}:{}: `{module}` may not import `{named}` (it may import: {})",
                        n + 1,
                        allowed.iter().copied().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let found = violations();
    assert!(
        found.is_empty(),
        "{} layering violations:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_path_reader_sees_groups_and_ignores_lookalikes() {
    assert_eq!(
        named_modules("use crate::{engine::Engine, store, self};"),
        ["engine", "store"]
    );
    assert_eq!(
        named_modules("let x = crate::api::Client::new(); y::crate::z"),
        ["api", "z"]
    );
    assert_eq!(named_modules("foo_crate::bar and crate::util"), ["util"]);
    assert!(named_modules(code_of("let a = 1; // see crate::engine")).is_empty());
}

#[test]
fn every_layer_in_the_rules_exists_and_only_names_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known: BTreeSet<&str> = RULES.iter().map(|(m, _)| *m).collect();
    for (module, allowed) in RULES {
        assert!(
            src.join(format!("{module}.rs")).exists() || src.join(module).join("mod.rs").exists(),
            "no module {module}"
        );
        for other in *allowed {
            assert!(
                known.contains(other),
                "{module} may import {other}, which is not a layer"
            );
            assert_ne!(module, other);
        }
    }
}

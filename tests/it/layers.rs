//! The layers, checked on the source: each module imports only the layers below it.
//! entry (main, cli, users_cli, app, config, seed, csvio, bench, testkit) → web → ventes / monitor /
//! sync / auth → store → domain. Web names nothing of `store` but `StoreError`; domain imports nothing above.

use std::path::{Path, PathBuf};

/// A layer and its rank: a module may import modules of its own rank or below.
fn layer(module: &str) -> Option<(&'static str, u8)> {
    Some(match module {
        "domain" => ("domain", 0),
        "store" => ("store", 1),
        "ventes" | "monitor" | "sync" | "auth" => ("service", 2),
        "web" => ("web", 3),
        "main" | "lib" | "cli" | "users_cli" | "app" | "config" | "seed" | "csvio" | "bench" | "testkit" => ("entry", 4),
        _ => return None,
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<module>…` path named in `source` (in `use` lines and inline paths alike), with
/// what follows it (to tell `crate::store::StoreError` from other store names).
fn crate_paths(source: &str) -> Vec<String> {
    let re = regex::Regex::new(r"crate::([a-z_]+)((?:::\{?[A-Za-z_:{}, ]*)?)").unwrap();
    source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .flat_map(|line| re.captures_iter(line).map(|c| format!("{}{}", &c[1], &c[2])).collect::<Vec<_>>())
        .collect()
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
        let Some((name, rank)) = layer(&top) else {
            broken.push(format!("{}: module `{top}` is in no layer", relative.display()));
            continue;
        };
        let source = std::fs::read_to_string(file).unwrap();
        for path in crate_paths(&source) {
            let target = path.split("::").next().unwrap().to_owned();
            let Some((target_name, target_rank)) = layer(&target) else {
                broken.push(format!("{}: `crate::{path}` names a module in no layer", relative.display()));
                continue;
            };
            if target_rank > rank {
                broken.push(format!("{}: {name} imports `crate::{path}` ({target_name}, a layer above)", relative.display()));
            }
            if name == "web" && target == "store" {
                let names: Vec<&str> = path
                    .trim_start_matches("store")
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .filter(|n| !n.is_empty())
                    .collect();
                if names != ["StoreError"] {
                    broken.push(format!("{}: web names `crate::{path}`; only `StoreError` of store is allowed", relative.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "layer violations:\n{}", broken.join("\n"));
}

#[test]
fn no_source_file_is_over_500_lines_outside_bench_and_testkit() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| {
            let relative = f.strip_prefix(&src).unwrap();
            !relative.starts_with("bench") && !relative.starts_with("testkit") && relative != Path::new("bench.rs")
        })
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > 500).then(|| format!("{}: {lines} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over 500 lines:\n{}", long.join("\n"));
}

#[test]
fn the_checker_sees_a_forbidden_import() {
    // The checker itself: a store line naming the engine, and web naming a store type.
    assert_eq!(crate_paths("use crate::sync::engine::Engine;"), ["sync::engine::Engine"]);
    assert_eq!(crate_paths("    use crate::store::{Store, StoreError};"), ["store::{Store, StoreError}"]);
    assert_eq!(crate_paths("// use crate::web::x;"), Vec::<String>::new());
    assert!(layer("sync").unwrap().1 > layer("store").unwrap().1);
}

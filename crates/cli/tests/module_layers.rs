//! No import circle between the modules of any crate of the workspace.
//!
//! Reads every `crates/*/src` tree, takes each module's `crate::` paths (outside its
//! `#[cfg(test)]` part) as edges to sibling modules, and fails naming the circle it
//! finds. A module may use its parent (`super::`): the parent is the interface its
//! children implement. Between siblings, imports must go one way, so that the layers
//! ARCHITECTURE.md draws are the ones the code has; and that the crate dependency table
//! there is what the `Cargo.toml` files say.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module, as its path from the crate root: `["store", "sqlite"]`.
type ModulePath = Vec<String>;

#[test]
fn no_crate_has_an_import_circle_between_its_modules() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut circles = Vec::new();
    let mut modules_read = 0;
    for entry in fs::read_dir(&crates).expect("the crates directory") {
        let src = entry.expect("a crate").path().join("src");
        if !src.is_dir() {
            continue;
        }
        let edges = module_edges(&src);
        modules_read += edges.len();
        if let Some(circle) = find_circle(&edges) {
            circles.push(format!("{}: {}", src.display(), circle.join(" -> ")));
        }
    }
    assert!(modules_read > 50, "only {modules_read} modules read");
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_checker_sees_a_circle_through_braces_and_nested_modules() {
    let sources = [
        ("a", "use crate::{b::Thing, c};\n"),
        ("b", "use crate::c::{self, x::{Y}};\n"),
        (
            "c",
            "fn f() { crate::a::g() }\n#[cfg(test)]\nmod tests { use crate::z; }\n",
        ),
        ("c::x", "use super::Parent;\nuse crate::c::y::Z;\n"),
        ("c::y", "use crate::c::x::W;\n"),
    ];
    let mut edges = BTreeMap::new();
    for (module, text) in sources {
        let path: ModulePath = module.split("::").map(str::to_owned).collect();
        add_edges(&mut edges, &path, &crate_paths(text));
    }
    let circle = find_circle(&edges).expect("a circle");
    assert_eq!(circle.first(), circle.last());
    assert!(circle.len() > 2, "{circle:?}");
    assert_eq!(
        edges[&vec!["c".to_owned()]],
        BTreeSet::from([vec!["a".to_owned()]]),
        "the test part of c is not read"
    );
    assert!(edges[&vec!["c".to_owned(), "x".to_owned()]].contains(&vec!["c".into(), "y".into()]));
}

/// Every module of the crate at `src` with the sibling modules it uses.
fn module_edges(src: &Path) -> BTreeMap<ModulePath, BTreeSet<ModulePath>> {
    let mut files = Vec::new();
    collect_rust_files(src, &mut files);
    let mut edges = BTreeMap::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("a readable source file");
        add_edges(&mut edges, &module_of(src, file), &crate_paths(&text));
    }
    edges
}

fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// `src/store/sqlite.rs` is `store::sqlite`; `src/store/mod.rs` is `store`; `lib.rs`
/// and `main.rs` are the root.
fn module_of(src: &Path, file: &Path) -> ModulePath {
    let relative = file.strip_prefix(src).expect("a file under src");
    let mut path: ModulePath = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    if path.len() == 1 && (path[0] == "lib" || path[0] == "main") {
        path.clear();
    }
    path
}

/// The module paths named after `crate::` in the non-test part of `text`, each as far
/// as it names modules or items (`crate::{a::B, c}` gives `a::B` and `c`).
fn crate_paths(text: &str) -> Vec<ModulePath> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let code: String = code
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `gwmo_crate::`, not `crate::`
        }
        expand(rest, Vec::new(), &mut paths);
    }
    paths
}

/// Reads one path (or a brace group of paths) at the start of `text`, after `prefix`.
fn expand(text: &str, prefix: ModulePath, paths: &mut Vec<ModulePath>) {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut start = 0;
        for (index, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(&group[start..index], prefix.clone(), paths);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&group[start..index], prefix.clone(), paths);
                    start = index + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let name: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() {
        return;
    }
    let mut path = prefix;
    if name != "self" {
        path.push(name.clone());
    }
    match text[name.len()..].trim_start().strip_prefix("::") {
        Some(more) => expand(more, path, paths),
        None => paths.push(path),
    }
}

/// Adds the edges `module`'s uses of `used` make, each between the two siblings under
/// the deepest module both paths share: a use of `a::b::c` from `a::x::y` is an edge
/// `a::x -> a::b`, one of `d` from `a::x` an edge `a -> d`. Uses of the module's own
/// ancestors or descendants make no edge. Every module is a node, with or without edges.
fn add_edges(
    edges: &mut BTreeMap<ModulePath, BTreeSet<ModulePath>>,
    module: &ModulePath,
    used: &[ModulePath],
) {
    edges.entry(module.clone()).or_default();
    for path in used {
        let shared = module.iter().zip(path).take_while(|(a, b)| a == b).count();
        if shared >= module.len() || shared >= path.len() {
            continue;
        }
        // A path to an item of an ancestor (`crate::Error`) names no sibling module.
        if shared + 1 == path.len() && path[shared].starts_with(char::is_uppercase) {
            continue;
        }
        edges
            .entry(module[..=shared].to_vec())
            .or_default()
            .insert(path[..=shared].to_vec());
    }
}

/// A circle in the graph over the modules that are nodes in it, if any, as the list of
/// modules around it (first and last the same).
fn find_circle(edges: &BTreeMap<ModulePath, BTreeSet<ModulePath>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        module: &ModulePath,
        edges: &BTreeMap<ModulePath, BTreeSet<ModulePath>>,
        marks: &mut BTreeMap<ModulePath, Mark>,
        stack: &mut Vec<ModulePath>,
    ) -> Option<Vec<String>> {
        match marks.get(module) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = stack.iter().position(|m| m == module).unwrap_or_default();
                let mut circle: Vec<String> = stack[from..].iter().map(|m| m.join("::")).collect();
                circle.push(module.join("::"));
                return Some(circle);
            }
            None => {}
        }
        marks.insert(module.clone(), Mark::Open);
        stack.push(module.clone());
        for next in edges.get(module).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, marks, stack) {
                return Some(circle);
            }
        }
        stack.pop();
        marks.insert(module.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    edges
        .keys()
        .find_map(|module| visit(module, edges, &mut marks, &mut Vec::new()))
}

/// The dependency table of ARCHITECTURE.md is what the `Cargo.toml` files say.
#[test]
fn architecture_md_draws_the_crates_dependencies_as_they_are() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let map = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let drawn: BTreeMap<String, BTreeSet<String>> = map
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let uses = cells.get(2)?;
            let uses = uses
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            Some((name.to_owned(), uses))
        })
        .collect();
    let mut actual = BTreeMap::new();
    for entry in fs::read_dir(root.join("crates")).expect("the crates directory") {
        let dir = entry.expect("a crate").path();
        let Ok(manifest) = fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let dependencies = manifest
            .split("\n[")
            .find(|section| section.starts_with("dependencies]"))
            .unwrap_or_default();
        let uses: BTreeSet<String> = dependencies
            .lines()
            .filter_map(|line| line.strip_prefix("gwmo-")?.split(['.', ' ']).next())
            .map(str::to_owned)
            .collect();
        let name = dir
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        actual.insert(name, uses);
    }
    assert_eq!(drawn, actual, "ARCHITECTURE.md's table against Cargo.toml");
}

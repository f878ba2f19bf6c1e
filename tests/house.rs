//! The code's shape, checked: no file in src/ over 450 lines, no import cycle
//! between src/ files, and the SIMD dispatch written once (`#[target_feature]`
//! only in the instruction sets' own modules).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 450;

/// Every .rs file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The module path of a file: src/kernels/simd/mod.rs is `kernels::simd`, lib.rs is "".
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).filter(|p| !matches!(*p, "mod" | "lib" | "main")).collect();
    parts.join("::")
}

/// The code of a file without comments and without its unit tests (tests may
/// reach up to their module's helpers).
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    text.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n")
}

/// The paths a file names: `crate::a::b`, `super::a` (relative to its parent),
/// `child::x` for a module declared in it, and `use crate::{a, b::c}` groups.
fn named_paths(module: &str, code: &str) -> Vec<String> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let join = |a: &str, b: &str| if a.is_empty() { b.to_string() } else { format!("{a}::{b}") };
    let children: Vec<String> = code
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("pub ").strip_prefix("mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(|name| name.to_string())
        .collect();
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect::<String>();
    let mut paths = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            paths.extend(group.split(',').map(|item| ident(item.trim())));
        } else {
            paths.push(ident(rest));
        }
    }
    for (i, _) in code.match_indices("super::") {
        let before = code[..i].chars().last();
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            paths.push(join(parent, &ident(&code[i + 7..])));
        }
    }
    for child in &children {
        for (i, _) in code.match_indices(&format!("{child}::")) {
            let before = code[..i].chars().last();
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                paths.push(join(module, &ident(&code[i..])));
            }
        }
    }
    paths
}

/// The longest known module that `path` starts with.
fn resolve<'a>(modules: &'a BTreeSet<String>, path: &str) -> Option<&'a String> {
    let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    (1..=parts.len()).rev().find_map(|n| modules.get(&parts[..n].join("::")))
}

#[test]
fn no_source_file_is_over_450_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let long: Vec<String> = rust_files(&src)
        .iter()
        .map(|f| (f, std::fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(f, n)| format!("{} ({n} lines)", f.display()))
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

#[test]
fn no_import_cycle_between_source_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: BTreeMap<String, String> =
        rust_files(&src).iter().map(|f| (module_of(&src, f), code_of(&std::fs::read_to_string(f).unwrap()))).collect();
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let edges: BTreeMap<&String, BTreeSet<&String>> = files
        .iter()
        .map(|(m, code)| (m, named_paths(m, code).iter().filter_map(|p| resolve(&modules, p)).filter(|t| *t != m).collect()))
        .collect();
    assert!(edges.len() > 40 && edges.values().map(BTreeSet::len).sum::<usize>() > 100, "the scan found too few imports: {edges:?}");

    // Depth-first search; a module met again while on the stack closes a cycle.
    fn visit<'a>(m: &'a String, edges: &BTreeMap<&'a String, BTreeSet<&'a String>>, stack: &mut Vec<&'a String>, done: &mut BTreeSet<&'a String>) {
        if let Some(at) = stack.iter().position(|s| *s == m) {
            let cycle: Vec<&str> = stack[at..].iter().chain([&m]).map(|s| s.as_str()).collect();
            panic!("import cycle: {}", cycle.join(" -> "));
        }
        if !done.insert(m) {
            return;
        }
        stack.push(m);
        for next in &edges[m] {
            visit(next, edges, stack, done);
        }
        stack.pop();
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done);
    }
}

/// The test above finds a cycle where there is one.
#[test]
fn the_cycle_check_sees_a_cycle() {
    let modules: BTreeSet<String> = ["a", "b", "b::c"].iter().map(|s| s.to_string()).collect();
    let from_a = named_paths("a", "use crate::b::c::X;");
    let from_c = named_paths("b::c", "use super::Z;\nuse crate::{a::Y};");
    assert_eq!(from_a.iter().filter_map(|p| resolve(&modules, p)).collect::<Vec<_>>(), ["b::c"]);
    let targets: BTreeSet<&String> = from_c.iter().filter_map(|p| resolve(&modules, p)).collect();
    assert!(targets.contains(&"a".to_string()) && targets.contains(&"b".to_string()), "{from_c:?}");
}

#[test]
fn simd_dispatch_is_written_once() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let isa_modules = [src.join("kernels/simd/avx2.rs"), src.join("kernels/simd/avx512.rs")];
    for file in rust_files(&src) {
        let uses = code_of(&std::fs::read_to_string(&file).unwrap()).matches("#[target_feature").count();
        if isa_modules.contains(&file) {
            assert_eq!(uses, 1, "{}: one entry point per instruction set", file.display());
        } else {
            assert_eq!(uses, 0, "{}: #[target_feature] outside kernels/simd", file.display());
        }
    }
}

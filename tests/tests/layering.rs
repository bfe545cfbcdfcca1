//! The kernel's layers, as `docs/ARCHITECTURE.md` ("Kernel layers") writes them: no file
//! may import a module of a lower row of that table. The upward calls the design allows
//! go through hooks, which import nothing upward. No QEMU: this reads the sources.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    hotkernel::workspace::root()
}

/// Module name → row, from the table under "## Kernel layers".
fn layers() -> BTreeMap<String, usize> {
    let doc = fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = doc
        .split("\n## Kernel layers")
        .nth(1)
        .expect("a `## Kernel layers` section")
        .split("\n## ")
        .next()
        .unwrap_or("");
    let mut rows = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(row) = cells.get(1).and_then(|c| c.parse::<usize>().ok()) else {
            continue;
        };
        for module in cells[2].split(',') {
            let module = module.trim().trim_matches('`');
            assert!(!module.is_empty(), "an empty module name in row {row}");
            assert!(
                rows.insert(module.to_owned(), row).is_none(),
                "{module} is in two rows"
            );
        }
    }
    assert!(
        rows.len() > 10,
        "the layer table has too few modules: {rows:?}"
    );
    rows
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The kernel modules a source file names (`crate::x` paths and `use crate::{x, …}`),
/// comments left out.
fn imports(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            for item in group.split(',') {
                let name = item.trim().split("::").next().unwrap_or("").trim();
                out.push(name.to_owned());
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out.retain(|n| !n.is_empty() && n != "self");
    out
}

#[test]
fn kernel_imports_run_one_way() {
    let layers = layers();
    let src = root().join("kernel/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        let Some(&row) = layers.get(&module) else {
            panic!(
                "kernel/src/{} belongs to module `{module}`, which the layer table in docs/ARCHITECTURE.md does not name",
                rel.display()
            );
        };
        let source = fs::read_to_string(file).unwrap();
        for import in imports(&source) {
            let import = match import.as_str() {
                "println" | "print" => "console".to_owned(),
                _ => import,
            };
            if let Some(&target) = layers.get(&import) {
                if target > row {
                    upward.push(format!(
                        "kernel/src/{} (row {row}, `{module}`) uses `{import}` (row {target})",
                        rel.display()
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run upward (use a hook, or move the code):\n  {}",
        upward.join("\n  ")
    );
    eprintln!(
        "kernel_imports_run_one_way: {} files, {} modules in {} rows, no upward import",
        files.len(),
        layers.len(),
        layers.values().max().unwrap_or(&0) + 1
    );
}

#[test]
fn the_reader_sees_an_upward_import() {
    let found =
        imports("use crate::{cpu, update::jobs};\nlet x = crate::sched::run(); // crate::boot\n");
    assert_eq!(found, ["cpu", "update", "sched"]);
}

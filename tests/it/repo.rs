//! The repository keeps its promises to a newcomer: the declared minimum Rust
//! covers every dependency, the contract lives in `docs/` and every `SPEC §`
//! reference in code and docs points at a section it has, links stay inside
//! the repository, the templates carry every column of the contract, and the
//! release binary is stripped.

use crate::helpers::repo;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

fn version(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn the_declared_minimum_rust_covers_every_dependency() {
    // Offline first; a fresh cargo home lacks the sources of other
    // platforms' crates (metadata wants them all), so then from the registry.
    let metadata = |offline: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["metadata", "--format-version", "1", "--locked"]);
        if offline {
            cmd.arg("--offline");
        }
        cmd.current_dir(repo()).output().unwrap()
    };
    let mut out = metadata(true);
    if !out.status.success() {
        out = metadata(false);
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours = packages
        .iter()
        .find(|p| p["name"] == "channel-sync")
        .and_then(|p| p["rust_version"].as_str())
        .map(version)
        .expect("rust-version is declared");
    for p in packages {
        if let Some(v) = p["rust_version"].as_str() {
            assert!(
                version(v) <= ours,
                "{} needs Rust {v}, more than the declared {ours:?}",
                p["name"]
            );
        }
    }
}

#[test]
fn spec_references_name_sections_the_contract_has() {
    let spec = read("docs/SPEC.md");
    let sections: Vec<String> = spec
        .lines()
        .filter(|l| l.starts_with("## ") || l.starts_with("### "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|n| n.trim_end_matches('.').to_string())
        .collect();
    let mut files = vec!["README.md".to_string(), "sample/EXPECTED.md".to_string()];
    let mut stack = vec![repo().join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p.strip_prefix(repo()).unwrap().display().to_string());
            }
        }
    }
    let mut checked = 0;
    for f in &files {
        let text = read(f);
        for (at, _) in text.match_indices("SPEC §") {
            let number: String = text[at + "SPEC §".len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let number = number.trim_end_matches('.');
            assert!(
                sections.iter().any(|s| s == number),
                "{f}: SPEC §{number} is not a section of docs/SPEC.md ({sections:?})"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} references found");
}

#[test]
fn links_stay_inside_the_repository() {
    for f in [
        "README.md",
        "sample/EXPECTED.md",
        "sample/templates/README.md",
    ] {
        let text = read(f);
        assert!(
            !text.contains("../shared"),
            "{f} links outside the repository"
        );
        let dir = repo().join(f);
        let dir = dir.parent().unwrap();
        for (at, _) in text.match_indices("](") {
            let target: String = text[at + 2..].chars().take_while(|c| *c != ')').collect();
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let path = target.split('#').next().unwrap();
            assert!(dir.join(path).exists(), "{f}: link to {target} is broken");
        }
    }
}

#[test]
fn the_templates_carry_every_column_of_the_contract() {
    let spec = read("docs/SPEC.md");
    // The tables of §2 and §6.1: `| file | columns |` rows.
    for line in spec
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains('`'))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (file, columns) = (cells[1], cells[2]);
        if file.contains(' ') || file == "file" || file.starts_with('`') {
            continue;
        }
        let template = repo().join(format!("sample/templates/{file}.csv"));
        let header =
            std::fs::read_to_string(&template).unwrap_or_else(|_| panic!("no template for {file}"));
        let header: Vec<&str> = header.trim().split(',').collect();
        // Values in parentheses (`open`, `won`, ...) are not columns.
        let mut depth = 0;
        let columns: String = columns
            .chars()
            .filter(|&c| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0 && c != ')'
            })
            .collect();
        let wanted: Vec<&str> = columns
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
            .collect();
        for c in wanted {
            assert!(header.contains(&c), "{file}.csv template lacks {c}");
        }
    }
}

#[test]
fn the_release_binary_is_stripped_and_profiling_keeps_line_tables() {
    let toml = read("Cargo.toml");
    let release = toml.split("[profile.release]").nth(1).unwrap();
    let release = release.split("\n[").next().unwrap();
    assert!(release.contains("strip = true"), "{release}");
    assert!(release.contains("debug = false"), "{release}");
    let profiling = toml
        .split("[profile.profiling]")
        .nth(1)
        .expect("a profiling profile");
    assert!(profiling.contains("debug = \"line-tables-only\""));
}

/// The layers of `src/`, lowest first: a module may use only modules of a
/// lower layer (README "Layout"). Modules of one layer do not use each other.
const LAYERS: &[&[&str]] = &[
    &[
        "model", "fast", "id_index", "csv_safe", "metrics", "crash", "crypto", "clock",
    ],
    &["values"],
    &["engine"],
    &["config"],
    &["store", "http", "dataset"],
    &["sync", "decisions"],
    &["alerts", "connectors"],
    &["notify"],
    &["cycle"],
    &["review", "report", "findings_cmd", "decide_cmd"],
    &["console"],
    &["daemon"],
    &["cli"],
];

/// Known edges against the layering, each with the reason it stays for now.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// `crate::<module>` references of a top-level module's non-test code.
fn module_edges() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = repo().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "main" || top == "lib" || rel.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        // Unit tests may reach anywhere: only the code above them counts.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                edges.entry(top.clone()).or_default().insert(name);
            }
        }
    }
    edges
}

/// Every edge must go down the layers; and whatever the layers say, a
/// circle between modules fails with the circle named.
fn check_layering(
    edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Vec<String> {
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    let mut wrong = Vec::new();
    for (from, tos) in edges {
        for to in tos {
            if EXCEPTIONS.iter().any(|(a, b, _)| a == from && b == to) {
                continue;
            }
            match (layer(from), layer(to)) {
                (Some(a), Some(b)) if b < a => {}
                (None, _) => wrong.push(format!("{from}: not in LAYERS (add it)")),
                (_, None) => wrong.push(format!("{to}: not in LAYERS (add it)")),
                _ => wrong.push(format!("{from} -> {to} goes up or sideways")),
            }
        }
    }
    // Circles, by depth-first search (exceptions included).
    fn visit(
        m: &str,
        edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
        circles: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            circles.push(format!("circle: {} -> {m}", path[i..].join(" -> ")));
            return;
        }
        if !done.insert(m.to_string()) {
            return;
        }
        path.push(m.to_string());
        for to in edges.get(m).into_iter().flatten() {
            visit(to, edges, path, done, circles);
        }
        path.pop();
    }
    let mut done = Default::default();
    for m in edges.keys() {
        visit(m, edges, &mut Vec::new(), &mut done, &mut wrong);
    }
    wrong
}

#[test]
fn dependencies_between_modules_run_one_way_without_circles() {
    let edges = module_edges();
    assert!(edges.contains_key("cycle"), "the scan found the modules");
    let wrong = check_layering(&edges);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The checker itself catches a circle and an upward edge.
    let mut broken = edges.clone();
    broken
        .entry("metrics".into())
        .or_default()
        .insert("cycle".into());
    let found = check_layering(&broken).join("\n");
    assert!(found.contains("metrics -> cycle goes up"), "{found}");
    assert!(found.contains("circle:"), "{found}");
}

#[test]
fn the_core_names_no_vendor() {
    // The cycle, the alerts and the command line reach vendors only through
    // connectors/ (comments may name them).
    let mut found = Vec::new();
    for dir in ["src/cycle", "src/alerts"] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let p = e.unwrap().path();
            found.push(p);
        }
    }
    found.push(repo().join("src/cli.rs"));
    found.push(repo().join("src/daemon.rs"));
    for p in found {
        for (n, line) in std::fs::read_to_string(&p).unwrap().lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default().to_lowercase();
            for vendor in ["salesforce", "hubspot", "partnerstack"] {
                assert!(
                    !code.contains(vendor),
                    "{}:{}: names {vendor}: {line}",
                    p.display(),
                    n + 1
                );
            }
        }
    }
}

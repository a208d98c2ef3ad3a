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

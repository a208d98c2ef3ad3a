//! The `channel-sync-synth generate` command line, through the real binary.

use std::path::Path;

fn generate(out: &Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_channel-sync-synth"))
        .args(["generate", "--out"])
        .arg(out)
        .args(["--opportunities", "500", "--seed", "7"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn generate_gives_the_same_bytes_for_a_seed_on_any_day() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    assert!(generate(&a, &[]).status.success());
    assert!(generate(&b, &[]).status.success());
    let mut names: Vec<_> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    for n in &names {
        assert_eq!(
            std::fs::read(a.join(n)).unwrap(),
            std::fs::read(b.join(n)).unwrap(),
            "{n:?} differs between two runs"
        );
    }
    // Another --now lays the program out around another date.
    let c = dir.path().join("c");
    assert!(
        generate(&c, &["--now", "2027-03-01T00:00:00Z"])
            .status
            .success()
    );
    assert_ne!(
        std::fs::read(a.join("opportunities.csv")).unwrap(),
        std::fs::read(c.join("opportunities.csv")).unwrap()
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_channel-sync-synth"))
        .args(["generate", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[default: 2026-11-26T00:00:00Z]"), "{help}");
}

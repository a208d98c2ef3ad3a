use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const NOW: &str = "2026-11-26T00:00:00Z";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample() -> PathBuf {
    repo().join("sample")
}

/// Runs the real binary from the repository root.
pub fn channel_sync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_channel-sync"))
        .args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

pub fn detect_json(input: &Path) -> (i32, serde_json::Value, String) {
    let out = channel_sync(&[
        "detect",
        "--input",
        input.to_str().unwrap(),
        "--now",
        NOW,
        "--format",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}); stderr: {stderr}"));
    (out.status.code().unwrap_or(-1), report, stderr)
}

/// Copies the sample program's CSV files into `dir/data`; returns that folder.
pub fn copy_sample(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    for f in std::fs::read_dir(sample()).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "csv") {
            std::fs::copy(&f, data.join(f.file_name().unwrap())).unwrap();
        }
    }
    data
}

//! Runs the fake Salesforce REST server standalone (for the benchmark).
//!
//! ```text
//! cargo run --release -p channel-sync-fakes --example fake_salesforce -- [--api-max N] [--port P] [--load-jsonl DIR]
//! ```
//!
//! Prints `FAKE_SALESFORCE_URL=http://127.0.0.1:PORT` on stdout once the data
//! is loaded, then serves until killed. `--load-jsonl DIR` inserts every line
//! of each `<Object>.jsonl` file in DIR into that object. `FAKE_SF_API_MAX`
//! and `FAKE_SF_PORT` are read when the flags are absent. Credentials are the
//! defaults of `FakeConfig` (`fake-client-id` / `fake-client-secret`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use channel_sync_fakes::salesforce::{FakeConfig, FakeSalesforce};

fn usage(msg: &str) -> ! {
    eprintln!("fake_salesforce: {msg}");
    eprintln!("usage: fake_salesforce [--api-max N] [--port P] [--load-jsonl DIR]");
    std::process::exit(2)
}

fn load_dir(fake: &FakeSalesforce, dir: &Path) -> std::io::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for path in files {
        let Some(object) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        channel_sync_fakes::load::jsonl(
            "fake_salesforce",
            &format!("{object} records"),
            &path,
            |batch| {
                fake.insert_many(object, batch);
            },
        )?;
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let mut config = FakeConfig::default();
    let mut port: u16 = std::env::var("FAKE_SF_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    if let Some(max) = std::env::var("FAKE_SF_API_MAX")
        .ok()
        .and_then(|m| m.parse().ok())
    {
        config.api_max = max;
    }
    let mut load = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--api-max" => {
                config.api_max = value("--api-max")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --api-max"))
            }
            "--port" => {
                port = value("--port")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --port"))
            }
            "--load-jsonl" => load = Some(PathBuf::from(value("--load-jsonl"))),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let fake =
        match FakeSalesforce::start_on(config, SocketAddr::from(([127, 0, 0, 1], port))).await {
            Ok(f) => f,
            Err(e) => {
                eprintln!("fake_salesforce: cannot bind: {e}");
                std::process::exit(1)
            }
        };
    if let Some(dir) = load
        && let Err(e) = load_dir(&fake, &dir)
    {
        eprintln!("fake_salesforce: loading {}: {e}", dir.display());
        std::process::exit(1)
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "FAKE_SALESFORCE_URL={}", fake.url());
    let _ = out.flush();
    drop(out);
    let _ = tokio::signal::ctrl_c().await;
}

//! Runs the fake PartnerStack Vendor API standalone (for the benchmark).
//!
//! ```text
//! cargo run --release -p channel-sync-fakes --example fake_partnerstack -- [--port P]
//!     [--load-jsonl DIR] [--per-second N]
//! ```
//!
//! Prints `FAKE_PARTNERSTACK_URL=http://127.0.0.1:PORT/api/v2` on stdout once
//! the data is loaded, then serves until killed. `--load-jsonl DIR` loads
//! `partnerships.jsonl`, `deals.jsonl` and `leads.jsonl` (each optional) from
//! DIR: one record per line, as the API returns it (`created_at` and
//! `updated_at` in epoch milliseconds, amounts in cents). `--per-second N`
//! sets the fake's request budget (unlimited by default). `FAKE_PS_PORT` is
//! read when `--port` is absent. The Basic-auth keys are `FakeConfig`'s
//! defaults: `pk_test_fake` / `sk_test_fake`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use channel_sync_fakes::partnerstack::{FakeConfig, FakePartnerStack, Resource};

fn usage(msg: &str) -> ! {
    eprintln!("fake_partnerstack: {msg}");
    eprintln!("usage: fake_partnerstack [--port P] [--load-jsonl DIR] [--per-second N]");
    std::process::exit(2)
}

fn load_dir(fake: &FakePartnerStack, dir: &Path) -> std::io::Result<()> {
    for resource in [Resource::Partnerships, Resource::Deals, Resource::Leads] {
        let path = dir.join(format!("{}.jsonl", resource.path()));
        if !path.exists() {
            continue;
        }
        channel_sync_fakes::load::jsonl("fake_partnerstack", resource.path(), &path, |batch| {
            fake.insert_many(resource, batch);
        })?;
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let mut config = FakeConfig::default();
    let mut port: u16 = std::env::var("FAKE_PS_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let mut load = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--port" => {
                port = value("--port")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --port"))
            }
            "--per-second" => {
                config.rate_limit_per_sec = Some(
                    value("--per-second")
                        .parse()
                        .unwrap_or_else(|_| usage("bad --per-second")),
                )
            }
            "--load-jsonl" => load = Some(PathBuf::from(value("--load-jsonl"))),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let fake =
        match FakePartnerStack::start_on(config, SocketAddr::from(([127, 0, 0, 1], port))).await {
            Ok(f) => f,
            Err(e) => {
                eprintln!("fake_partnerstack: cannot bind: {e}");
                std::process::exit(1)
            }
        };
    if let Some(dir) = load
        && let Err(e) = load_dir(&fake, &dir)
    {
        eprintln!("fake_partnerstack: loading {}: {e}", dir.display());
        std::process::exit(1)
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "FAKE_PARTNERSTACK_URL={}", fake.url());
    let _ = out.flush();
    drop(out);
    let _ = tokio::signal::ctrl_c().await;
}

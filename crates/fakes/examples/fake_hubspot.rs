//! Runs the fake HubSpot CRM server standalone (for the benchmark).
//!
//! ```text
//! cargo run --release -p channel-sync-fakes --example fake_hubspot -- [--port P] [--load-jsonl DIR]
//!     [--ten-secondly N] [--daily N] [--search-per-second N]
//! ```
//!
//! Prints `FAKE_HUBSPOT_URL=http://127.0.0.1:PORT` on stdout once the data is
//! loaded, then serves until killed. `--load-jsonl DIR` loads
//! `companies.jsonl`, `deals.jsonl` and `owners.jsonl` (in that order, each
//! optional) from DIR: one JSON object per line,
//! `{"id", "properties": {..}, "associations": {"companies": ["id"]}}` for
//! objects and owner objects as the API returns them. `FAKE_HS_PORT` is read
//! when `--port` is absent. Credentials are the defaults of `HubSpotConfig`
//! (private-app token `pat-na1-00000000-0000-0000-0000-fakeprivapp`, OAuth
//! client `fake-hubspot-client-id` / `fake-hubspot-client-secret`, refresh
//! token `fake-hubspot-refresh-1`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use channel_sync_fakes::hubspot::{FakeHubSpot, HubSpotConfig};

fn usage(msg: &str) -> ! {
    eprintln!("fake_hubspot: {msg}");
    eprintln!(
        "usage: fake_hubspot [--port P] [--load-jsonl DIR] [--ten-secondly N] [--daily N] [--search-per-second N]"
    );
    std::process::exit(2)
}

fn load_dir(fake: &FakeHubSpot, dir: &Path) -> std::io::Result<()> {
    for object in ["companies", "deals", "owners"] {
        let path = dir.join(format!("{object}.jsonl"));
        if !path.exists() {
            continue;
        }
        channel_sync_fakes::load::jsonl("fake_hubspot", object, &path, |batch| {
            fake.insert_many(object, batch);
        })?;
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let mut config = HubSpotConfig::default();
    let mut port: u16 = std::env::var("FAKE_HS_PORT")
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
        let mut number = |name: &str| -> u64 {
            value(name)
                .parse()
                .unwrap_or_else(|_| usage(&format!("bad {name}")))
        };
        match arg.as_str() {
            "--port" => {
                port = u16::try_from(number("--port")).unwrap_or_else(|_| usage("bad --port"))
            }
            "--ten-secondly" => config.ten_secondly_max = number("--ten-secondly"),
            "--daily" => config.daily_max = number("--daily"),
            "--search-per-second" => config.search_per_second = number("--search-per-second"),
            "--load-jsonl" => load = Some(PathBuf::from(value("--load-jsonl"))),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let fake = match FakeHubSpot::start_on(config, SocketAddr::from(([127, 0, 0, 1], port))).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake_hubspot: cannot bind: {e}");
            std::process::exit(1)
        }
    };
    if let Some(dir) = load
        && let Err(e) = load_dir(&fake, &dir)
    {
        eprintln!("fake_hubspot: loading {}: {e}", dir.display());
        std::process::exit(1)
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "FAKE_HUBSPOT_URL={}", fake.url());
    let _ = out.flush();
    drop(out);
    let _ = tokio::signal::ctrl_c().await;
}

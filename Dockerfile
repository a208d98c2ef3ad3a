# syntax=docker/dockerfile:1
#
# channel-sync. Build:
#   docker build -t channel-sync:0.1.0 .
# Run (the webhook is passed from your shell's environment, never typed on
# the command line; the README's "Container" section has the same command):
#   docker run -d --name channel-sync --stop-timeout 40 -p 127.0.0.1:9090:9090 \
#     -v channel-sync-state:/var/lib/channel-sync \
#     -v "$PWD/deploy/channel-sync.toml:/etc/channel-sync/channel-sync.toml:ro" \
#     -v "$PWD/exports:/data:ro" \
#     -e CHANNEL_SYNC__CRM__KIND=files -e CHANNEL_SYNC__CRM__FILES__DIR=/data \
#     -e CHANNEL_SYNC__CRM__FILES__OUT_DIR=/var/lib/channel-sync/out \
#     -e CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL \
#     channel-sync:0.1.0

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /app

# Dependencies only, in their own layer: rebuilt when Cargo.toml or
# Cargo.lock change, not when the code does.
# The workspace members' manifests too (cargo reads them to resolve), with
# empty sources: only the daemon is built, never the generator or the fakes.
COPY Cargo.toml Cargo.lock ./
COPY crates/synth/Cargo.toml crates/synth/
COPY crates/fakes/Cargo.toml crates/fakes/
RUN mkdir -p src crates/synth/src crates/fakes/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs crates/synth/src/lib.rs crates/fakes/src/lib.rs \
    && echo 'fn main() {}' > crates/synth/src/main.rs \
    && cargo build --release --locked --bin channel-sync \
    && rm -rf src target/release/channel-sync target/release/deps/channel_sync-* \
        target/release/deps/libchannel_sync-* target/release/.fingerprint/channel-sync-*

# The program (the same invocation as `cargo build --release --locked --bin channel-sync`).
COPY src ./src
RUN cargo build --release --locked --bin channel-sync

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home channel-sync \
    && mkdir -p /var/lib/channel-sync /etc/channel-sync \
    && chown 10001:10001 /var/lib/channel-sync

COPY --from=builder /app/target/release/channel-sync /usr/local/bin/channel-sync
# The bundled example; mount your own configuration over it (read-only).
COPY config/channel-sync.toml /etc/channel-sync/channel-sync.toml

# Secrets come from the environment only (CHANNEL_SYNC__...); never bake them in.
ENV TZ=Etc/UTC \
    RUST_LOG=info,tokio_cron_scheduler=warn \
    CHANNEL_SYNC__STATE__PATH=/var/lib/channel-sync/state.db \
    CHANNEL_SYNC__SERVER__LISTEN=0.0.0.0:9090

USER 10001:10001
WORKDIR /var/lib/channel-sync
VOLUME ["/var/lib/channel-sync"]
EXPOSE 9090

HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["channel-sync", "healthcheck", "--config", "/etc/channel-sync/channel-sync.toml"]

# Exec form: channel-sync is PID 1 and receives SIGTERM itself.
ENTRYPOINT ["channel-sync"]
CMD ["run", "--config", "/etc/channel-sync/channel-sync.toml"]

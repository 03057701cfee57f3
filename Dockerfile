# ScoreStream container image: a multi-stage build, a small Debian runtime, a non-root user.
#   docker build -t scorestream .
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=kafka:9092 -p 8080:8080 scorestream
# (No Docker engine exists on the development machines; docker-compose.yml is validated in
# CI with `docker-compose config`, the image build itself is not exercised there.)

FROM rust:1-bookworm AS build
# C toolchains for the bundled librdkafka (with OpenSSL) and RocksDB (bindgen needs libclang).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev libclang-dev clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, in their own layer: source edits do not rebuild RocksDB and librdkafka.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && for b in e2e_ingest normalize state e2e_restore leaderboard; do echo 'fn main() {}' > benches/$b.rs; done \
 && cargo build --release --locked --bin scorestream \
 && rm -rf src benches
COPY src src
COPY topology topology
COPY benches benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin scorestream

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/scorestream --shell /usr/sbin/nologin scorestream \
 && mkdir -p /var/lib/scorestream /etc/scorestream \
 && chown scorestream:scorestream /var/lib/scorestream
COPY --from=build /src/target/release/scorestream /usr/local/bin/scorestream
# The bundled rules are compiled in; these copies are for editing and pointing config at.
COPY topology /etc/scorestream/topology
COPY config/scorestream.example.toml /etc/scorestream/scorestream.example.toml
USER scorestream
ENV SCORESTREAM_STATE_DIR=/var/lib/scorestream \
    SCORESTREAM_HTTP_ADDR=0.0.0.0:8080 \
    RUST_LOG=info
VOLUME ["/var/lib/scorestream"]
EXPOSE 8080
ENTRYPOINT ["scorestream"]
CMD ["run"]

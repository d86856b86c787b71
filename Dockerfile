# flowwarden image: build in the Rust image, run on debian-slim with only the binary and
# librdkafka's runtime libraries (rdkafka builds librdkafka statically and links OpenSSL and zlib
# dynamically through the `ssl` feature).
FROM rust:1-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake build-essential libssl-dev zlib1g-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
RUN cargo build --release --locked --bin flowwarden

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/flowwarden flowwarden \
    && mkdir -p /var/lib/flowwarden /etc/flowwarden \
    && chown flowwarden /var/lib/flowwarden
COPY --from=builder /src/target/release/flowwarden /usr/local/bin/flowwarden
COPY --from=builder /src/config/flowwarden.toml /etc/flowwarden/flowwarden.toml
USER flowwarden
WORKDIR /var/lib/flowwarden
ENTRYPOINT ["/usr/local/bin/flowwarden"]
CMD ["run", "--config", "/etc/flowwarden/flowwarden.toml"]

# The one skyshard binary in a small image: `docker build -t skyshard .`, then `docker run skyshard czar ...`,
# `skyshard worker ...` (deploy/ has Kubernetes manifests using it). The build needs nothing but a Rust toolchain.
FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin skyshard \
    && install -D target/release/skyshard /out/skyshard

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /data skyshard \
    && mkdir /data && chown skyshard:skyshard /data
COPY --from=build /out/skyshard /usr/local/bin/skyshard
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080 7000 9090
ENTRYPOINT ["/usr/local/bin/skyshard"]
CMD ["--help"]

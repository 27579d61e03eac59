# syntax=docker/dockerfile:1
#
# ruleop container image: a static (musl) binary on distroless/static, running as 65532.
#
#   docker build -t REGISTRY/ruleop:TAG . && docker push REGISTRY/ruleop:TAG
#   then: cd deploy && kustomize edit set image ghcr.io/ruleop/ruleop=REGISTRY/ruleop:TAG
#
# NOTE: this Dockerfile has NOT been built or tested: the machine it was written on has no
# container engine. The same musl build works outside Docker with
#   rustup target add x86_64-unknown-linux-musl && apt-get install musl-tools &&
#   cargo build --release --locked --target x86_64-unknown-linux-musl --bin ruleop
# TLS is rustls + ring (no OpenSSL), so musl-gcc (musl-tools) is the only C toolchain needed.
# amd64 only as written; for arm64 use the aarch64-unknown-linux-musl target and musl cross tools.

FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Release binary, statically linked, symbols stripped (Cargo.toml keeps line tables for
# local release builds; the image does not need them).
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin ruleop \
    && cp target/x86_64-unknown-linux-musl/release/ruleop /ruleop \
    && /ruleop --help >/dev/null

FROM gcr.io/distroless/static:nonroot
LABEL org.opencontainers.image.source="https://github.com/ruleop/ruleop" \
      org.opencontainers.image.description="ruleop: a generic Kubernetes operator driven by YAML rule files" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /ruleop /ruleop
# The reference rules as a default rule set; deploy/ mounts the ruleop-rules ConfigMap over it.
COPY rules/*.yaml /etc/ruleop/rules/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/ruleop"]
CMD ["run", "--rules", "/etc/ruleop/rules"]

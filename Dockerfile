# ruleop container image: one static binary FROM scratch, running as 65532 (non-root).
#
# Built by `make image` with podman from a context directory that the Makefile prepares:
#   ruleop   the static release binary (`make image-bin`: musl, or glibc with crt-static)
#   rules/   the reference rules, a default rule set (deployments mount their own over it)
#   LICENSE
# Nothing is pulled: no base image and no build stage, so it builds without a registry.
# Any OCI builder works on the same context, e.g.
#   make image-bin && docker build -f Dockerfile -t REGISTRY/ruleop:TAG "$CARGO_TARGET_DIR/image-context"
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ruleop" \
      org.opencontainers.image.description="A generic Kubernetes operator driven by YAML rule files" \
      org.opencontainers.image.source="https://github.com/ruleop/ruleop" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY ruleop /ruleop
COPY LICENSE /LICENSE
COPY rules/ /etc/ruleop/rules/
# A numeric user: scratch has no /etc/passwd, and runAsNonRoot needs a number to check.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/ruleop"]
CMD ["run", "--rules", "/etc/ruleop/rules"]

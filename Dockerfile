# syntax=docker/dockerfile:1
#
# alibi-serve container images. Two targets:
#
#   docker build --target cpu  -t alibi-serve:cpu  .    (the default target)
#   docker build --target cuda -t alibi-serve:cuda .    (--build-arg CUDA_ARCHITECTURES="90;100")
#
# Both build with the README's own commands (scripts/setup.sh, then
# scripts/build.sh without tests into /opt/alibi), run through
# scripts/docker-build.sh, which CI also runs without a Docker engine; the
# runtime stages install scripts/runtime-packages.txt. See deploy/README.md.
# Needs BuildKit (Docker's default builder since 23.0) for the ccache cache
# mount of the build stages.
#
# Why Debian 12 for the CUDA image too: the project's dependencies are Debian
# 12's packages (gRPC 1.51, protobuf 3.21, Abseil 20220623, prometheus-cpp
# 1.0, OpenBLAS, PCRE2, utf8proc), which is what scripts/setup.sh installs and
# CI tests. NVIDIA publishes no Debian-based nvidia/cuda image, and on Ubuntu
# 24.04 (nvidia/cuda:13.0.x-*-ubuntu24.04) the same sources come under other
# runtime package names (the t64 renames: libgrpc++1.51t64, libprotobuf32t64,
# libabsl20220623t64; libutf8proc3) with GCC 13 and Clang 18, i.e. a second,
# untested toolchain and a second runtime package list. So both CUDA stages
# are debian:12 plus CUDA 13 from NVIDIA's official Debian 12 apt repository
# (the packages the nvidia/cuda images are made of), set up the way those
# images are: scripts/docker-cuda.sh installs nvcc and cuBLAS for the build,
# and the runtime gets cudart and cuBLAS plus the NVIDIA_* variables that the
# NVIDIA Container Toolkit reads.

ARG DEBIAN_IMAGE=debian:12
ARG DEBIAN_SLIM_IMAGE=debian:12-slim

# --------------------------------------------------------------------------
# CUDA build: Debian 12 + CUDA toolkit; the CUDA backend for CUDA_ARCHITECTURES
# (CMake's CUDAARCHS; 90 = H100/H200; e.g. "80;90;100;120" for A100 to
# Blackwell, at the cost of build time and image size).
FROM ${DEBIAN_IMAGE} AS build-cuda
ARG CUDA_VERSION=13.0
ARG CUDA_ARCHITECTURES=90
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/ccache \
    ALIBI_INSTALL=/opt/alibi scripts/docker-build.sh cuda

# --------------------------------------------------------------------------
# CUDA runtime: Debian 12 slim + cudart and cuBLAS from NVIDIA's repository.
FROM ${DEBIAN_SLIM_IMAGE} AS cuda
ARG CUDA_VERSION=13.0
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_REQUIRE_CUDA="cuda>=${CUDA_VERSION}"
COPY scripts/runtime-packages.txt scripts/docker-runtime.sh scripts/docker-cuda.sh /tmp/alibi-setup/
RUN /tmp/alibi-setup/docker-runtime.sh install cuda
COPY --from=build-cuda /opt/alibi /opt/alibi
COPY models/alibi-tiny-en /opt/alibi/models/alibi-tiny-en
RUN /tmp/alibi-setup/docker-runtime.sh verify /opt/alibi && rm -rf /tmp/alibi-setup
LABEL org.opencontainers.image.title="alibi-serve (CUDA)" \
      org.opencontainers.image.description="gRPC and OpenAI-compatible HTTP model server for ALiBi language models (BLOOM, MPT)"
# The server's default --model (models/alibi-tiny-en) is relative to here.
WORKDIR /opt/alibi
USER 10001:10001
# gRPC (--port), Prometheus /metrics (--metrics_port) and the OpenAI-compatible
# HTTP API (--http_port, with /metrics too): the server's defaults.
EXPOSE 50051 9464 8000
# gRPC health check (service ""): alibi-cli exits 0 only when SERVING, so the
# container is unhealthy while the model loads and once SIGTERM starts a drain.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/opt/alibi/bin/alibi-cli", "health", "--address", "localhost:50051"]
# SIGTERM: health goes NOT_SERVING, new calls get UNAVAILABLE, in-flight calls
# drain for up to --drain_seconds (10), then exit 0. Give `docker stop` more
# than that: --time 20 (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/alibi/bin/alibi-server"]
CMD ["--device=cuda"]

# --------------------------------------------------------------------------
# CPU build: Debian 12, the project's own platform; no CUDA backend.
FROM ${DEBIAN_IMAGE} AS build-cpu
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/ccache \
    ALIBI_INSTALL=/opt/alibi scripts/docker-build.sh cpu

# --------------------------------------------------------------------------
# CPU runtime: Debian 12 slim. Last stage, so the default target.
FROM ${DEBIAN_SLIM_IMAGE} AS cpu
COPY scripts/runtime-packages.txt scripts/docker-runtime.sh /tmp/alibi-setup/
RUN /tmp/alibi-setup/docker-runtime.sh install cpu
COPY --from=build-cpu /opt/alibi /opt/alibi
COPY models/alibi-tiny-en /opt/alibi/models/alibi-tiny-en
RUN /tmp/alibi-setup/docker-runtime.sh verify /opt/alibi && rm -rf /tmp/alibi-setup
LABEL org.opencontainers.image.title="alibi-serve (CPU)" \
      org.opencontainers.image.description="gRPC and OpenAI-compatible HTTP model server for ALiBi language models (BLOOM, MPT)"
# The server's default --model (models/alibi-tiny-en) is relative to here.
WORKDIR /opt/alibi
USER 10001:10001
# gRPC (--port), Prometheus /metrics (--metrics_port) and the OpenAI-compatible
# HTTP API (--http_port, with /metrics too): the server's defaults.
EXPOSE 50051 9464 8000
# gRPC health check (service ""): alibi-cli exits 0 only when SERVING, so the
# container is unhealthy while the model loads and once SIGTERM starts a drain.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/opt/alibi/bin/alibi-cli", "health", "--address", "localhost:50051"]
# SIGTERM: health goes NOT_SERVING, new calls get UNAVAILABLE, in-flight calls
# drain for up to --drain_seconds (10), then exit 0. Give `docker stop` more
# than that: --time 20 (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/alibi/bin/alibi-server"]
CMD ["--device=cpu"]

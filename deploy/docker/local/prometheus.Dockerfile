# Stand-in for prom/prometheus where no registry is reachable: Debian's prometheus, run as nobody
# with its data in /prometheus, as the public image does.
ARG BASE=modalmesh-local/debian:bookworm
FROM ${BASE}
RUN --mount=type=secret,id=build-ca --mount=type=bind,source=with-ca.sh,target=/usr/local/bin/with-ca \
    with-ca sh -c 'apt-get update && apt-get install -y --no-install-recommends prometheus wget' \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]

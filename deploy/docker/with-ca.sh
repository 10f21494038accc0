#!/bin/sh
# Runs one build step with an extra CA bundle for pip, npm and apt (a network whose proxy re-signs TLS),
# when one came as the BuildKit secret `build-ca`; without it, runs the step as it is. The secret is
# mounted for that step only, so the bundle lands in no layer.
ca=/run/secrets/build-ca
if [ -s "$ca" ]; then
  export PIP_CERT="$ca" REQUESTS_CA_BUNDLE="$ca" SSL_CERT_FILE="$ca" NODE_EXTRA_CA_CERTS="$ca"
  printf 'Acquire::https::CAInfo "%s";\n' "$ca" > /tmp/apt-build-ca.conf
  export APT_CONFIG=/tmp/apt-build-ca.conf
fi
exec "$@"

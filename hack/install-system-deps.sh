#!/usr/bin/env bash
# Installs the Debian packages the tests use (openssl, promtool and prometheus) when missing,
# and what builds and runs the operator image (make image, tests/image): mmdebstrap builds the
# Debian root filesystem, umoci and skopeo read the OCI archive, runc runs it, and
# docker-registry (Distribution) is the registry skopeo pushes it to.
set -euo pipefail
missing=()
command -v openssl >/dev/null || missing+=(openssl)
{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || missing+=(prometheus)
for tool in mmdebstrap umoci skopeo runc docker-registry; do
	# runc is in /usr/sbin, which a non-root PATH may not include.
	command -v $tool >/dev/null || [ -x /usr/sbin/$tool ] || missing+=($tool)
done
[ ${#missing[@]} = 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
	echo "install-system-deps: need ${missing[*]}, and apt-get is not available: install them by hand" >&2
	exit 1
fi
sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
echo "install-system-deps: installing ${missing[*]} with apt-get" >&2
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

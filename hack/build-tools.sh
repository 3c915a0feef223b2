#!/usr/bin/env bash
# Builds the Go tools certmint needs (etcd, kube-apiserver, kubectl, helm, and zlint, which
# the tests lint every certificate with) from the Go module proxy and links them into
# .cache/bin. Each build is cached outside the clone, keyed by version, so a second run or a
# fresh clone on the same machine reuses it.
#
# usage: hack/build-tools.sh [etcd] [k8s] [helm] [zlint] [step]     (default: all)
#
# `step` builds smallstep's step-ca and step CLI, which the step issuer's tests run as a real
# external CA.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${CERTMINT_CACHE:-$HOME/.cache/certmint}
bin="$root/.cache/bin"
mkdir -p "$bin" "$cache"

export GOTOOLCHAIN=local GOFLAGS=-mod=mod GOSUMDB=off
command -v go >/dev/null || { echo "build-tools: go is not installed; it is needed to build the control plane" >&2; exit 1; }

# version of a module required by one of our wrapper modules
required() { awk -v m="$2" '$1 == "require" && $2 == m {print $3} $1 == m {print $2}' "$root/hack/$1/go.mod" | head -n1; }

# build DIR WRAPPER LDFLAGS NAME=PACKAGE... : go build each missing binary into DIR, link it into .cache/bin
build() {
	local dir=$1 wrapper=$2 ldflags=$3; shift 3
	local spec name pkg
	mkdir -p "$dir"
	for spec in "$@"; do
		name=${spec%%=*} pkg=${spec#*=}
		if [ ! -x "$dir/$name" ]; then
			echo "build-tools: building $name from $pkg into $dir (first time only; this takes minutes)" >&2
			local started=$SECONDS
			(cd "$root/hack/$wrapper" && go build -trimpath -ldflags "$ldflags" -o "$dir/$name.tmp" "$pkg")
			mv "$dir/$name.tmp" "$dir/$name"
			echo "build-tools: built $name in $((SECONDS - started)) s" >&2
		fi
		ln -sfn "$dir/$name" "$bin/$name"
	done
}

build_etcd() {
	local v; v=$(required etcd go.etcd.io/etcd/server/v3)
	build "$cache/etcd-$v" etcd "-s -w" etcd=go.etcd.io/etcd/server/v3
}

build_k8s() {
	local v; v=$(required k8s k8s.io/kubernetes)
	local minor; minor=$(echo "$v" | cut -d. -f2)
	local flags="-s -w" p
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags="$flags -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
	done
	build "$cache/k8s-$v" k8s "$flags" kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver kubectl=k8s.io/kubernetes/cmd/kubectl
}

build_helm() {
	local v; v=$(required helm helm.sh/helm/v3)
	local kv; kv=$(required k8s k8s.io/kubernetes)
	local kminor; kminor=$(echo "$kv" | cut -d. -f2)
	local flags="-s -w -X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
	flags="$flags -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kminor"
	flags="$flags -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kminor"
	build "$cache/helm-$v" helm "$flags" helm=helm.sh/helm/v3/cmd/helm
}

# zlint, the certificate and CRL linter the tests run on everything certmint issues. It is a
# command, not a library: `go install` (go_install below) at a pinned version needs no wrapper module.
zlint_version=v3.7.3

build_zlint() {
	go_install zlint github.com/zmap/zlint/v3/cmd/zlint "$zlint_version"
}

# step-ca and the step CLI are commands too. Both are pinned to the same release so the CLI
# speaks exactly the CA's API. CGO_ENABLED=0 leaves out the PKCS#11/YubiKey backends (they
# need C libraries) and gives static binaries; a file-based CA needs neither.
step_version=v0.30.2

# go_install NAME PACKAGE VERSION: `go install` one pinned command into the cache, once
go_install() {
	local name=$1 pkg=$2 version=$3
	local dir="$cache/$name-$version"
	if [ ! -x "$dir/$name" ]; then
		echo "build-tools: building $name $version into $dir (first time only; this takes minutes)" >&2
		local started=$SECONDS
		rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
		CGO_ENABLED=0 GOBIN="$dir.tmp" go install -trimpath -ldflags "-s -w -X main.Version=$version" "$pkg@$version"
		rm -rf "$dir" && mv "$dir.tmp" "$dir"
		echo "build-tools: built $name in $((SECONDS - started)) s" >&2
	fi
	ln -sfn "$dir/$name" "$bin/$name"
}

build_step() {
	go_install step-ca github.com/smallstep/certificates/cmd/step-ca "$step_version"
	go_install step github.com/smallstep/cli/cmd/step "$step_version"
}

targets=${*:-etcd k8s helm zlint step}
for t in $targets; do "build_$t"; done

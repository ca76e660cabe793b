#!/bin/sh
# make-base-images.sh: create, without any registry, the base image the Dockerfile builds from.
#
#   portcullis-local/go:<version>  this machine's Go toolchain (GOROOT, as /usr/local/go), CA
#                                  certificates and an empty /tmp, made with `docker import`.
#
# The runtime stage needs no image: `scratch` is built into Docker. The script is idempotent: an
# image that already exists is left alone (pass --force to replace it). It prints the tag on the
# last line of its output, so scripts can capture it:
#
#   GO_IMAGE=$(deploy/docker/make-base-images.sh | tail -n1)
#   go mod vendor   # the builder has no network: it builds from vendor/ (delete it afterwards)
#   docker build --build-arg GO_IMAGE="$GO_IMAGE" -t portcullis .
#
# Environment: GOROOT (default: `go env GOROOT`), GO_IMAGE (default: portcullis-local/go:<version>).
set -eu

force=0
[ "${1:-}" = "--force" ] && force=1

goroot=${GOROOT:-$(go env GOROOT)}
gover=$("$goroot/bin/go" env GOVERSION) # e.g. go1.26.8
tag=${GO_IMAGE:-portcullis-local/go:${gover#go}}

if [ "$force" = 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
	echo "base image exists, nothing to do (--force replaces it)" >&2
	echo "$tag"
	exit 0
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM
mkdir -p "$stage/tmp" "$stage/root" "$stage/etc/ssl/certs"
chmod 1777 "$stage/tmp"
certs=/etc/ssl/certs/ca-certificates.crt
if [ -f "$certs" ]; then
	cp "$certs" "$stage/etc/ssl/certs/"
else
	echo "warning: no $certs; the image will have no CA certificates" >&2
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\n' >"$stage/etc/passwd"
printf 'root:x:0:\n' >"$stage/etc/group"

# One tarball: the staging tree, then GOROOT renamed to usr/local/go. The toolchain's own tests
# are left out (about a fifth of GOROOT, never needed to build).
parent=$(dirname "$goroot")
base=$(basename "$goroot")
echo "importing $goroot ($gover) as $tag ..." >&2
tar -cf - --numeric-owner --owner=0 --group=0 \
	-C "$stage" . \
	-C "$parent" --exclude="$base/test" \
	--transform "s,^$base\\(/\\|\$\\),usr/local/go\\1," "$base" |
	docker import \
		--change 'ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV HOME=/root' \
		--change 'ENV GOTOOLCHAIN=local' \
		--change 'WORKDIR /' \
		--change "LABEL org.opencontainers.image.title=portcullis-local-go org.opencontainers.image.version=$gover" \
		--message "Go toolchain $gover imported by deploy/docker/make-base-images.sh" \
		- "$tag" >&2
echo "$tag"

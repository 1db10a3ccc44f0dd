#!/usr/bin/env bash
# make-golang-image.sh [TAG] — makes a local stand-in for the image
# golang:1.26-bookworm on a machine that cannot pull it, so the sidecar's
# real Dockerfile builds unchanged: a minimal Debian bookworm root file
# system with ca-certificates (and this machine's CA bundle) plus its Go
# toolchain in /usr/local/go, imported with the environment of the upstream image (PATH,
# GOPATH, GOTOOLCHAIN=local, WORKDIR /go).
#
# The root file system comes from mmdebstrap --variant=essential (bookworm's
# Essential packages: sh, coreutils and the like; about 45 s here) when it is
# installed, else from debootstrap --variant=minbase (about 3.5 min here):
# the build stage needs a shell, coreutils and CA certificates, not apt.
#
# It does nothing when TAG exists already (a real pull or an earlier run),
# so it runs once per machine. Needs root, docker, mmdebstrap or debootstrap
# (apt-get install mmdebstrap) and Go 1.26 (GOROOT, or go on PATH). Debian's
# mirror is taken from this machine's apt sources, or from DEBIAN_MIRROR.
set -euo pipefail

tag="${1:-golang:1.26-bookworm}"
suite=bookworm

# One run at a time per machine (CI starts one early, in the background,
# and the test's own run waits for it): later runs find the image.
exec 9>"${TMPDIR:-/tmp}/make-golang-image.lock"
flock 9
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "make-golang-image: $tag exists"
  exit 0
fi
if command -v mmdebstrap >/dev/null; then
  bootstrap=mmdebstrap
elif command -v debootstrap >/dev/null; then
  bootstrap=debootstrap
else
  echo "make-golang-image: needs mmdebstrap or debootstrap (apt-get install mmdebstrap)" >&2
  exit 1
fi
[ "$(id -u)" = 0 ] || { echo "make-golang-image: $bootstrap needs root here" >&2; exit 1; }

goroot="${GOROOT:-$(go env GOROOT)}"
version="$("$goroot/bin/go" env GOVERSION)"
case "$version" in
  go1.26*) ;;
  *) echo "make-golang-image: $goroot is $version; golang:1.26 needs Go 1.26" >&2; exit 1 ;;
esac

# The first Debian mirror in this machine's apt sources: deb822 files
# (URIs:/Suites: stanzas) or one-line "deb URI suite ..." entries. Security
# mirrors carry no base system, so they are skipped.
mirror_from_apt() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$suite" '
      function flush() { if (uri != "" && suites ~ "(^| )" suite "( |$)" && uri !~ /security/) { print uri; exit } uri = ""; suites = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { suites = $0; sub(/^Suites:[[:space:]]*/, "", suites) }
      END { flush() }' "$f" || true
  done
  { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
    awk -v suite="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == suite && $i !~ /security/) { print $i; exit } }' || true
}
mirror="${DEBIAN_MIRROR:-$(mirror_from_apt | sed -n 1p)}"
[ -n "$mirror" ] || { echo "make-golang-image: no Debian mirror for $suite in the apt sources; set DEBIAN_MIRROR" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/var/tmp}/golang-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

echo "make-golang-image: $bootstrap $suite from $mirror"
if [ "$bootstrap" = mmdebstrap ]; then
  mmdebstrap --variant=essential --include=ca-certificates "$suite" "$root" "$mirror" >"$work/bootstrap.log" 2>&1
else
  debootstrap --variant=minbase --include=ca-certificates "$suite" "$root" "$mirror" >"$work/bootstrap.log" 2>&1
fi || {
  tail -n 30 "$work/bootstrap.log" >&2
  [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
  exit 1
}
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# Trust what this machine trusts, so that a build without vendor/ can
# download modules wherever this machine can (through an intercepting
# egress proxy, say).
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi

echo "make-golang-image: adding $version from $goroot"
mkdir -p "$root/usr/local/go" "$root/go/bin" "$root/go/src"
tar -C "$goroot" --exclude=./test --exclude=./api --exclude=./doc -c . | tar -C "$root/usr/local/go" -x
chmod 1777 "$root/go"

echo "make-golang-image: importing as $tag"
tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV GOLANG_VERSION=${version#go}" \
  --change 'ENV GOPATH=/go' \
  --change 'ENV GOTOOLCHAIN=local' \
  --change 'WORKDIR /go' \
  --change 'LABEL tei-sidecar.stand-in="'"$bootstrap"' bookworm and the local Go toolchain, for offline builds"' \
  --change 'CMD ["bash"]' \
  - "$tag" >/dev/null
docker image inspect --format 'make-golang-image: {{.RepoTags}} {{.Size}} bytes' "$tag"

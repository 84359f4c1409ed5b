#!/usr/bin/env bash
# Builds target/debian/gwmo_<version>_<arch>.deb from target/release/gwmo with
# dpkg-deb: the binary, the systemd units (packaging/systemd), /etc/gwmo/server.toml
# as a conffile, and a postinst that makes the gwmo system user, its state directory,
# an admin token and a development PKI. Run `cargo build --release` first.
set -euo pipefail
cd "$(dirname "$0")/../.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

install -D -m 0755 target/release/gwmo "$root/usr/bin/gwmo"
install -d "$root/lib/systemd/system" "$root/usr/share/doc/gwmo"
install -m 0644 packaging/systemd/*.service "$root/lib/systemd/system/"
install -D -m 0644 packaging/deb/server.toml "$root/etc/gwmo/server.toml"
install -m 0644 README.md LICENSE "$root/usr/share/doc/gwmo/"
install -D -m 0755 packaging/deb/postinst "$root/DEBIAN/postinst"
echo /etc/gwmo/server.toml > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/control" <<CONTROL
Package: gwmo
Version: $version
Architecture: $arch
Maintainer: gwmo developers <gwmo@localhost>
Depends: passwd, coreutils
Section: net
Priority: optional
Installed-Size: $(du -sk "$root" | cut -f1)
Description: OMA Device Management 1.2 with DM Gateway bootstrapping
 A DM Server, DM Gateway, Local DM Bootstrap Server and End Device agent in one
 binary, with systemd units for the daemons (Type=notify, hardened).
CONTROL

mkdir -p target/debian
package="target/debian/gwmo_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$package" >/dev/null
echo "$package"

#!/usr/bin/env bash
# Vendors the status page's map libraries and data into static/vendor (run by `make ui-assets`): d3-geo and its
# one dependency d3-array (ISC), topojson-client (ISC) and world-atlas's Natural Earth countries at 1:110m
# (ISC; the data is public domain), at the pinned versions below, fetched with `npm pack` from the npm
# registry into a temporary directory. Only the minified browser builds, the TopoJSON and the licences are
# copied; SHA256SUMS records them, and TestVendoredAssets checks the embedded files against it.
set -euo pipefail

PACKAGES=(d3-array@3.2.5 d3-geo@3.1.2 topojson-client@3.1.0 world-atlas@2.0.2)

here=$(cd "$(dirname "$0")" && pwd)
out=$here/static/vendor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack --silent "${PACKAGES[@]}" >/dev/null)
for p in "${PACKAGES[@]}"; do
	name=${p%@*}
	mkdir -p "$tmp/$name"
	tar -xzf "$tmp/$name-${p#*@}.tgz" -C "$tmp/$name" --strip-components=1
done

rm -rf "$out"
mkdir -p "$out"
cp "$tmp/d3-array/dist/d3-array.min.js" "$out/"
cp "$tmp/d3-array/LICENSE" "$out/LICENSE.d3-array"
cp "$tmp/d3-geo/dist/d3-geo.min.js" "$out/"
cp "$tmp/d3-geo/LICENSE" "$out/LICENSE.d3-geo"
cp "$tmp/topojson-client/dist/topojson-client.min.js" "$out/"
cp "$tmp/topojson-client/LICENSE" "$out/LICENSE.topojson-client"
cp "$tmp/world-atlas/countries-110m.json" "$out/"
cp "$tmp/world-atlas/LICENSE" "$out/LICENSE.world-atlas"
{
	echo "Vendored by scheduler/ui/vendor.sh (make ui-assets) from the npm registry:"
	for p in "${PACKAGES[@]}"; do echo "  $p"; done
	echo "countries-110m.json is world-atlas's TopoJSON of Natural Earth's 1:110m Admin 0 countries"
	echo "(public domain, naturalearthdata.com); the code is under the ISC licences beside it."
} >"$out/README"
(cd "$out" && sha256sum -- * | grep -v ' SHA256SUMS$' >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
echo "vendored into $out:"
cat "$out/SHA256SUMS"

#!/usr/bin/env bash
# Installs what Vantage's tests and demo need when it is missing: Debian packages and Go modules.
# `deps.sh bench` also installs the peers that `make bench` measures Vantage against.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
command -v curl >/dev/null || need+=(curl)
# The status page's browser test (demo) drives Debian's headless Chromium.
command -v chromium >/dev/null || need+=(chromium)
# placement's wrangler differential runs wrangler itself (npm wrangler, installed by the test into its cache).
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# The exporter's tests run blackbox_exporter side by side and a real Prometheus scraping `vantage exporter`.
command -v prometheus-blackbox-exporter >/dev/null || need+=(prometheus-blackbox-exporter)
command -v prometheus >/dev/null || need+=(prometheus)
# storage's second-language decision reader (storage/reader/python) runs on Debian's Python and its redis module.
[ -x /usr/bin/python3 ] || need+=(python3)
/usr/bin/python3 -c 'import redis' 2>/dev/null || need+=(python3-redis)
# deploy's TestImage builds the container image with buildah (FROM scratch, the CA bundle copied in) and runs it.
command -v buildah >/dev/null || need+=(buildah)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
# prober's CAP_NET_RAW test drops to nobody with setpriv in a network namespace made by unshare (util-linux).
command -v setpriv >/dev/null || need+=(util-linux)
# router/proxysync's differential runs real HAProxy and nginx fed by the router's tables.
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx)
if [ "${1:-}" = "bench" ]; then
	command -v fping >/dev/null || need+=(fping)
	command -v hping3 >/dev/null || need+=(hping3)
	# The router front's section: wrk drives nginx and HAProxy (installed above) beside `vantage router`.
	command -v wrk >/dev/null || need+=(wrk)
fi
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${need[*]} and not root: install them, or run as root" >&2
		exit 1
	fi
	echo "deps: installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
go mod download

//go:build tools

// Package deps pins dependencies that packages of this module are about to use, so that go.mod changes in one
// place; a dependency moves out of here once real code imports it.
package deps

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/alicebob/miniredis/v2"
	_ "github.com/miekg/dns"
	_ "github.com/oschwald/geoip2-golang/v2"
	_ "github.com/prometheus-community/pro-bing"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/tailscale/hujson"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "go.uber.org/ratelimit"
	_ "golang.org/x/sys/unix"
	_ "gopkg.in/yaml.v3"
)

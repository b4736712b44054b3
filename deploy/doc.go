// Package deploy holds Vantage's deployment files (systemd units, Kubernetes manifests, Dockerfile) and the
// test that checks them against the vantage binary's real flags.
package deploy

package main

import (
	"context"
	"fmt"
	"io"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/placement"
)

func init() {
	register(command{name: "exporter", summary: "serve blackbox_exporter's /probe from its blackbox.yml, with Vantage's prober", run: runExporter})
}

// runExporter: vantage exporter --config blackbox.yml [--listen 127.0.0.1:9115] [--allow CIDR ...].
func runExporter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("exporter", "", stderr)
	df := addDaemonFlags(fs, daemonFlagOptions{TLS: true})
	cfg := daemon.DefaultExporterConfig()
	fs.StringVar(&cfg.File, "config", "", "blackbox_exporter configuration file, e.g. /etc/prometheus/blackbox.yml (required)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of /probe, /metrics, /healthz and /readyz")
	var allow listFlag
	fs.Var(&allow, "allow", "CIDR lifting the deny policy (repeatable), e.g. 127.0.0.0/8 to probe this host")
	log, stop, err := parseDaemon(ctx, fs, df, args, stderr)
	if err != nil {
		return err
	}
	defer stop()
	if cfg.File == "" {
		return fmt.Errorf("%w: --config is required", errUsage)
	}
	if cfg.Prober.Allow, err = placement.ParsePrefixes("--allow", allow); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	cfg.TLS = df.tlsFiles()
	cfg.Logger = log
	x, err := daemon.NewExporter(cfg)
	if err != nil {
		log.Error("exiting", "err", err)
		return exitError{code: 1}
	}
	fmt.Fprintf(stdout, "exporter serving /probe on %s\n", x.Addr())
	return x.Run(ctx)
}

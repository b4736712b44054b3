package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
)

// workerArg is the first argument of the harness re-executed as a load worker (inside a namespace with
// `ip netns exec`, or on the host for loopback), so that every contender runs in a process of its own.
const workerArg = "__worker"

// WorkerResult is what a worker prints (JSON) when its window ends.
type WorkerResult struct {
	Probes int                  `json:"probes"` // probes completed (answered or not)
	OK     int                  `json:"ok"`     // probes that succeeded
	Wall   float64              `json:"wall_s"` // seconds from the first probe to the last completion
	CPU    float64              `json:"cpu_s"`  // the worker's own user+system CPU over the window (getrusage)
	RTTms  map[string][]float64 `json:"rtt_ms,omitempty"`
	Errors map[string]int       `json:"errors,omitempty"` // a few failure reasons, counted
}

// runWorker runs a load worker: "vantage" probes the targets with Vantage's prober, "blackbox" drives a
// blackbox_exporter's /probe endpoint with the same targets; both with -conc in flight for -dur.
func runWorker(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("bench worker: want vantage or blackbox")
	}
	kind := args[0]
	if kind == "exporter" {
		return serveExporter(ctx, args[1:])
	}
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	targets := fs.String("targets", "", "comma-separated host:port")
	conc := fs.Int("conc", 64, "probes in flight")
	dur := fs.Duration("dur", 5*time.Second, "window")
	rtts := fs.Bool("rtts", false, "record every RTT")
	bbURL := fs.String("url", "", "blackbox_exporter base URL")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ts := strings.Split(*targets, ",")
	if *targets == "" {
		return fmt.Errorf("bench worker: -targets is empty")
	}
	var probe func(ctx context.Context, target string) (float64, error)
	switch kind {
	case "vantage":
		cfg := prober.DefaultConfig()
		cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("198.18.0.0/15")}
		cfg.Count, cfg.Timeout = 1, 5*time.Second
		e, err := prober.New(cfg)
		if err != nil {
			return fmt.Errorf("bench worker: prober: %w", err)
		}
		defer e.Close()
		probe = func(ctx context.Context, target string) (float64, error) {
			r := e.Probe(ctx, prober.Target{Kind: placement.ProbeTCP, Addr: target, Count: 1})
			if !r.Success {
				return 0, fmt.Errorf("%s: %s", r.Class, r.Error)
			}
			return float64(time.Duration(r.Min)) / 1e6, nil
		}
	case "blackbox":
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConns: *conc * 2, MaxIdleConnsPerHost: *conc * 2, IdleConnTimeout: time.Minute,
			DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		}}
		if err := waitBlackbox(ctx, client, *bbURL); err != nil {
			return err
		}
		probe = func(ctx context.Context, target string) (float64, error) {
			return blackboxProbe(ctx, client, *bbURL, target)
		}
	default:
		return fmt.Errorf("bench worker: unknown kind %q", kind)
	}
	res := loadLoop(ctx, ts, *conc, *dur, *rtts, probe)
	return json.NewEncoder(stdout).Encode(res)
}

// loadLoop keeps conc probes in flight over targets (round robin) until dur has passed, then waits for those
// in flight.
func loadLoop(ctx context.Context, targets []string, conc int, dur time.Duration, keepRTT bool,
	probe func(context.Context, string) (float64, error)) WorkerResult {
	var (
		mu   sync.Mutex
		res  = WorkerResult{RTTms: map[string][]float64{}, Errors: map[string]int{}}
		next atomic.Int64
		wg   sync.WaitGroup
	)
	cpu0, start := cpuSelf(), time.Now()
	deadline := start.Add(dur)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t := targets[int(next.Add(1)-1)%len(targets)]
				ms, err := probe(ctx, t)
				mu.Lock()
				res.Probes++
				if err == nil {
					res.OK++
					if keepRTT {
						res.RTTms[t] = append(res.RTTms[t], ms)
					}
				} else if len(res.Errors) < 8 || res.Errors[err.Error()] > 0 {
					res.Errors[err.Error()]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Wall = time.Since(start).Seconds()
	res.CPU = (cpuSelf() - cpu0).Seconds()
	return res
}

// serveExporter runs `vantage exporter` (daemon.NewExporter, as the command does) on -listen with the
// blackbox_exporter configuration -config, allowed to probe loopback and the emulated WAN, until killed.
func serveExporter(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("exporter", flag.ContinueOnError)
	cfg := daemon.DefaultExporterConfig()
	fs.StringVar(&cfg.File, "config", "", "blackbox_exporter configuration")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of /probe")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Prober.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("198.18.0.0/15")}
	x, err := daemon.NewExporter(cfg)
	if err != nil {
		return fmt.Errorf("bench worker: %w", err)
	}
	return x.Run(ctx)
}

// waitBlackbox waits until the exporter answers its /metrics page (it was just started).
func waitBlackbox(ctx context.Context, c *http.Client, base string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := c.Get(base + "/metrics")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench worker: blackbox_exporter at %s did not answer within 15 s: %v", base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// blackboxProbe asks the exporter for one tcp_connect probe of target, as Prometheus does, and returns
// probe_duration_seconds in ms when probe_success is 1.
func blackboxProbe(ctx context.Context, c *http.Client, base, target string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/probe?module=tcp_connect&target="+url.QueryEscape(target), nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return 0, fmt.Errorf("scrape: HTTP %d", resp.StatusCode)
	}
	success, dur, err := parseProbeMetrics(resp.Body)
	if err != nil {
		return 0, err
	}
	if !success {
		return 0, fmt.Errorf("probe_success 0")
	}
	return dur * 1000, nil
}

// parseProbeMetrics reads probe_success and probe_duration_seconds from a blackbox_exporter /probe page.
func parseProbeMetrics(r io.Reader) (success bool, seconds float64, err error) {
	sc := bufio.NewScanner(r)
	var haveS, haveD bool
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		switch name {
		case "probe_success":
			haveS, success = true, strings.TrimSpace(val) == "1"
		case "probe_duration_seconds":
			seconds, err = strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				return false, 0, fmt.Errorf("probe_duration_seconds %q: %w", val, err)
			}
			haveD = true
		}
	}
	if err := sc.Err(); err != nil {
		return false, 0, fmt.Errorf("read /probe page: %w", err)
	}
	if !haveS || !haveD {
		return false, 0, fmt.Errorf("/probe page without probe_success and probe_duration_seconds")
	}
	return success, seconds, nil
}

// cpuSelf returns this process's user+system CPU time.
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package storage

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// pythonReader is the second-language reader of DECISIONS.md.
const pythonReader = "reader/python/vantage_decisions.py"

// pythonWithRedis returns a python3 that imports redis (Debian's python3-redis), or skips the test saying what
// is missing. Debian's /usr/bin/python3 comes first: a python3 earlier on PATH (pyenv) may lack the module.
func pythonWithRedis(t *testing.T) string {
	t.Helper()
	var tried []string
	cands := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		cands = append(cands, p)
	}
	for _, p := range cands {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if out, err := exec.Command(p, "-c", "import redis").CombinedOutput(); err != nil {
			tried = append(tried, p+": "+strings.TrimSpace(string(out)))
			continue
		}
		return p
	}
	if len(tried) == 0 {
		t.Skip("skipping: no python3 (Debian: apt-get install python3 python3-redis; .ci/deps.sh does)")
	}
	t.Skipf("skipping: no python3 with the redis module (Debian: apt-get install python3-redis; .ci/deps.sh does): %s",
		strings.Join(tried, "; "))
	return ""
}

// pyDecision is what the Python reader prints per decision.
type pyDecision struct {
	Version     int64   `json:"version"`
	Fingerprint string  `json:"fingerprint"`
	Codec       int     `json:"codec"`
	App         string  `json:"app"`
	Mode        string  `json:"mode"`
	Target      string  `json:"target"`
	BestPoP     string  `json:"best_pop"`
	Verdict     string  `json:"verdict"`
	Status      string  `json:"status"`
	Estimated   bool    `json:"estimated"`
	Confidence  float64 `json:"confidence"`
	ComputedAt  *int64  `json:"computed_at"`
	NextRecheck *int64  `json:"next_recheck"`
	ExpiresAt   *int64  `json:"expires_at"`
	Candidates  []struct {
		PoP   string  `json:"pop"`
		RTTMs float64 `json:"rtt_ms"`
	} `json:"candidates"`
	Reason     string  `json:"reason"`
	Fence      *int64  `json:"fence"`
	FenceLease *string `json:"fence_lease"`
}

// nanos is t as the Python reader prints it: Unix nanoseconds, nil for the zero time.
func nanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixNano()
	return &n
}

// TestPythonReaderDecodesEveryField has the scheduler's write path (a lease's fencing token, then
// PutDecisionFenced; PutDecision unfenced) store decisions with every field set in a real redis-server, runs the
// Python reader against it, and compares what it prints field for field with what was written: the layout in
// DECISIONS.md is enough to read decisions without Go. A codec-1 value (written by older binaries) reads with no
// expiry and no reason; a codec from the future is refused by both readers, by name.
func TestPythonReaderDecodesEveryField(t *testing.T) {
	py := pythonWithRedis(t)
	srv := redistest.Start(t)
	ctx := testCtx(t)
	st, err := Open(ctx, Options{Addrs: []string{srv.Addr()}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	at := time.Date(2026, 12, 3, 16, 47, 5, 123456789, time.UTC)
	want := []placement.Decision{
		{App: "shop-api", Mode: placement.ModeSmart, Target: "db.example.com:5432", BestPoP: "FRA",
			Candidates: []placement.Candidate{{PoP: "FRA", RTTMs: 1.25}, {PoP: "AMS", RTTMs: 7.000001}, {PoP: "LHR", RTTMs: 12.5e-3}},
			Verdict:    placement.VerdictUnicast, Status: placement.StatusSuccess, Confidence: 0.8125,
			ComputedAt: at, NextRecheck: at.Add(5 * time.Minute), ExpiresAt: at.Add(15 * time.Minute)},
		{App: "geo|anycast", Mode: placement.ModeHostname, Target: "api.example.net", BestPoP: "",
			Verdict: placement.VerdictAnycast, Status: placement.StatusNoValidHosts, Estimated: true, Confidence: 0.1,
			ComputedAt: at.Add(time.Nanosecond), Reason: "every host is anycast: run where the request lands — ünïcode"},
		{App: "region-app", Mode: placement.ModeRegion, Target: "aws:us-east-1", BestPoP: "IAD",
			Candidates: []placement.Candidate{{PoP: "IAD", RTTMs: 0.9}},
			Status:     placement.StatusSuccess, Estimated: true, Confidence: 1, ComputedAt: at},
		{App: "none-app", Mode: placement.ModeNone, ComputedAt: time.Unix(1, 0).UTC()},
	}
	lease := "scheduler"
	token, ok, err := st.AcquireLease(ctx, lease, "test-holder", time.Minute)
	if err != nil || !ok {
		t.Fatalf("AcquireLease: ok %v err %v", ok, err)
	}
	fences, fenceLeases := map[string]*int64{}, map[string]*string{}
	for i, d := range want {
		if i == len(want)-1 {
			_, err = st.PutDecision(ctx, d) // unfenced: no fence stored
		} else {
			_, err = st.PutDecisionFenced(ctx, d, Fence{lease, token})
			fences[d.App], fenceLeases[d.App] = &token, &lease
		}
		if err != nil {
			t.Fatalf("put %s: %v", d.App, err)
		}
	}
	// shop-api changes placement once more: version 2.
	want[0].BestPoP, want[0].Candidates = "AMS", append([]placement.Candidate{{PoP: "AMS", RTTMs: 2}}, want[0].Candidates[:2]...)
	if _, err := st.PutDecisionFenced(ctx, want[0], Fence{lease, token}); err != nil {
		t.Fatal(err)
	}
	// What Go reads back is the reference, with its versions.
	for i := range want {
		d, ok, err := st.Decision(ctx, want[i].App)
		if err != nil || !ok {
			t.Fatalf("Decision(%s): %v %v", want[i].App, ok, err)
		}
		want[i] = d
	}
	if want[0].Version != 2 || want[1].Version != 1 {
		t.Fatalf("versions %d and %d, want 2 and 1", want[0].Version, want[1].Version)
	}
	// A codec-1 value, as a binary before expiry and reasons wrote it.
	old := placement.Decision{App: "old-codec", Mode: placement.ModeHost, Target: "10.0.0.1:443", BestPoP: "SYD",
		Candidates: []placement.Candidate{{PoP: "SYD", RTTMs: 3.5}}, Status: placement.StatusSuccess, Confidence: 0.5,
		ComputedAt: at, NextRecheck: at.Add(time.Minute), Version: 7}
	p1 := encodeDecision(&old)
	p1[0] = 1
	p1 = p1[:len(p1)-2] // no expiry (varint 0), no reason (length 0)
	b := DecisionBucket(old.App)
	if _, err := srv.Do(ctx, "HSET", KeyDecisions(b), old.App, "7|"+fingerprint(&old)+"|"+string(p1)); err != nil {
		t.Fatal(err)
	}
	// And a fence as those binaries wrote it: a bare token, no lease.
	if _, err := srv.Do(ctx, "HSET", KeyDecisionFences(b), old.App, "42"); err != nil {
		t.Fatal(err)
	}
	legacyToken := int64(42)
	fences[old.App] = &legacyToken
	want = append(want, old)
	// A codec from the future: both readers refuse it by name.
	future := placement.Decision{App: "future-codec", Mode: placement.ModeSmart}
	p3 := encodeDecision(&future)
	p3[0] = 3
	if _, err := srv.Do(ctx, "HSET", KeyDecisions(DecisionBucket(future.App)), future.App, "1|0|"+string(p3)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Decision(ctx, future.App); err == nil || !strings.Contains(err.Error(), "codec 3 is newer than this binary reads (1 to 2): upgrade vantage") {
		t.Errorf("Go reading codec 3: %v, want an error naming the codec", err)
	}

	cmd := exec.CommandContext(ctx, py, pythonReader, "--redis", srv.Addr())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err == nil || !strings.Contains(stderr.String(), "codec 3 is newer than this reader knows (1 to 2)") {
		t.Errorf("python reader: exit %v, stderr %q: want exit 1 naming codec 3", err, stderr.String())
	}
	got := map[string]pyDecision{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var d pyDecision
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("python printed %q: %v", sc.Text(), err)
		}
		got[d.App] = d
	}
	if len(got) != len(want) {
		t.Errorf("python read %d decisions, want %d:\n%s\nstderr: %s", len(got), len(want), out, stderr.String())
	}
	for _, w := range want {
		g, ok := got[w.App]
		if !ok {
			t.Errorf("python did not read %q", w.App)
			continue
		}
		codec := decisionCodec
		if w.App == old.App {
			codec = 1
		}
		exp := pyDecision{Version: w.Version, Fingerprint: fingerprint(&w), Codec: codec, App: w.App, Mode: string(w.Mode),
			Target: w.Target, BestPoP: w.BestPoP, Verdict: string(w.Verdict), Status: string(w.Status),
			Estimated: w.Estimated, Confidence: w.Confidence, ComputedAt: nanos(w.ComputedAt),
			NextRecheck: nanos(w.NextRecheck), ExpiresAt: nanos(w.ExpiresAt), Reason: w.Reason, Fence: fences[w.App],
			FenceLease: fenceLeases[w.App]}
		exp.Candidates = g.Candidates[:0:0]
		for _, c := range w.Candidates {
			exp.Candidates = append(exp.Candidates, struct {
				PoP   string  `json:"pop"`
				RTTMs float64 `json:"rtt_ms"`
			}{c.PoP, c.RTTMs})
		}
		if !reflect.DeepEqual(g, exp) {
			t.Errorf("%s:\npython %+v\nwant   %+v", w.App, g, exp)
		}
	}

	// One application by name, as a router does on a message of vantage:decisions.
	one, err := exec.CommandContext(ctx, py, pythonReader, "--redis", srv.Addr(), "--app", "shop-api", "--app", "absent").Output()
	if err != nil {
		t.Fatalf("python --app: %v", err)
	}
	if lines := strings.Split(strings.TrimSpace(string(one)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], `"app": "shop-api"`) {
		t.Errorf("python --app shop-api --app absent printed %q, want shop-api's decision alone", one)
	}
}

// TestDecisionWorkedExample checks the worked example of DECISIONS.md against the encoder, byte for byte.
func TestDecisionWorkedExample(t *testing.T) {
	doc, err := os.ReadFile("DECISIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "## Worked example")
	if !ok {
		t.Fatal("DECISIONS.md has no worked example")
	}
	_, block, _ = strings.Cut(block, "```\n")
	block, _, _ = strings.Cut(block, "```")
	lines := strings.Split(block, "\n")
	hexByte := regexp.MustCompile(`^[0-9a-f]{2}$`)
	var b []byte
	for _, l := range lines[1:] { // the first line is the framing
		for _, f := range strings.Fields(l) {
			if !hexByte.MatchString(f) {
				break
			}
			x, _ := hex.DecodeString(f)
			b = append(b, x...)
		}
	}
	d := placement.Decision{App: "api", Mode: placement.ModeSmart, Target: "db.example.com:5432", BestPoP: "FRA",
		Verdict: placement.VerdictUnicast, Status: placement.StatusSuccess, Confidence: 0.5,
		ComputedAt: time.Unix(1, 0), Candidates: []placement.Candidate{{PoP: "FRA", RTTMs: 1.5}}}
	if enc := encodeDecision(&d); !bytes.Equal(enc, b) {
		t.Errorf("DECISIONS.md's example is\n% x\nthe encoder writes\n% x", b, enc)
	}
	if want := "1|" + fingerprint(&d) + "|"; strings.TrimSpace(lines[0]) != want {
		t.Errorf("DECISIONS.md's example framing %q, want %q", lines[0], want)
	}
	if got, err := decodeDecision("example", "1|"+fingerprint(&d)+"|"+string(b)); err != nil || got.App != "api" || got.Candidates[0].RTTMs != 1.5 {
		t.Errorf("decoding the example: %+v %v", got, err)
	}
	if abs, err := filepath.Abs(pythonReader); err == nil {
		if _, err := os.Stat(abs); err != nil {
			t.Errorf("DECISIONS.md names %s: %v", pythonReader, err)
		}
	}
}

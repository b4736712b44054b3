package placement

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// MaxConfigBytes is the largest wrangler config the parsers read (1 MiB): real ones are a few KiB, and the cap
// keeps a stray file or a hostile input from costing more than a moment.
const MaxConfigBytes = 1 << 20

// The errors a config can fail with, for errors.Is. Every error the parsers return for a bad config is a
// *ConfigError (or an errors.Join of them) wrapping one of these.
var (
	ErrSyntax      = errors.New("syntax error")                    // not TOML / not JSON with comments, or nested too deep
	ErrTooMany     = errors.New("too many errors")                 // the problems past the first 10 of a file
	ErrTooLarge    = errors.New("config too large")                // more than MaxConfigBytes
	ErrFormat      = errors.New("unknown config format")           // LoadFile: not .toml, .json or .jsonc
	ErrType        = errors.New("wrong type")                      // e.g. host = 5432, placement = "smart"
	ErrUnknownKey  = errors.New("unknown key")                     // a key in a placement table we do not know: a warning
	ErrDuplicate   = errors.New("duplicate")                       // a key twice (JSONC), an application twice (LoadDir)
	ErrBadName     = errors.New("invalid application name")        // name missing or not a valid Worker name
	ErrConflict    = errors.New("placement options are exclusive") // two of smart, region, host, hostname
	ErrUnknownMode = errors.New("unknown placement mode")          // mode other than "smart", "targeted", "off"
	ErrNoMode      = errors.New("placement mode missing")          // a placement table with neither mode nor a target
	ErrNoEnv       = errors.New("unknown environment")             // --env names an environment the config lacks
	ErrNoTarget    = errors.New("placement target missing")        // mode "targeted" without region/host/hostname
	ErrBadRegion   = errors.New("invalid region")                  // not provider:region, or not in the catalogue
	ErrBadHost     = errors.New("invalid host")                    // not host:port, bad port, bad name, denied IP
	ErrBadHostname = errors.New("invalid hostname")                // scheme, path, port, bad characters, denied IP
	ErrBadHint     = errors.New("invalid hint")                    // Validate only: too long, spaces or non-ASCII
	ErrBadAccount  = errors.New("invalid account id")              // too long, or not letters, digits, '-', '_'
)

// Config is one application's placement, read from its wrangler config for one environment, resolved as
// wrangler resolves it: an environment's own name, account_id and placement, else the top level's (the name
// with "-ENV" appended).
type Config struct {
	App string // the application's name: the environment's name, else the top-level name (+ "-" + Env)
	// Env is the wrangler environment the config was resolved for (as wrangler's --env); "" for the top level.
	Env string
	// AccountID is the account_id the environment sets, else the top level's; "" when neither does (an empty
	// account_id is ignored, with a warning, as wrangler does).
	AccountID string
	Mode      Mode   // ModeNone when the config has no placement or says mode = "off"
	Region    string // ModeRegion only: a catalogue region ID, e.g. "aws:us-east-1"
	Host      string // ModeHost only: host:port, host lower-cased, IPv6 in brackets, e.g. "db.example.com:5432"
	Hostname  string // ModeHostname only: lower-cased, no trailing dot, e.g. "api.example.com"
	// Hint is wrangler's optional hint beside mode "smart" (or "off"), kept as written (at most MaxHintLen
	// printable bytes, no spaces); Vantage's smart analysis places from telemetry and does not use it.
	Hint   string
	Source string // the file the config came from, as named to the parser
	Legacy bool   // the placement was written as [unsafe.metadata.placement]
	// Warnings are what the config says that Vantage reads past, as wrangler does: unknown keys in a placement
	// table, an empty account_id, a target beside mode "off", a hint the platform would not take. Each is
	// formatted like a ConfigError (file:line:col: field: "value": reason); nil when there are none.
	Warnings []string
}

// Target returns what the placement is aimed at: the region ID, host:port or hostname; "" for ModeSmart and
// ModeNone.
func (c Config) Target() string {
	switch c.Mode {
	case ModeRegion:
		return c.Region
	case ModeHost:
		return c.Host
	case ModeHostname:
		return c.Hostname
	}
	return ""
}

// ProbeKind returns how the target is probed: TCP CONNECT for a host (to its port), HTTP HEAD for a hostname,
// TCP for a region (to the region's endpoint, chosen by the scheduler); "" when there is nothing to probe.
func (c Config) ProbeKind() ProbeKind {
	switch c.Mode {
	case ModeHost, ModeRegion:
		return ProbeTCP
	case ModeHostname:
		return ProbeHTTP
	}
	return ""
}

// ConfigError is one problem with a config, located as precisely as the format allows. Its text is
//
//	file:line:col: field: "value": reason
//
// where line and col (1-based, col in bytes) are left out when unknown, field when the problem is not about one
// key (a syntax error), and the value when there is none to show.
type ConfigError struct {
	File  string // as named to the parser, e.g. "apps/shop/wrangler.toml"; shown as <input> when empty
	Line  int    // 1-based; 0 when unknown
	Col   int    // 1-based byte column of the key (or of the syntax error); 0 when unknown
	Field string // dotted key path, e.g. "placement.host"; "" for file-level problems
	// Value is the offending value: a string as written, an int64, float64 or bool for a scalar of the wrong
	// type, nil when there is no single value to show (tables, arrays, missing keys).
	Value any
	Err   error // wraps one of the Err* sentinels, and the policy's or geo's error where they decided
}

// Error formats the error as file:line:col: field: "value": reason (see ConfigError).
func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(cmp.Or(e.File, "<input>"))
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Col)
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message())
	return b.String()
}

// Unwrap returns the reason.
func (e *ConfigError) Unwrap() error { return e.Err }

// Message returns the error without its location and field: the value (when there is one) and the reason,
// e.g. `"db.example.com": missing port: want host:port, e.g. "db.example.com:5432"`.
func (e *ConfigError) Message() string {
	var b strings.Builder
	switch v := e.Value.(type) {
	case string:
		fmt.Fprintf(&b, "%q: ", v)
	case int64, float64, bool:
		fmt.Fprintf(&b, "%v: ", v)
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// reason is a ConfigError's Err: its text is msg (or, when msg is empty, the cause's), and it unwraps to the
// sentinel and the cause, so that errors.Is finds both ErrBadHost and ErrDenied in a refused address.
type reason struct {
	sentinel error
	msg      string
	cause    error
}

func (r *reason) Error() string {
	if r.msg == "" && r.cause != nil {
		return r.cause.Error()
	}
	return r.msg
}

func (r *reason) Unwrap() []error {
	if r.cause == nil {
		return []error{r.sentinel}
	}
	return []error{r.sentinel, r.cause}
}

// because returns a reason with a formatted message.
func because(sentinel error, format string, args ...any) error {
	return &reason{sentinel: sentinel, msg: fmt.Sprintf(format, args...)}
}

// decidedBy returns a reason whose text is cause's own (the policy's or geo's message says it all).
func decidedBy(sentinel, cause error) error {
	return &reason{sentinel: sentinel, cause: cause}
}

// Parser parses and validates wrangler configs. The zero Parser applies no deny policy: use DefaultParser.
// A Parser is a value, safe for concurrent use.
type Parser struct {
	// Policy judges IP literals written as host or hostname. Names are judged later, when the prober resolves
	// them.
	Policy Policy
	// Env is the wrangler environment to read, as wrangler's --env: "" reads the top level. With Env set, the
	// top level is checked too (as wrangler does), and a config that defines environments but not this one is
	// refused (ErrNoEnv); one that defines none is read with a warning. LoadDir and LoadFileEnvs read every
	// environment when Env is "".
	Env string
}

// DefaultParser returns the Parser the package-level functions use: DefaultPolicy with no allow-list.
func DefaultParser() Parser { return Parser{Policy: DefaultPolicy()} }

// ParseWranglerTOML parses the wrangler.toml in data (name is the file name used in errors) with
// DefaultParser. See Parser.ParseTOML.
func ParseWranglerTOML(name string, data []byte) (Config, error) {
	return DefaultParser().ParseTOML(name, data)
}

// ParseWranglerJSONC parses the wrangler.jsonc (or .json) in data with DefaultParser. See Parser.ParseJSONC.
func ParseWranglerJSONC(name string, data []byte) (Config, error) {
	return DefaultParser().ParseJSONC(name, data)
}

// LoadFile reads and parses one wrangler config with DefaultParser. See Parser.LoadFile.
func LoadFile(path string) (Config, error) { return DefaultParser().LoadFile(path) }

// LoadDir reads every wrangler config in dir with DefaultParser. See Parser.LoadDir.
func LoadDir(dir string) ([]Config, error) { return DefaultParser().LoadDir(dir) }

// ParseTOML parses a wrangler.toml: the top-level name, and the [placement] table
//
//	[placement]
//	mode = "smart"                  # or: region = "aws:us-east-1"
//	                                #     host = "db.example.com:5432"
//	                                #     hostname = "api.example.com"
//
// or its legacy form [unsafe.metadata.placement] (same keys), and account_id; and the same keys of the
// environment p.Env, [env.NAME] (see Config for how an environment inherits). The rules are wrangler's:
// mode "smart" (with an optional hint), "off", or "targeted" (optional beside exactly one of region, host,
// hostname); unknown keys in a placement table are warnings. Vantage is stricter where a value could never be
// placed: a region must be in the catalogue, a host needs a port, a hostname is not a URL, IP literals pass
// the deny policy, mode "targeted" needs a target, and the name is a Worker name. Every other wrangler key
// (main, compatibility_date, [vars] ...) is ignored. name names the file in errors.
// On failure the Config is zero and the error is a *ConfigError, or an errors.Join of them, one per problem
// (at most 10, then one ErrTooMany counting the rest), in the order of the file.
func (p Parser) ParseTOML(name string, data []byte) (Config, error) {
	if err := checkSize(name, data); err != nil {
		return Config{}, err
	}
	if err := checkNesting(name, data, true); err != nil {
		return Config{}, err
	}
	doc, err := readTOML(name, data)
	if err != nil {
		return Config{}, err
	}
	return p.build(doc, p.Env)
}

// ParseJSONC parses a wrangler.jsonc or wrangler.json (JSON with comments and trailing commas): the top-level
// "name" and the "placement" object, or its legacy form "unsafe": {"metadata": {"placement": {...}}}, with the
// same keys and rules as ParseTOML, environments under "env": {"NAME": {...}}. Keys are matched exactly
// (case-sensitively); a key placement reads given twice in one object is an error (wrangler keeps the last).
func (p Parser) ParseJSONC(name string, data []byte) (Config, error) {
	if err := checkSize(name, data); err != nil {
		return Config{}, err
	}
	if err := checkNesting(name, data, false); err != nil {
		return Config{}, err
	}
	doc, err := readJSONC(name, data)
	if err != nil {
		return Config{}, err
	}
	return p.build(doc, p.Env)
}

// LoadFile reads the wrangler config at path, choosing the format by extension: .toml, or .json / .jsonc,
// and returns the environment p.Env.
func (p Parser) LoadFile(path string) (Config, error) {
	doc, err := readFile(path)
	if err != nil {
		return Config{}, err
	}
	return p.build(doc, p.Env)
}

// LoadFileEnvs reads the wrangler config at path like LoadFile and returns one Config per environment: the
// top level, then every [env.NAME] in name order; only p.Env when it is set. A problem of the top level fails
// them all (every environment inherits from it); an environment's own problems fail that environment only,
// and the others are returned with the errors.
func (p Parser) LoadFileEnvs(path string) ([]Config, error) {
	doc, err := readFile(path)
	if err != nil {
		return nil, err
	}
	if p.Env != "" {
		c, err := p.build(doc, p.Env)
		if err != nil {
			return nil, err
		}
		return []Config{c}, nil
	}
	return p.buildAll(doc)
}

// readFile reads and decodes the wrangler config at path, by its extension.
func readFile(path string) (rawDoc, error) {
	toml := false
	switch strings.ToLower(filepath.Ext(path)) {
	case ".toml":
		toml = true
	case ".json", ".jsonc":
	default:
		return rawDoc{}, &ConfigError{File: path, Err: because(ErrFormat, "%s (want .toml, .json or .jsonc)", ErrFormat)}
	}
	// Stat first: opening a FIFO that happens to be named *.toml would block.
	if fi, err := os.Stat(path); err != nil {
		return rawDoc{}, fmt.Errorf("placement: %w", err)
	} else if !fi.Mode().IsRegular() {
		return rawDoc{}, fmt.Errorf("placement: %s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return rawDoc{}, fmt.Errorf("placement: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return rawDoc{}, fmt.Errorf("placement: read %s: %w", path, err)
	}
	if err := checkSize(path, data); err != nil {
		return rawDoc{}, err
	}
	if err := checkNesting(path, data, toml); err != nil {
		return rawDoc{}, err
	}
	if toml {
		return readTOML(path, data)
	}
	return readJSONC(path, data)
}

// LoadDir reads every file in dir (not its subdirectories) named *.toml, *.json or *.jsonc, in file-name
// order, and returns one application per (file, environment), as LoadFileEnvs reads them: the top level and
// every environment (NAME-ENV unless it names itself), or only p.Env when it is set. Symbolic links are
// followed, directories and special files skipped. Bad input loses nothing else: the configs of the good files
// and environments are returned together with an errors.Join of every bad one's errors. Two configs naming the
// same application are an error (ErrDuplicate) on the second; the first is kept.
func (p Parser) LoadDir(dir string) ([]Config, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("placement: %w", err)
	}
	var (
		out  []Config
		errs []error
		seen = map[string]Config{} // app -> where it was first defined
	)
	for _, e := range entries { // os.ReadDir sorts by name
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".toml", ".json", ".jsonc":
		default:
			continue
		}
		path := filepath.Join(dir, e.Name())
		mode := e.Type()
		if mode&fs.ModeSymlink != 0 {
			if fi, err := os.Stat(path); err == nil {
				mode = fi.Mode() // else LoadFileEnvs reports the dangling link
			}
		}
		if mode.IsDir() || mode&(fs.ModeNamedPipe|fs.ModeSocket|fs.ModeDevice|fs.ModeCharDevice|fs.ModeIrregular) != 0 {
			continue // a directory or a special file that merely has a config's name
		}
		cs, err := p.LoadFileEnvs(path)
		if err != nil {
			errs = append(errs, err)
		}
		for _, c := range cs {
			if first, dup := seen[c.App]; dup {
				errs = append(errs, &ConfigError{File: path, Field: envField(c.Env, "name"), Value: c.App,
					Err: because(ErrDuplicate, "%s application: already defined in %s", ErrDuplicate, where(first))})
				continue
			}
			seen[c.App] = c
			out = append(out, c)
		}
	}
	return out, errors.Join(errs...)
}

// where names the file, and the environment, a config came from.
func where(c Config) string {
	if c.Env == "" {
		return c.Source
	}
	return fmt.Sprintf("%s (env %s)", c.Source, c.Env)
}

// envField returns the key path of key in environment env ("" for the top level).
func envField(env, key string) string {
	if env == "" {
		return key
	}
	return "env." + env + "." + key
}

func checkSize(name string, data []byte) error {
	if len(data) > MaxConfigBytes {
		return &ConfigError{File: name, Err: because(ErrTooLarge, "%s: more than %d bytes", ErrTooLarge, MaxConfigBytes)}
	}
	return nil
}

// The document model both readers produce: just the keys placement reads, with their positions.

// rawValue is one value as read, with its type and a way to find where it was written.
type rawValue struct {
	val  any    // the string, or int64/float64/bool for a scalar of another type; nil for the rest
	kind string // "string", "integer", "table", "object", ... in the format's own words
	pos  func() (line, col int)
}

func (v rawValue) str() (string, bool) {
	s, ok := v.val.(string)
	return s, ok && v.kind == "string"
}

// rawField is a key of a placement table.
type rawField struct {
	key string
	rawValue
}

// rawTable is [placement] or [unsafe.metadata.placement], of the top level or an environment.
type rawTable struct {
	path   string // "placement", "unsafe.metadata.placement", "env.NAME.placement" ...
	legacy bool
	value  rawValue   // the table itself (kind tells whether it is one)
	fields []rawField // in a fixed order: known keys first, then unknown ones sorted
}

// rawEnv is the top level or one environment: the keys placement reads.
type rawEnv struct {
	name    string    // the environment's name; "" for the top level
	path    string    // "env.NAME"; "" for the top level
	value   rawValue  // the environment's table itself; zero for the top level
	appName *rawValue // name; nil when absent
	account *rawValue // account_id; nil when absent
	tables  []rawTable
}

// rawDoc is a parsed config.
type rawDoc struct {
	file   string
	top    rawEnv
	envKey *rawValue // the env key itself; nil when absent
	envs   []rawEnv  // by name
	errs   []error   // problems the reader found (duplicate keys)
	table  string    // "table" or "object", for messages
}

// knownKeys are the keys of a placement table, in the order they are checked.
var knownKeys = []string{"mode", "region", "host", "hostname", "hint"}

// MaxHintLen bounds the placement hint's length.
const MaxHintLen = 64

// sortFields orders fields as knownKeys, then the unknown keys by name, so errors come out in a stable order.
func sortFields(fs []rawField) {
	rank := func(k string) int {
		if i := slices.Index(knownKeys, k); i >= 0 {
			return i
		}
		return len(knownKeys)
	}
	slices.SortStableFunc(fs, func(a, b rawField) int {
		if ra, rb := rank(a.key), rank(b.key); ra != rb {
			return ra - rb
		}
		return strings.Compare(a.key, b.key)
	})
}

// placed is what one placement table says.
type placed struct {
	mode   Mode
	target string // normalised; "" for ModeSmart and ModeNone
	hint   string // ModeSmart only
	legacy bool
}

// buildTable checks one placement table by wrangler's rules (a hint goes with mode "smart" or "off", a target
// with mode "targeted" or "off", mode is required without a target) and Vantage's stricter ones on the
// target's value, and returns what it places; ok is false when the table had errors, which went to col.
func (p Parser) buildTable(col *collector, t rawTable) (pl placed, ok bool) {
	ok = true
	bad := func(f *rawField, err error) {
		col.fail(t.path+"."+f.key, &f.rawValue, err)
		ok = false
	}
	var (
		modeField, hintField *rawField
		targets              []*rawField // region, host, hostname: exclusive, in the order written
		unknown              []string
	)
	for i := range t.fields {
		switch f := &t.fields[i]; f.key {
		case "mode":
			modeField = f
		case "hint":
			hintField = f
		case "region", "host", "hostname":
			targets = append(targets, f)
		default:
			unknown = append(unknown, f.key)
			col.warn(t.path+"."+f.key, &f.rawValue, because(ErrUnknownKey,
				"%s, ignored (want mode, region, host, hostname or hint)", ErrUnknownKey))
		}
	}
	slices.SortStableFunc(targets, func(a, b *rawField) int { return comparePos(a.pos, b.pos) })

	var modeWord, hint, target string
	if modeField != nil {
		if s, isStr := modeField.str(); !isStr {
			bad(modeField, typeError(modeField.kind, "a string"))
		} else if modeWord = s; s != "smart" && s != "off" && s != "targeted" {
			bad(modeField, because(ErrUnknownMode, "%s (want \"smart\", \"targeted\" or \"off\")", ErrUnknownMode))
		}
	}
	for i, f := range targets {
		s, isStr := f.str()
		if !isStr {
			bad(f, typeError(f.kind, "a string"))
			continue
		}
		var err error
		switch f.key {
		case "region":
			s, err = checkRegion(s)
		case "host":
			s, err = p.checkHost(s)
		case "hostname":
			s, err = p.checkHostname(s)
		}
		if err != nil {
			bad(f, err)
		} else if i == 0 {
			target = s
		}
	}
	if hintField != nil {
		var isStr bool
		if hint, isStr = hintField.str(); !isStr {
			bad(hintField, typeError(hintField.kind, "a string"))
		}
	}

	switch {
	case hintField != nil && len(targets) > 0:
		bad(hintField, because(ErrConflict, "set together with %s.%s: a hint goes with mode \"smart\", "+
			"a region, host or hostname with mode \"targeted\"", t.path, targets[0].key))
	case len(targets) > 1:
		// The first one written stands; the others conflict with it.
		for _, h := range targets[1:] {
			bad(h, because(ErrConflict, "set together with %s.%s: region, host and hostname are exclusive",
				t.path, targets[0].key))
		}
	}
	switch {
	case modeField == nil && len(targets) == 0:
		what := "want mode = \"smart\", \"targeted\" or \"off\", or one of region, host or hostname"
		if hintField != nil {
			what = "a hint goes with mode = \"smart\""
		}
		if len(unknown) > 0 {
			what += " (unknown keys ignored: " + strings.Join(unknown, ", ")
			if slices.ContainsFunc(unknown, func(k string) bool { return slices.Contains(knownKeys, strings.ToLower(k)) }) {
				what += "; keys are lower-case"
			}
			what += ")"
		}
		col.fail(t.path+".mode", &rawValue{pos: t.value.pos}, because(ErrNoMode, "%s: %s", ErrNoMode, what))
		ok = false
	case modeField == nil:
	case modeWord == "smart" && len(targets) > 0:
		bad(targets[0], because(ErrConflict, "set together with mode %q: a %s is a placement of its own, "+
			"drop mode or write mode = \"targeted\"", modeWord, targets[0].key))
	case modeWord == "targeted" && hintField != nil && len(targets) == 0:
		bad(hintField, because(ErrConflict, "a hint goes with mode \"smart\" only"))
	case modeWord == "targeted" && len(targets) == 0:
		// wrangler passes this on; there is nothing to place it at.
		bad(modeField, because(ErrNoTarget, "%s: mode \"targeted\" needs one of region, host or hostname", ErrNoTarget))
	case modeWord == "off" && hint != "":
		bad(hintField, because(ErrConflict, "a hint goes with mode \"smart\" only, not with mode \"off\""))
	}
	if !ok {
		return placed{}, false
	}
	pl.legacy = t.legacy
	switch {
	case len(targets) == 1 && modeWord == "off":
		col.warn(t.path+"."+targets[0].key, &targets[0].rawValue,
			errors.New("ignored: mode is \"off\", so nothing is placed"))
	case len(targets) == 1:
		pl.mode, pl.target = Mode(targets[0].key), target
	case modeWord == "smart":
		pl.mode = ModeSmart
		if err := checkHint(hint); err != nil {
			col.warn(t.path+".hint", &hintField.rawValue, fmt.Errorf("%w; Vantage does not use hints, and drops this one", err))
		} else {
			pl.hint = hint
		}
	}
	return pl, true
}

// comparePos orders two positions, line first.
func comparePos(a, b func() (int, int)) int {
	la, ca := a()
	lb, cb := b()
	return cmp.Or(cmp.Compare(la, lb), cmp.Compare(ca, cb))
}

// checkHint checks a placement hint: "" (none), or printable ASCII without spaces, at most MaxHintLen bytes.
// wrangler takes any string; Vantage keeps only hints like these (and uses none).
func checkHint(s string) error {
	if len(s) > MaxHintLen {
		return because(ErrBadHint, "%s: %d bytes, at most %d", ErrBadHint, len(s), MaxHintLen)
	}
	for _, r := range s {
		if r <= ' ' || r > '~' {
			return because(ErrBadHint, "%s: %q: want printable ASCII without spaces", ErrBadHint, r)
		}
	}
	return nil
}

func errLineCol(err error) (line, col int) {
	if ce, ok := err.(*ConfigError); ok {
		return ce.Line, ce.Col
	}
	return 0, 0
}

func typeError(got, want string) error {
	return because(ErrType, "want %s, got %s", want, article(got))
}

func article(kind string) string {
	switch kind[0] {
	case 'n': // null
		return kind
	case 'a', 'e', 'i', 'o', 'u':
		return "an " + kind
	}
	return "a " + kind
}

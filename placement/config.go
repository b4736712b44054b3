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
	ErrUnknownKey  = errors.New("unknown key")                     // a key in a placement table we do not know
	ErrDuplicate   = errors.New("duplicate")                       // a key twice (JSONC), an application twice (LoadDir)
	ErrBadName     = errors.New("invalid application name")        // name missing or not a valid Worker name
	ErrConflict    = errors.New("placement options are exclusive") // two of smart, region, host, hostname
	ErrUnknownMode = errors.New("unknown placement mode")          // mode other than "smart", "targeted", "off"
	ErrNoTarget    = errors.New("placement target missing")        // mode "targeted" without region/host/hostname
	ErrBadRegion   = errors.New("invalid region")                  // not provider:region, or not in the catalogue
	ErrBadHost     = errors.New("invalid host")                    // not host:port, bad port, bad name, denied IP
	ErrBadHostname = errors.New("invalid hostname")                // scheme, path, port, bad characters, denied IP
	ErrBadHint     = errors.New("invalid hint")                    // empty, too long, spaces or non-ASCII
	ErrBadAccount  = errors.New("invalid account id")              // empty, too long, or not letters, digits, '-', '_'
)

// Config is one application's placement, read from its wrangler config.
type Config struct {
	App      string // the application's name: the config's top-level name
	Mode     Mode   // ModeNone when the config has no placement or says mode = "off"
	Region   string // ModeRegion only: a catalogue region ID, e.g. "aws:us-east-1"
	Host     string // ModeHost only: host:port, host lower-cased, IPv6 in brackets, e.g. "db.example.com:5432"
	Hostname string // ModeHostname only: lower-cased, no trailing dot, e.g. "api.example.com"
	// Hint is wrangler's optional hint beside mode "smart" (or "off"), kept as written (at most MaxHintLen
	// printable bytes, no spaces); Vantage's smart analysis places from telemetry and does not use it.
	Hint string
	// AccountID is the top-level account_id: the account that owns the application ("" when the config names
	// none). At most MaxAccountIDLen letters, digits, '-' and '_' (wrangler's are 32 hex digits).
	AccountID string
	Source    string // the file the config came from, as named to the parser
	Legacy    bool   // the placement was written as [unsafe.metadata.placement]
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

// Unwrap returns the reason.
func (e *ConfigError) Unwrap() error { return e.Err }

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

// ParseTOML parses a wrangler.toml: the top-level name and account_id (optional), and the [placement] table
//
//	[placement]
//	mode = "smart"                  # or: region = "aws:us-east-1"
//	                                #     host = "db.example.com:5432"
//	                                #     hostname = "api.example.com"
//
// or its legacy form [unsafe.metadata.placement] (same keys). mode may also be "off" (no placement) or
// "targeted" (with exactly one of region, host, hostname, which is what a hint alone means). Every other
// wrangler key (main, compatibility_date, [vars], [env.*] ...) is ignored. name names the file in errors.
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
	return p.build(doc)
}

// ParseJSONC parses a wrangler.jsonc or wrangler.json (JSON with comments and trailing commas): the top-level
// "name" and "account_id" (optional) and the "placement" object, or its legacy form "unsafe": {"metadata": {"placement": {...}}}, with the
// same keys and rules as ParseTOML. Keys are matched exactly (case-sensitively) and a key twice in one object
// is an error.
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
	return p.build(doc)
}

// LoadFile reads the wrangler config at path, choosing the format by extension: .toml, or .json / .jsonc.
func (p Parser) LoadFile(path string) (Config, error) {
	var parse func(string, []byte) (Config, error)
	switch strings.ToLower(filepath.Ext(path)) {
	case ".toml":
		parse = p.ParseTOML
	case ".json", ".jsonc":
		parse = p.ParseJSONC
	default:
		return Config{}, &ConfigError{File: path, Err: because(ErrFormat, "%s (want .toml, .json or .jsonc)", ErrFormat)}
	}
	// Stat first: opening a FIFO that happens to be named *.toml would block.
	if fi, err := os.Stat(path); err != nil {
		return Config{}, fmt.Errorf("placement: %w", err)
	} else if !fi.Mode().IsRegular() {
		return Config{}, fmt.Errorf("placement: %s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("placement: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return Config{}, fmt.Errorf("placement: read %s: %w", path, err)
	}
	return parse(path, data)
}

// LoadDir reads every file in dir (not its subdirectories) named *.toml, *.json or *.jsonc, one application
// per file, in file-name order; symbolic links are followed, directories and special files skipped. Bad input loses nothing else: the configs of the good files are returned
// together with an errors.Join of every bad file's errors. Two files naming the same application are an
// error (ErrDuplicate) on the second; the first is kept.
func (p Parser) LoadDir(dir string) ([]Config, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("placement: %w", err)
	}
	var (
		out  []Config
		errs []error
		seen = map[string]string{} // app -> file
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
				mode = fi.Mode() // else LoadFile reports the dangling link
			}
		}
		if mode.IsDir() || mode&(fs.ModeNamedPipe|fs.ModeSocket|fs.ModeDevice|fs.ModeCharDevice|fs.ModeIrregular) != 0 {
			continue // a directory or a special file that merely has a config's name
		}
		c, err := p.LoadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if first, dup := seen[c.App]; dup {
			errs = append(errs, &ConfigError{File: path, Field: "name", Value: c.App,
				Err: because(ErrDuplicate, "%s application: already defined in %s", ErrDuplicate, first)})
			continue
		}
		seen[c.App] = path
		out = append(out, c)
	}
	return out, errors.Join(errs...)
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

// rawTable is [placement] or [unsafe.metadata.placement].
type rawTable struct {
	path   string // "placement" or "unsafe.metadata.placement"
	legacy bool
	value  rawValue   // the table itself (kind tells whether it is one)
	fields []rawField // in a fixed order: known keys first, then unknown ones sorted
}

// rawDoc is a parsed config.
type rawDoc struct {
	file    string
	name    *rawValue  // nil when absent
	account *rawValue  // account_id; nil when absent
	tables  []rawTable // present ones only
	errs    []error    // problems the reader found (duplicate keys)
	table   string     // "table" or "object", for messages
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

// build validates a document and turns it into a Config.
func (p Parser) build(doc rawDoc) (Config, error) {
	errs, extra := doc.errs, 0
	if len(errs) > maxErrors {
		errs, extra = errs[:maxErrors], len(errs)-maxErrors
	}
	fail := func(field string, v *rawValue, err error) {
		if len(errs) >= maxErrors {
			extra++ // counted, not located
			return
		}
		ce := &ConfigError{File: doc.file, Field: field, Err: err}
		if v != nil {
			ce.Value = v.val
			if v.pos != nil {
				ce.Line, ce.Col = v.pos()
			}
		}
		errs = append(errs, ce)
	}
	c := Config{Source: doc.file}

	switch {
	case doc.name == nil:
		fail("name", nil, because(ErrBadName, "missing: every application needs a name"))
	default:
		if s, ok := doc.name.str(); !ok {
			fail("name", doc.name, typeError(doc.name.kind, "a string"))
		} else if err := checkAppName(s); err != nil {
			fail("name", doc.name, err)
		} else {
			c.App = s
		}
	}
	if doc.account != nil {
		if s, ok := doc.account.str(); !ok {
			fail("account_id", doc.account, typeError(doc.account.kind, "a string"))
		} else if err := CheckAccountID(s); err != nil {
			fail("account_id", doc.account, err)
		} else {
			c.AccountID = s
		}
	}

	if len(doc.tables) > 1 {
		t := doc.tables[1]
		fail(t.path, &t.value, because(ErrConflict, "set together with %s: write the placement once, in [%s]",
			doc.tables[0].path, doc.tables[0].path))
	}
	for i, t := range doc.tables {
		if t.value.kind != doc.table {
			fail(t.path, &t.value, typeError(t.value.kind, article(doc.table)))
			continue
		}
		mode, target, hint, ok := p.buildTable(t, fail)
		if i > 0 || !ok {
			continue
		}
		c.Legacy = t.legacy
		c.Mode, c.Hint = mode, hint
		switch mode {
		case ModeRegion:
			c.Region = target
		case ModeHost:
			c.Host = target
		case ModeHostname:
			c.Hostname = target
		}
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b error) int {
			la, ca := errLineCol(a)
			lb, cb := errLineCol(b)
			if la != lb {
				return la - lb
			}
			return ca - cb
		})
		if extra > 0 {
			errs = append(errs, tooMany(doc.file, extra))
		}
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// buildTable checks one placement table and returns its mode, (normalised) target and hint; ok is false when
// the table had errors, which were reported to fail.
func (p Parser) buildTable(t rawTable, fail func(string, *rawValue, error)) (mode Mode, target, hint string, ok bool) {
	ok = true
	bad := func(f *rawField, err error) {
		fail(t.path+"."+f.key, &f.rawValue, err)
		ok = false
	}
	var (
		modeField *rawField
		modeWord  string
		targets   []*rawField // region, host, hostname: exclusive
		hintField *rawField
	)
	for i := range t.fields {
		f := &t.fields[i]
		if !slices.Contains(knownKeys, f.key) {
			bad(f, because(ErrUnknownKey, "%s (want mode, region, host, hostname or hint)", ErrUnknownKey))
			continue
		}
		s, isStr := f.str()
		if !isStr {
			bad(f, typeError(f.kind, "a string"))
			if f.key != "mode" && f.key != "hint" {
				targets = append(targets, f)
			}
			continue
		}
		var (
			norm string
			err  error
		)
		switch f.key {
		case "mode":
			modeField, modeWord = f, s
			switch s {
			case "smart", "off", "targeted":
			default:
				err = because(ErrUnknownMode, "%s (want \"smart\", \"targeted\" or \"off\")", ErrUnknownMode)
			}
		case "region":
			norm, err = checkRegion(s)
		case "host":
			norm, err = p.checkHost(s)
		case "hostname":
			norm, err = p.checkHostname(s)
		case "hint":
			hintField, hint, err = f, s, checkHint(s)
		}
		if f.key != "mode" && f.key != "hint" {
			targets = append(targets, f)
			target = norm
		}
		if err != nil {
			bad(f, err)
		}
	}
	if len(targets) > 1 {
		// The first one written stands; the others conflict with it.
		slices.SortStableFunc(targets, func(a, b *rawField) int {
			la, ca := a.pos()
			lb, cb := b.pos()
			if la != lb {
				return la - lb
			}
			return ca - cb
		})
		for _, h := range targets[1:] {
			bad(h, because(ErrConflict, "set together with %s.%s: region, host and hostname are exclusive",
				t.path, targets[0].key))
		}
	}
	switch {
	case modeField != nil && (modeWord == "smart" || modeWord == "off") && len(targets) > 0:
		bad(targets[0], because(ErrConflict, "set together with mode %q: a %s is a placement of its own, "+
			"drop mode or write mode = \"targeted\"", modeWord, targets[0].key))
	case modeField != nil && modeWord == "targeted" && len(targets) == 0:
		bad(modeField, because(ErrNoTarget, "%s: mode \"targeted\" needs one of region, host or hostname", ErrNoTarget))
	case hintField != nil && modeWord != "smart" && modeWord != "off":
		bad(hintField, because(ErrConflict, "a hint goes with mode \"smart\" (or \"off\") only"))
	}
	if !ok {
		return "", "", "", false
	}
	switch {
	case len(targets) == 1:
		return Mode(targets[0].key), target, "", true
	case modeWord == "smart":
		return ModeSmart, "", hint, true
	}
	return ModeNone, "", hint, true
}

// checkHint checks a placement hint: printable ASCII without spaces, at most MaxHintLen bytes.
func checkHint(s string) error {
	if s == "" {
		return because(ErrBadHint, "%s: empty", ErrBadHint)
	}
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

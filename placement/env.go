package placement

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// How wrangler resolves an environment (wrangler's config/validation.ts, normalizeAndValidateConfig): the top
// level is always validated; the environment chosen with --env is validated too, and the others are not read.
// placement and account_id are inheritable keys: an environment that does not set one takes the top level's
// (a null one counts as not set). name is too, with "-ENV" appended. unsafe is not inheritable, so the legacy
// [unsafe.metadata.placement] of the top level does not reach environments. --env naming an environment the
// config lacks is an error when the config defines environments, and a warning (the top level, named
// NAME-ENV) when it defines none.

// collector gathers one config's errors, at most maxErrors (the rest are counted), and its warnings.
type collector struct {
	file  string
	errs  []error
	extra int
	warns []*ConfigError
}

func newCollector(file string, errs []error) *collector {
	c := &collector{file: file}
	for _, err := range errs {
		c.add(err)
	}
	return c
}

func (c *collector) add(err error) {
	if len(c.errs) >= maxErrors {
		c.extra++ // counted, not located
		return
	}
	c.errs = append(c.errs, err)
}

// at returns a ConfigError for field, located at v (when known).
func (c *collector) at(field string, v *rawValue, err error) *ConfigError {
	ce := &ConfigError{File: c.file, Field: field, Err: err}
	if v != nil {
		ce.Value = v.val
		if v.pos != nil {
			ce.Line, ce.Col = v.pos()
		}
	}
	return ce
}

func (c *collector) fail(field string, v *rawValue, err error) {
	if len(c.errs) >= maxErrors {
		c.extra++ // counted, not located
		return
	}
	c.add(c.at(field, v, err))
}

func (c *collector) warn(field string, v *rawValue, err error) {
	if len(c.warns) < maxErrors {
		c.warns = append(c.warns, c.at(field, v, err))
	}
}

func (c *collector) failed() bool { return len(c.errs) > 0 }

// err returns the errors in the order of the file, and the count of the rest.
func (c *collector) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	errs := slices.Clone(c.errs)
	slices.SortStableFunc(errs, func(a, b error) int {
		la, ca := errLineCol(a)
		lb, cb := errLineCol(b)
		return comparePos(func() (int, int) { return la, ca }, func() (int, int) { return lb, cb })
	})
	if c.extra > 0 {
		errs = append(errs, tooMany(c.file, c.extra))
	}
	return errors.Join(errs...)
}

// warnings returns the warnings as text, in the order of the file; nil when there are none.
func (c *collector) warnings() []string {
	ws := slices.Clone(c.warns)
	slices.SortStableFunc(ws, func(a, b *ConfigError) int {
		return comparePos(func() (int, int) { return a.Line, a.Col }, func() (int, int) { return b.Line, b.Col })
	})
	var out []string
	for _, w := range ws {
		if s := w.Error(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// result returns c with the collected warnings, or the errors and a zero Config.
func (col *collector) result(c Config) (Config, error) {
	if err := col.err(); err != nil {
		return Config{}, err
	}
	c.Warnings = col.warnings()
	return c, nil
}

// envKeys is what one environment (or the top level) sets itself.
type envKeys struct {
	name       string
	hasName    bool
	account    string // "" when not set, or set to ""
	place      placed
	hasPlace   bool // a placement (or its legacy form) is written, even one that places nothing
	placeTable bool // ... as [placement], which environments inherit (the legacy form is not inherited)
}

// checkEnv checks the keys e sets itself: name, account_id and its placement tables.
func (p Parser) checkEnv(col *collector, doc *rawDoc, e *rawEnv) envKeys {
	var k envKeys
	if v := e.appName; v != nil {
		if s, ok := v.str(); !ok {
			col.fail(envField(e.name, "name"), v, typeError(v.kind, "a string"))
		} else if err := checkAppName(s); err != nil {
			col.fail(envField(e.name, "name"), v, err)
		} else {
			k.name, k.hasName = s, true
		}
	}
	if v := e.account; v != nil {
		if s, ok := v.str(); !ok {
			col.fail(envField(e.name, "account_id"), v, typeError(v.kind, "a string"))
		} else if s == "" {
			col.warn(envField(e.name, "account_id"), v, errors.New("empty: ignored, as wrangler does"))
		} else if err := CheckAccountID(s); err != nil { // stricter than wrangler: an id Vantage keys data by
			col.fail(envField(e.name, "account_id"), v, err)
		} else {
			k.account = s
		}
	}
	if len(e.tables) > 1 {
		first, t := e.tables[0], e.tables[1]
		col.fail(t.path, &t.value, because(ErrConflict, "set together with %s: write the placement once, in [%s]",
			first.path, first.path))
	}
	for i, t := range e.tables {
		var (
			pl placed
			ok bool
		)
		switch {
		case t.value.kind == doc.table:
			pl, ok = p.buildTable(col, t)
		case falsy(t.value):
			// wrangler skips a placement that is false, "" or 0, and uploads none.
			col.warn(t.path, &t.value, fmt.Errorf("not %s: read as no placement, as wrangler does", article(doc.table)))
			pl, ok = placed{legacy: t.legacy}, true
		default:
			col.fail(t.path, &t.value, typeError(t.value.kind, article(doc.table)))
		}
		if i == 0 && ok {
			k.place, k.hasPlace, k.placeTable = pl, true, !t.legacy
		}
	}
	return k
}

// falsy reports whether v is false, "" or 0, which wrangler's `if (placement)` skips.
func falsy(v rawValue) bool {
	switch x := v.val.(type) {
	case bool:
		return !x
	case string:
		return x == "" && v.kind == "string"
	case int64:
		return x == 0
	case float64:
		return x == 0
	}
	return false
}

// build validates doc's top level and its environment env ("" for the top level alone) and returns env's
// Config.
func (p Parser) build(doc rawDoc, env string) (Config, error) {
	col := newCollector(doc.file, doc.errs)
	top := p.checkEnv(col, &doc, &doc.top)
	p.checkEnvTable(col, doc)
	return col.result(p.resolve(col, doc, top, env))
}

// buildAll validates doc and returns the Config of the top level and of every environment. The top level's
// errors fail them all; an environment's own errors fail that environment only.
func (p Parser) buildAll(doc rawDoc) ([]Config, error) {
	col := newCollector(doc.file, doc.errs)
	top := p.checkEnv(col, &doc, &doc.top)
	p.checkEnvTable(col, doc)
	if col.failed() {
		return nil, col.err()
	}
	var (
		out  []Config
		errs []error
	)
	for _, env := range append([]string{""}, envNames(doc)...) {
		ec := &collector{file: doc.file, warns: slices.Clone(col.warns)}
		if c, err := ec.result(p.resolve(ec, doc, top, env)); err != nil {
			errs = append(errs, err)
		} else {
			out = append(out, c)
		}
	}
	return out, errors.Join(errs...)
}

// envNames returns the names of doc's environments, in order.
func envNames(doc rawDoc) []string {
	var names []string
	for _, e := range doc.envs {
		names = append(names, e.name)
	}
	return names
}

// checkEnvTable checks that env, when present, is a table.
func (p Parser) checkEnvTable(col *collector, doc rawDoc) {
	if v := doc.envKey; v != nil && v.kind != doc.table {
		col.fail("env", v, typeError(v.kind, article(doc.table)+" of environments"))
	}
}

// resolve checks environment env of doc (nothing more for "") and returns its Config: its own keys, else the
// top level's (top, already checked).
func (p Parser) resolve(col *collector, doc rawDoc, top envKeys, env string) Config {
	c := Config{Source: doc.file, Env: env, App: top.name, AccountID: top.account}
	if top.hasPlace {
		c.Mode, c.Legacy, c.Hint = top.place.mode, top.place.legacy, top.place.hint
		c.setTarget(top.place.target)
	}
	if env == "" {
		if !top.hasName && doc.top.appName == nil {
			col.fail("name", nil, because(ErrBadName, "missing: every application needs a name"))
		}
		return c
	}
	i := slices.IndexFunc(doc.envs, func(e rawEnv) bool { return e.name == env })
	var own envKeys
	switch {
	case i < 0 && len(doc.envs) > 0:
		col.fail("env", doc.envKey, because(ErrNoEnv, "%s %q: the config defines %s", ErrNoEnv, env,
			strings.Join(envNames(doc), ", ")))
		return c
	case i < 0:
		// wrangler reads the top level as the environment, all of it (the legacy placement too), named NAME-ENV.
		col.warn("env", nil, fmt.Errorf("no environment %q in the config: the top level is read for it, "+
			"as wrangler does (add [env.%s])", env, env))
		own.place, own.hasPlace = top.place, top.hasPlace
	case doc.envs[i].value.kind != doc.table:
		e := doc.envs[i]
		col.fail(e.path, &e.value, typeError(e.value.kind, article(doc.table)))
		return c
	default:
		own = p.checkEnv(col, &doc, &doc.envs[i])
	}
	switch {
	case own.hasName:
		c.App = own.name
	case top.hasName:
		c.App = top.name + "-" + env
		if err := checkAppName(c.App); err != nil {
			col.fail(envField(env, "name"), &rawValue{val: c.App, pos: doc.top.appName.pos},
				fmt.Errorf("the top-level name and \"-%s\", as wrangler names an environment's application: %w", env, err))
		}
	default:
		col.fail(envField(env, "name"), nil, because(ErrBadName, "missing: every application needs a name "+
			"(the environment's own, or the top level's)"))
	}
	c.AccountID = cmp.Or(own.account, top.account)
	switch {
	case own.hasPlace:
		c.Mode, c.Legacy, c.Hint, c.Region, c.Host, c.Hostname = own.place.mode, own.place.legacy, own.place.hint, "", "", ""
		c.setTarget(own.place.target)
	case !top.placeTable: // the legacy form is not inherited
		c.Mode, c.Legacy, c.Hint, c.Region, c.Host, c.Hostname = ModeNone, false, "", "", "", ""
	}
	return c
}

// setTarget sets the field of c.Mode's target.
func (c *Config) setTarget(target string) {
	switch c.Mode {
	case ModeRegion:
		c.Region = target
	case ModeHost:
		c.Host = target
	case ModeHostname:
		c.Hostname = target
	}
}

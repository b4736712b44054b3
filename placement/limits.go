package placement

// Limits that keep a hostile or broken config cheap to refuse.
const (
	// maxNesting is the deepest nesting of arrays and tables/objects the parsers accept. Wrangler configs nest
	// a handful of levels; BurntSushi/toml and hujson recurse per level, and a megabyte of '[' would
	// overflow the goroutine stack (a fatal error, not a panic), so the input is scanned for depth first.
	maxNesting = 64
	// maxErrors is how many problems one file reports; the rest are counted in a last error, so that a file
	// full of bad keys gives a readable answer (and is not located key by key).
	maxErrors = 10
)

// checkNesting scans src for brackets outside strings and comments, and refuses it with a *ConfigError at the
// first bracket nested deeper than maxNesting. toml selects TOML's strings and comments ('...', """...""",
// ”'...”', #) over JSONC's ("..." only, // and /* */). The scan only guards the parsers: it need not
// understand the syntax fully, and leaves all other errors to them.
func checkNesting(file string, src []byte, toml bool) error {
	depth := 0
	for i := 0; i < len(src); i++ {
		switch c := src[i]; {
		case c == '[' || c == '{':
			depth++
			if depth > maxNesting {
				line, col := lineCol(src, i)
				return &ConfigError{File: file, Line: line, Col: col,
					Err: because(ErrSyntax, "%s: nested deeper than %d levels", ErrSyntax, maxNesting)}
			}
		case c == ']' || c == '}':
			depth = max(depth-1, 0)
		case c == '"' || toml && c == '\'':
			i = skipString(src, i, toml)
		case toml && c == '#':
			i = skipTo(src, i, "\n")
		case !toml && c == '/' && i+1 < len(src) && src[i+1] == '/':
			i = skipTo(src, i, "\n")
		case !toml && c == '/' && i+1 < len(src) && src[i+1] == '*':
			i = skipTo(src, i+2, "*/")
		}
	}
	return nil
}

// skipString returns the index of the last byte of the string starting at src[i] (a quote), or len(src).
func skipString(src []byte, i int, toml bool) int {
	q := src[i]
	escapes := q == '"'
	if toml && i+2 < len(src) && src[i+1] == q && src[i+2] == q { // multi-line
		end := skipTo(src, i+3, string([]byte{q, q, q}))
		for end+1 < len(src) && src[end+1] == q { // up to two quotes may end the content
			end++
		}
		return end
	}
	for j := i + 1; j < len(src); j++ {
		switch {
		case escapes && src[j] == '\\':
			j++
		case src[j] == q || toml && src[j] == '\n':
			return j
		}
	}
	return len(src)
}

// skipTo returns the index of the last byte of the first sep at or after src[i], or len(src).
func skipTo(src []byte, i int, sep string) int {
	for j := i; j+len(sep) <= len(src); j++ {
		if string(src[j:j+len(sep)]) == sep {
			return j + len(sep) - 1
		}
	}
	return len(src)
}

// tooMany returns the error that stands for the problems past maxErrors.
func tooMany(file string, n int) error {
	return &ConfigError{File: file, Err: because(ErrTooMany, "%s: %d more not shown", ErrTooMany, n)}
}

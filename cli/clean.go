package cli

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Terminal safety. Cards come from any synced author, and a card's text
// reaches the terminal through show, log, replay --audit, status, error
// messages... An escape sequence in it could rewrite the screen, retitle the
// window or worse. So every human-readable byte sublog writes goes through
// one filter (cleanWriter, behind App.Out and App.Err, and Clean for
// strings): control characters other than newline and tab (C0, DEL, C1),
// bidirectional overrides and invalid UTF-8 are written as visible escapes.
// Escapes use the \uXXXX form, which is also a valid escape inside a JSON
// string, so --json output stays valid JSON and means the same value.
// Protocol and file bytes (sync over stdio) use App.RawOut.

// unsafeRune reports whether r must not reach a terminal as is.
func unsafeRune(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true // bidirectional controls (reordering what is shown)
	}
	return false
}

// isClean is the fast path: nothing to escape.
func isClean(p []byte) bool {
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && n == 1 || unsafeRune(r) {
			return false
		}
		i += n
	}
	return true
}

// appendClean appends p with every unsafe rune escaped.
func appendClean(out []byte, p []byte) []byte {
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			out = fmt.Appendf(out, `\x%02x`, p[i])
		case unsafeRune(r):
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, p[i:i+n]...)
		}
		i += n
	}
	return out
}

// Clean returns s safe to print on a terminal (see above). Newlines and
// tabs are kept; CleanLine escapes them too, for one-line fields.
func Clean(s string) string {
	if isClean([]byte(s)) {
		return s
	}
	return string(appendClean(nil, []byte(s)))
}

// CleanLine is Clean for text that must stay on one line.
func CleanLine(s string) string {
	s = Clean(s)
	if strings.ContainsAny(s, "\n\t") {
		s = strings.NewReplacer("\n", `\u000a`, "\t", `\u0009`).Replace(s)
	}
	return s
}

// cleanWriter escapes what it writes (see above). It reports len(p) written
// when the escaped form was written in full.
type cleanWriter struct{ w io.Writer }

func (c cleanWriter) Write(p []byte) (int, error) {
	if isClean(p) {
		return c.w.Write(p)
	}
	if _, err := c.w.Write(appendClean(make([]byte, 0, len(p)+16), p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// summarize writes a headline and the first few items (one line each),
// then "... and N more": a listing an attacker can make long (refused
// records, unreadable cards) never floods the terminal.
func summarize(w io.Writer, headline string, items []string) {
	summarizeN(w, headline, items, len(items))
}

// summarizeN is summarize for total items of which only the first are
// given (the rest were only counted).
func summarizeN(w io.Writer, headline string, items []string, total int) {
	const shown = 5
	fmt.Fprintf(w, "%s\n", headline)
	n := min(shown, len(items))
	for _, it := range items[:n] {
		fmt.Fprintf(w, "  %s\n", CleanLine(it))
	}
	if total > n {
		fmt.Fprintf(w, "  ... and %d more\n", total-n)
	}
}

// reportUnreadable names the stored cards the command's readers skipped
// because the decoder refuses them (log.Store.Unreadable).
func (a *App) reportUnreadable(w io.Writer) {
	if a.store == nil {
		return
	}
	u := a.store.Unreadable()
	if len(u) == 0 {
		return
	}
	items := make([]string, len(u))
	for i, c := range u {
		items[i] = fmt.Sprintf("%s@%d %s: %v", c.Author, c.Seq, c.ID, c.Err)
	}
	summarize(w, fmt.Sprintf("sublog: warning: skipped %d unreadable stored card(s); the rest was read ('sublog verify' lists every one):", len(u)), items)
}

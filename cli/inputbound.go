package cli

import (
	"fmt"

	"github.com/sublog/sublog/log/card"
)

// Bounds on an append document, checked by a linear scan of its bytes
// before the YAML parser sees them. The parser's memory grows with the
// number of tokens and with the nesting depth times the size (64 KB of
// nested brackets once took 3.1 GB), so both are refused early: a card
// holds at most card.MaxBodyDepth levels and, being at most 64 KiB, fewer
// than maxInputItems items, so nothing refused here could have become a
// card. The scan over-estimates both (a bracket in a quoted string is not
// counted, one in plain text may be), so the depth it refuses is twice the
// card limit; what passes is checked exactly by card.Sign.
const (
	maxInputDepth = 2 * card.MaxDepth
	maxInputItems = card.MaxSize
)

// inputBounds returns an upper bound on the nesting depth of the YAML (or
// JSON) document src and on its number of tokens.
func inputBounds(src []byte) (depth, items int) {
	type level struct {
		col int
		seq bool
	}
	var (
		stack      []level // open block collections
		flow       int     // open [ and { (flow collections)
		dq, sq     bool    // inside a double- or single-quoted scalar
		lineStart  = true
		col        int
		valueStart = true // a [ or { here would open a flow collection
		inWord     bool
	)
	push := func(l level) {
		stack = append(stack, l)
		if d := len(stack) + flow; d > depth {
			depth = d
		}
	}
	for i := 0; i < len(src); i++ {
		if depth > maxInputDepth || items > maxInputItems {
			return depth, items // refused: no need to read on
		}
		c := src[i]
		if c == '\n' {
			lineStart, col, valueStart, inWord = true, 0, true, false
			continue
		}
		if lineStart {
			if c == ' ' {
				col++
				continue
			}
			lineStart = false
			if !dq && !sq && flow == 0 && c != '#' {
				// A line of block structure at column col: collections
				// deeper than it are closed.
				for len(stack) > 0 && stack[len(stack)-1].col > col {
					stack = stack[:len(stack)-1]
				}
				// "- " indicators open sequences, several on one line
				// nest ("- - - x"); a sequence may sit at the column of
				// the map key that holds it.
				j := i
				for j < len(src) && depth <= maxInputDepth && (src[j] == '-' || src[j] == '?') && (j+1 == len(src) || src[j+1] == ' ' || src[j+1] == '\n') {
					at := col + j - i
					top := len(stack) - 1
					if top < 0 || stack[top].col < at || !stack[top].seq {
						push(level{at, true})
					}
					items++
					j++
					for j < len(src) && src[j] == ' ' {
						j++
					}
				}
				if j > i {
					i = j - 1
					valueStart = true
					continue
				}
				if top := len(stack) - 1; top < 0 || stack[top].col < col {
					push(level{col, false})
				} else if stack[top].seq && stack[top].col == col {
					stack = stack[:top] // a key at the sequence's column: back to its map
				}
			}
		}
		switch {
		case dq:
			if c == '\\' {
				i++
			} else if c == '"' {
				dq = false
			}
			continue
		case sq:
			if c == '\'' {
				sq = false // '' is a quote and a new quote: same count
			}
			continue
		}
		switch c {
		case ' ', '\t', '\r':
			inWord = false
			continue
		case '#':
			if !inWord {
				for i < len(src) && src[i] != '\n' {
					i++
				}
				i--
				items++
				continue
			}
		case '"', '\'':
			if !inWord {
				dq, sq = c == '"', c == '\''
				items++
				inWord = true
				continue
			}
		case '[', '{':
			if flow > 0 || valueStart {
				flow++
				items++
				if d := len(stack) + flow; d > depth {
					depth = d
				}
				valueStart, inWord = true, false
				continue
			}
		case ']', '}':
			if flow > 0 {
				flow--
				items++
				valueStart, inWord = false, false
				continue
			}
		case ',':
			if flow > 0 {
				items++
				valueStart, inWord = true, false
				continue
			}
		case ':':
			if i+1 == len(src) || src[i+1] == ' ' || src[i+1] == '\n' || flow > 0 {
				items++
				valueStart, inWord = true, false
				continue
			}
		}
		if !inWord {
			items++
			inWord = true
		}
		valueStart = false
	}
	if d := len(stack) + flow; d > depth {
		depth = d
	}
	return depth, items
}

// checkInputBounds refuses a document beyond the bounds above.
func checkInputBounds(name string, src []byte) error {
	depth, items := inputBounds(src)
	switch {
	case depth > maxInputDepth:
		return fmt.Errorf("%w: %s nests more than %d levels deep (a card allows %d levels in its body)", ErrInput, name, maxInputDepth, card.MaxBodyDepth)
	case items > maxInputItems:
		return fmt.Errorf("%w: %s has more than %d items (a card is at most %d bytes)", ErrInput, name, maxInputItems, card.MaxSize)
	}
	return nil
}

// maxParseAlloc is the stated bound on what parsing an accepted append
// document allocates in all (not at once: the garbage collector frees most
// of it as it goes), measured by TestParseDocAcceptedInputBounded for the
// worst shapes the bounds let through.
const maxParseAlloc = 256 << 20

package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/spf13/cobra"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/kinds"
)

func init() { register(newAppendCmd) }

// MaxInput bounds an append document; cards themselves are at most 64 KiB.
const MaxInput = 1 << 20

// ErrInput: the document cannot become a card.
var ErrInput = errors.New("bad input document")

// Doc is one parsed YAML or JSON document given to `sublog append`.
type Doc struct {
	Name   string         // file name for messages ("-" for stdin)
	Kind   string         // the kind: field
	Fields map[string]any // every top-level field but kind
	Src    []byte
	file   *ast.File
}

// LineOf returns the line of the field at a dotted path ("spec.replicas"),
// or 0 when the document has no such field.
func (d *Doc) LineOf(path string) int {
	p, err := yaml.PathString("$." + path)
	if err != nil || d.file == nil {
		return 0
	}
	n, err := p.FilterFile(d.file)
	if err != nil || n == nil || n.GetToken() == nil {
		return 0
	}
	return n.GetToken().Position.Line
}

// Errorf is an input error naming the document, the field and its line.
func (d *Doc) Errorf(path, format string, args ...any) error {
	where := d.Name
	if l := d.LineOf(path); l > 0 {
		where = fmt.Sprintf("%s:%d", d.Name, l)
	}
	return fmt.Errorf("%w: %s: field %s: %s", ErrInput, where, path, fmt.Sprintf(format, args...))
}

// kindBuilder turns a document of one kind into a card draft (without TS and
// Net, which append fills in).
type kindBuilder func(a *App, d *Doc) (card.Draft, error)

var kindBuilders = map[string]kindBuilder{}

// registerKind installs the builder for a kind whose body has a schema.
func registerKind(kind string, b kindBuilder) { kindBuilders[kind] = b }

// sealDraft, when set (by the encryption feature), turns a draft into an
// encrypted one according to the document's visibility: and to: fields.
var sealDraft func(a *App, d *Doc, dr *card.Draft) error

// envelopeFields are top-level fields that set card fields, not the body.
var envelopeFields = map[string]bool{"kind": true, "reqs": true, "prov": true, "visibility": true, "to": true}

// controlKinds are the kinds the projections, the executor and the trust
// rule read: their bodies must be in clear (ARCHITECTURE.md, Capabilities
// and encryption), so append refuses to seal them.
var controlKinds = map[string]bool{
	card.KindIntent: true, card.KindProfile: true, card.KindGrant: true, card.KindRevoke: true,
	card.KindCRL: true, card.KindCapspec: true, card.KindObserve: true, card.KindDelegate: true,
	card.KindBundle: true,
}

var kindRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

func newAppendCmd(a *App) *cobra.Command {
	var dryRun, force bool
	c := &cobra.Command{
		Use:   "append FILE|-",
		Short: "Append one card from a YAML or JSON document; its kind: field picks the card kind",
		Long: "Append one card to this identity's log. The document's kind: field picks the card kind;\n" +
			"reqs: lists required capability IDs; every other field forms the body. Prints AUTHOR@SEQ CARD-ID.\n\n" +
			"An intent manifest is merged three ways ('sublog intent --help'): fields other identities set\n" +
			"stay, a manifest that changes nothing prints \"unchanged\" and appends nothing, and --dry-run\n" +
			"prints what it would change. A kind sublog gives no meaning to is refused unless --force\n" +
			"(a card is stored, and replicated, for good).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.force = force
			src, name, err := a.readInput(args[0])
			if err != nil {
				return rejected(err, "")
			}
			d, err := ParseDoc(name, src)
			if err != nil {
				return rejected(err, "")
			}
			if !knownKind(d.Kind) {
				msg := fmt.Sprintf("kind %q is not one sublog gives meaning to (%s, %s)", d.Kind, strings.Join(card.Kinds, ", "), kinds.KindHandoff)
				if s := closestKind(d.Kind); s != "" {
					msg += fmt.Sprintf("; did you mean %s?", s)
				}
				if !force {
					return rejected(fmt.Errorf("%w: %s", errUnknownKind, msg),
						"a card is stored and replicated for good, and nothing reads an unknown kind: fix the kind: field, or append it anyway with --force")
				}
				fmt.Fprintf(a.Err(), "sublog: warning: %s; it is stored and replicated for good, and ignored by every projection\n", msg)
			}
			if dryRun {
				if d.Kind == card.KindIntent {
					p, err := a.planIntent(d)
					if err != nil {
						return rejected(err, "")
					}
					return a.printDelta(p)
				}
				if _, err := a.draftFor(d); err != nil {
					return rejected(err, "")
				}
				if a.JSON() {
					return a.PrintJSON(map[string]any{"dry_run": true, "kind": d.Kind})
				}
				fmt.Fprintf(a.Out(), "would append a %s card (dry run: nothing appended)\n", d.Kind)
				return nil
			}
			dr, err := a.draftFor(d)
			if errors.Is(err, crdt.ErrUnchanged) {
				if a.JSON() {
					return a.PrintJSON(map[string]any{"unchanged": true})
				}
				fmt.Fprintln(a.Out(), "unchanged: the intent already says this (nothing appended)")
				return nil
			}
			if err != nil {
				return rejected(err, "")
			}
			sk, err := a.Secret()
			if err != nil {
				return rejected(err, "")
			}
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			h, _ := a.Home()
			dr.Net, dr.TS = h.Net(), a.Now().Unix()
			c, err := st.Append(sk, dr)
			if err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				return a.PrintJSON(map[string]any{"author": c.Author(), "seq": c.Seq(), "id": c.ID(), "kind": c.Kind()})
			}
			fmt.Fprintf(a.Out(), "%s@%d %s\n", c.Author(), c.Seq(), c.ID())
			return nil
		},
	}
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print what appending would do (for intent: the fields it changes) and append nothing")
	c.Flags().BoolVar(&force, "force", false, "append a kind sublog does not know, or intent for an owner that has not delegated to this identity")
	return c
}

func (a *App) readInput(arg string) ([]byte, string, error) {
	var r io.Reader
	name := arg
	if arg == "-" {
		r, name = a.In(), "<stdin>"
	} else {
		f, err := os.Open(a.Path(arg))
		if err != nil {
			return nil, arg, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxInput+1))
	if err != nil {
		return nil, name, err
	}
	if len(b) > MaxInput {
		return nil, name, fmt.Errorf("%w: %s is over %d bytes", ErrInput, name, MaxInput)
	}
	return b, name, nil
}

// ParseDoc parses one YAML (or JSON) document strictly: one document, a map
// at the top, no anchors or aliases (no expansion bombs), no duplicate keys,
// and a valid kind: field.
func ParseDoc(name string, src []byte) (*Doc, error) {
	if len(src) > MaxInput {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrInput, name, MaxInput)
	}
	if !utf8.Valid(src) {
		return nil, fmt.Errorf("%w: %s is not UTF-8 text", ErrInput, name)
	}
	if err := checkInputBounds(name, src); err != nil {
		return nil, err
	}
	f, err := parser.ParseBytes(src, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrInput, name, oneLine(yaml.FormatError(err, false, false)))
	}
	if len(f.Docs) != 1 || f.Docs[0] == nil || f.Docs[0].Body == nil {
		return nil, fmt.Errorf("%w: %s must hold exactly one document", ErrInput, name)
	}
	var bad error
	ast.Walk(visitFunc(func(n ast.Node) {
		switch n.(type) {
		case *ast.AnchorNode, *ast.AliasNode, *ast.MergeKeyNode:
			if bad == nil {
				bad = fmt.Errorf("%w: %s:%d: anchors, aliases and merge keys are not supported", ErrInput, name, n.GetToken().Position.Line)
			}
		case *ast.TagNode:
			if bad == nil {
				bad = fmt.Errorf("%w: %s:%d: YAML tags are not supported", ErrInput, name, n.GetToken().Position.Line)
			}
		}
	}), f.Docs[0].Body)
	if bad != nil {
		return nil, bad
	}
	var fields map[string]any
	if err := yaml.UnmarshalWithOptions(src, &fields); err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrInput, name, oneLine(yaml.FormatError(err, false, false)))
	}
	if fields == nil {
		return nil, fmt.Errorf("%w: %s: the document must be a map with a kind: field", ErrInput, name)
	}
	d := &Doc{Name: name, Fields: fields, Src: src, file: f}
	k, ok := fields["kind"].(string)
	switch {
	case fields["kind"] == nil:
		return nil, fmt.Errorf("%w: %s: missing kind: field (one of %s, or your own)", ErrInput, name, strings.Join(card.Kinds, ", "))
	case !ok || !kindRE.MatchString(k):
		return nil, d.Errorf("kind", "%v is not a kind (lowercase letters, digits and '-', at most 32)", fields["kind"])
	}
	d.Kind = k
	delete(fields, "kind")
	return d, nil
}

type visitFunc func(ast.Node)

func (v visitFunc) Visit(n ast.Node) ast.Visitor {
	if n != nil {
		v(n)
	}
	return v
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// draftFor builds the draft: the kind's own builder if it has one, else the
// generic one (every non-envelope field forms the body).
func (a *App) draftFor(d *Doc) (card.Draft, error) {
	var dr card.Draft
	var err error
	if b, ok := kindBuilders[d.Kind]; ok {
		dr, err = b(a, d)
	} else {
		dr, err = genericDraft(d)
	}
	if err != nil {
		return dr, err
	}
	dr.Kind = d.Kind
	if dr.Reqs == nil {
		if dr.Reqs, err = stringList(d, "reqs"); err != nil {
			return dr, err
		}
	}
	if dr.Prov == nil {
		if dr.Prov, err = stringList(d, "prov"); err != nil {
			return dr, err
		}
	}
	_, vis := d.Fields["visibility"]
	_, to := d.Fields["to"]
	if vis || to {
		if controlKinds[d.Kind] {
			field := "visibility"
			if !vis {
				field = "to"
			}
			return dr, d.Errorf(field, "a %s card cannot be sealed: every home that plans, hosts or checks trust reads %s cards in clear, so a sealed one would be stored and then ignored (leave out visibility: and to:)", d.Kind, d.Kind)
		}
		if sealDraft == nil {
			return dr, d.Errorf("visibility", "encrypted cards are not supported by this build")
		}
		if err := sealDraft(a, d, &dr); err != nil {
			return dr, err
		}
	}
	return dr, nil
}

func genericDraft(d *Doc) (card.Draft, error) {
	body := map[string]any{}
	for k, v := range d.Fields {
		if !envelopeFields[k] {
			body[k] = v
		}
	}
	dr := card.Draft{}
	if len(body) > 0 {
		dr.Body = body
	}
	return dr, nil
}

// stringList reads an optional top-level list of strings.
func stringList(d *Doc, field string) ([]string, error) {
	v, ok := d.Fields[field]
	if !ok || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, d.Errorf(field, "must be a list of capability IDs")
	}
	out := make([]string, 0, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, d.Errorf(fmt.Sprintf("%s[%d]", field, i), "must be a string")
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

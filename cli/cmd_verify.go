package cli

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/projections"
)

func init() {
	register(newVerifyCmd)
	register(newReplayCmd)
}

func newVerifyCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "verify [IDENTITY]",
		Short: "Re-verify every stored card (signatures, canonical form, chains); exit 1 naming each bad card",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			var only *key.ID
			if len(args) == 1 {
				id, err := a.identityArg(args[0], anyID)
				if err != nil {
					return err
				}
				only = &id
			}
			total, _ := st.Count()
			update, finish := a.Progress(int64(total), "verifying")
			rep, err := st.Verify(only, func(n int) { update(int64(n)) })
			finish()
			if err != nil {
				return rejected(err, "")
			}
			forks, err := st.ForkProofs()
			if err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				if rep.Problems == nil {
					rep.Problems = []sublog.Problem{}
				}
				if err := a.PrintJSON(struct {
					sublog.VerifyReport
					OK bool `json:"ok"`
				}{rep, rep.OK()}); err != nil {
					return err
				}
			} else {
				for _, p := range rep.Problems {
					if p.Author.IsZero() { // damage that names no log (a malformed key)
						fmt.Fprintf(a.Out(), "BAD  %s\n", p.Reason)
						continue
					}
					fmt.Fprintf(a.Out(), "BAD  %s@%d %s: %s\n", p.Author, p.Seq, p.ID, p.Reason)
				}
				for _, f := range forks {
					if only == nil || f.Author() == *only {
						fmt.Fprintf(a.Out(), "FORK %s at seq %d (proof stored; the log is not extended past it)\n", f.Author(), f.Seq())
					}
				}
				state := "all good"
				if !rep.OK() {
					state = fmt.Sprintf("%d bad", len(rep.Problems))
				}
				fmt.Fprintf(a.Out(), "verified %d cards in %d logs: %s\n", rep.Cards, rep.Logs, state)
				if rep.Withheld > 0 {
					fmt.Fprintf(a.Out(), "withheld: %d cards held as stubs (%d IDs proven by the next card's prev); the chains verify across them\n", rep.Withheld, rep.Proven)
				}
				if rep.Forked > 0 {
					fmt.Fprintf(a.Out(), "forked logs: %d ('sublog log --heads' names them)\n", rep.Forked)
				}
			}
			if !rep.OK() {
				return rejected(fmt.Errorf("%d problems found", len(rep.Problems)), "damage on disk: re-sync the named logs from a peer")
			}
			return nil
		},
	}
}

// until is the --until bound of replay: a seq (per log) or a time.
type until struct {
	seq uint64
	t   time.Time
}

func parseUntil(s string) (until, error) {
	if s == "" {
		return until{}, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return until{seq: n}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return until{t: t}, nil
		}
	}
	return until{}, fmt.Errorf("--until %q is neither a seq nor a time (RFC 3339, or 2006-01-02[T15:04])", s)
}

func (u until) admits(c *card.Card) bool {
	switch {
	case u.seq > 0:
		return c.Seq() <= u.seq
	case !u.t.IsZero():
		return !c.Time().After(u.t)
	}
	return true
}

func newReplayCmd(a *App) *cobra.Command {
	var audit bool
	var untilFlag string
	c := &cobra.Command{
		Use:   "replay [--audit] [--until SEQ|TIME]",
		Short: "Rebuild the projections from the logs; --audit prints the timeline with the card behind each entry",
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := parseUntil(untilFlag)
			if err != nil {
				return usage(err)
			}
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			total, _ := st.Count()
			update, finish := a.Progress(int64(total), "replaying")
			tl := projections.NewTimeline()
			ps := projections.New() // the decisions (issue 5): intent, delegation, plan
			n := int64(0)
			err = st.All(func(c *card.Card) error {
				n++
				if n%1024 == 0 {
					update(n)
				}
				if u.admits(c) {
					tl.Add(c)
					_ = ps.Add(c)
				}
				return nil
			})
			finish()
			if err != nil {
				return rejected(err, "run 'sublog verify' to find damaged cards")
			}
			forks, err := st.ForkProofs()
			if err != nil {
				return rejected(err, "")
			}
			for _, f := range forks {
				tl.MarkForked(f.Author())
			}
			sum := tl.Summary()
			if a.JSON() {
				out := map[string]any{"summary": sum}
				if audit {
					out["timeline"] = tl.Entries()
					out["decisions"], out["plan"] = auditDecisions(ps, tl, u.at(a))
				}
				return a.PrintJSON(out)
			}
			if audit {
				tw := tabwriter.NewWriter(a.Out(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tAUTHOR\tSEQ\tKIND\tCARD\tDECISION")
				for _, e := range tl.Entries() {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339), e.Author.Short(), e.Seq, e.Kind, e.ID, auditDecision(ps, e.ID, u.at(a)))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				fmt.Fprintln(a.Out())
				printAuditPlan(a.Out(), ps, u.at(a))
				fmt.Fprintln(a.Out())
			}
			kinds := make([]string, 0, len(sum.Kinds))
			for k, n := range sum.Kinds {
				kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
			}
			sort.Strings(kinds)
			fmt.Fprintf(a.Out(), "replayed %d cards in %d logs", sum.Cards, sum.Logs)
			if len(kinds) > 0 {
				fmt.Fprintf(a.Out(), " (%s)", strings.Join(kinds, ", "))
			}
			if sum.Cards > 0 {
				fmt.Fprintf(a.Out(), " from %s to %s", sum.First.Format(time.RFC3339), sum.Last.Format(time.RFC3339))
			}
			fmt.Fprintln(a.Out())
			for _, f := range sum.Forked {
				fmt.Fprintf(a.Out(), "forked log: %s\n", f)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&audit, "audit", false, "print the timeline of every card across all logs")
	c.Flags().StringVar(&untilFlag, "until", "", "replay only up to this seq (in each log) or time")
	return c
}

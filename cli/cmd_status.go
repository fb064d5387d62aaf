package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/units"
	"github.com/sublog/sublog/projections"
)

func init() {
	register(newStatusCmd)
	register(newPlanCmd)
}

func newStatusCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "status [SERVICE]",
		Short: "Desired state, observed state, the plan and intent conflicts, from the cards this home holds",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			ps, err := foldStore(a, st)
			if err != nil {
				return err
			}
			svc := ""
			if len(args) == 1 {
				svc = args[0]
			}
			desired := filterDesired(ps.Desired(), svc)
			observed := ps.Observed()
			plan := filterPlan(ps.Plan(a.Now()), svc)
			if svc != "" && len(desired) == 0 {
				return rejected(fmt.Errorf("no intent for service %q", svc), "'sublog status' lists the services with intent")
			}
			if a.JSON() {
				return a.PrintJSON(map[string]any{"desired": desired, "observed": observed, "plan": plan})
			}
			printDesired(a.Out(), desired)
			for _, d := range desired {
				// A device that wrote intent before it knew its owner made
				// a service of its own: say so, once per service.
				o, err := key.ParseID(d.Owner)
				if err != nil {
					continue
				}
				if owners, err := ownersOf(a, st, o); err == nil && len(owners) > 0 {
					fmt.Fprintf(a.Err(), "sublog: note: service %s is owned by %s, which is a device of %s: its intent there is a service of its own, not %s's (written before it was paired?); on that device, after 'sublog pair', append the manifest again (it is written for %s) and remove this one (remove: true with owner: %s)\n",
						d.Service, o.Short(), owners[0].Short(), owners[0].Short(), owners[0].Short(), o)
				}
			}
			printObserved(a.Out(), observed)
			printPlan(a.Out(), plan)
			return nil
		},
	}
}

func newPlanCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "plan",
		Short: "The actions that would move observed state towards desired state, each with its reason and cause",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			ps, err := foldStore(a, st)
			if err != nil {
				return err
			}
			plan := ps.Plan(a.Now())
			if a.JSON() {
				return a.PrintJSON(plan)
			}
			printPlan(a.Out(), plan)
			return nil
		},
	}
}

func filterDesired(ds []projections.ServiceIntent, svc string) []projections.ServiceIntent {
	if svc == "" {
		return ds
	}
	var out []projections.ServiceIntent
	for _, d := range ds {
		if d.Service == svc {
			out = append(out, d)
		}
	}
	return out
}

func filterPlan(p *projections.Plan, svc string) *projections.Plan {
	if svc == "" {
		return p
	}
	out := &projections.Plan{At: p.At, AtTime: p.AtTime, Actions: []projections.Action{}}
	for _, a := range p.Actions {
		if a.Service == svc {
			out.Actions = append(out.Actions, a)
		}
	}
	for _, u := range p.Unmet {
		if u.Service == svc {
			out.Unmet = append(out.Unmet, u)
		}
	}
	return out
}

func short(s string) string {
	if id, err := key.ParseID(s); err == nil {
		return id.Short()
	}
	if id, err := card.ParseID(s); err == nil {
		return id.Short()
	}
	if len(s) > 19 && strings.HasPrefix(s, "sha256:") {
		return s[:19]
	}
	return s
}

func shortHash(s string) string {
	if len(s) > 19 {
		return s[:19]
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printDesired(w io.Writer, ds []projections.ServiceIntent) {
	fmt.Fprintln(w, "DESIRED")
	if len(ds) == 0 {
		fmt.Fprintln(w, "  (no service intent)")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(ds) > 0 {
		fmt.Fprintln(tw, "  SERVICE\tOWNER\tSTATE\tREPLICAS\tBUNDLE\tVERSION\tCPU\tMEMORY\tPLACEMENT\tCHANGES")
	}
	for _, d := range ds {
		state := "wanted"
		if d.Removed {
			state = "removed"
		}
		var place []string
		for k, v := range d.Labels {
			place = append(place, k+"="+v)
		}
		sort.Strings(place)
		if len(d.Hosts) > 0 {
			place = append(place, fmt.Sprintf("hosts:%d", len(d.Hosts)))
		}
		if len(d.Avoid) > 0 {
			place = append(place, fmt.Sprintf("avoid:%d", len(d.Avoid)))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\n", d.Service, short(d.Owner), state, d.Replicas,
			orDash(shortHash(d.Bundle)), orDash(d.Version), units.FormatMilliCPU(uint64(d.CPU)), units.FormatBytes(uint64(d.Memory)),
			orDash(strings.Join(place, ",")), d.Changes)
	}
	tw.Flush()
	for _, d := range ds {
		for _, c := range d.Conflicts {
			fmt.Fprintf(w, "  conflict: %s/%s %s: %s won (card %s, actor %s)", d.Service, short(d.Owner), c.Path,
				crdt.ShowValue(c.Winner.Value), short(c.Winner.Tag), c.Winner.Actor[:10])
			for _, l := range c.Losers {
				v := "removed"
				if l.Value != "" {
					v = crdt.ShowValue(l.Value)
				}
				fmt.Fprintf(w, "; %s lost (card %s, actor %s)", v, short(l.Tag), l.Actor[:10])
			}
			fmt.Fprintln(w)
		}
		for _, p := range d.Problems {
			fmt.Fprintf(w, "  problem: %s: %s\n", d.Service, p)
		}
		if len(d.Pending) > 0 {
			fmt.Fprintf(w, "  pending: %s: %d intent card(s) wait for changes they depend on\n", d.Service, len(d.Pending))
		}
	}
	fmt.Fprintln(w)
}

func printObserved(w io.Writer, hs []projections.HostView) {
	fmt.Fprintln(w, "OBSERVED")
	if len(hs) == 0 {
		fmt.Fprintln(w, "  (no host has published a profile, grant or observation)")
		fmt.Fprintln(w)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  HOST\tCPU\tMEMORY\tGRANTS\tSERVICE\tSTATE\tREPORTED")
	for _, h := range hs {
		cpu, mem := "-", "-"
		if h.Profile != nil {
			cpu, mem = units.FormatMilliCPU(h.Profile.CPU), units.FormatBytes(h.Profile.Memory)
		}
		live := 0
		for _, g := range h.Grants {
			if g.RevokedBy == "" {
				live++
			}
		}
		grants := fmt.Sprintf("%d/%d", live, len(h.Grants))
		if len(h.Instances) == 0 {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t-\t-\t-\n", short(h.Host), cpu, mem, grants)
		}
		for i, in := range h.Instances {
			if i > 0 {
				fmt.Fprintf(tw, "  \t\t\t\t%s\t%s\t%s\n", in.Service, in.State, time.Unix(in.TS, 0).UTC().Format(time.RFC3339))
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", short(h.Host), cpu, mem, grants, in.Service, in.State,
				time.Unix(in.TS, 0).UTC().Format(time.RFC3339))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func printPlan(w io.Writer, p *projections.Plan) {
	fmt.Fprintln(w, "PLAN")
	if len(p.Actions) == 0 && len(p.Unmet) == 0 {
		fmt.Fprintln(w, "  (nothing to do: observed state matches desired state)")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(p.Actions) > 0 {
		fmt.Fprintln(tw, "  ACTION\tSERVICE\tHOST\tTO\tREASON\tCAUSES")
	}
	for _, a := range p.Actions {
		var cs []string
		for _, c := range a.Causes {
			cs = append(cs, fmt.Sprintf("%s %s by %s", c.Kind, short(c.Card), short(c.Author)))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", a.Action, a.Service, short(a.Host), orDash(short(a.To)), a.Reason, strings.Join(cs, "; "))
	}
	tw.Flush()
	for _, u := range p.Unmet {
		fmt.Fprintf(w, "  unmet: %s needs %d more replica(s): %s\n", u.Service, u.Missing, strings.Join(u.Reasons, "; "))
	}
}

// at is the time the audit judges grant expiry at: the --until time, or now.
func (u until) at(a *App) time.Time {
	if !u.t.IsZero() {
		return u.t
	}
	return a.Now()
}

// auditDecision is what the projections made of one card, for the audit.
func auditDecision(ps *projections.State, id card.ID, at time.Time) string {
	v := ps.Explain(id, at)
	return v.Verdict + ": " + v.Reason
}

// auditDecisions gives every card's verdict and the plan, for --json.
func auditDecisions(ps *projections.State, tl *projections.Timeline, at time.Time) ([]projections.Status, *projections.Plan) {
	var out []projections.Status
	for _, e := range tl.Entries() {
		out = append(out, ps.Explain(e.ID, at))
	}
	return out, ps.Plan(at)
}

// printAuditPlan prints the plan with, for each action, every causing card
// in full: its time, author and the authority it carried.
func printAuditPlan(w io.Writer, ps *projections.State, at time.Time) {
	p := ps.Plan(at)
	fmt.Fprintf(w, "PLAN at %s\n", at.UTC().Format(time.RFC3339))
	if len(p.Actions) == 0 {
		fmt.Fprintln(w, "  (no actions)")
	}
	for _, a := range p.Actions {
		to := ""
		if a.To != "" {
			to = " to " + a.To
		}
		fmt.Fprintf(w, "  %s %s on %s%s: %s\n", a.Action, a.Service, a.Host, to, a.Reason)
		for _, c := range a.Causes {
			fmt.Fprintf(w, "    because of %s %s at %s by %s (%s)\n", c.Kind, c.Card,
				time.Unix(c.TS, 0).UTC().Format(time.RFC3339), c.Author, c.Authority)
		}
	}
	for _, u := range p.Unmet {
		fmt.Fprintf(w, "  unmet: %s needs %d more replica(s): %s\n", u.Service, u.Missing, strings.Join(u.Reasons, "; "))
	}
}

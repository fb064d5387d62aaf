package cli

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sublog/sublog/log/home"
)

func init() {
	register(newInitCmd)
	register(newIDCmd)
}

func newInitCmd(a *App) *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "init [--name NAME]",
		Short: "Create the home (if needed) and a new identity, and print the identity",
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := a.HomeDir()
			if err != nil {
				return rejected(err, "")
			}
			_, oerr := home.Open(dir)
			created := errors.Is(oerr, home.ErrNoHome)
			h, sk, err := home.Init(dir, name, a.Rand())
			if err != nil {
				return rejected(err, "")
			}
			if name == "" {
				name = h.DefaultIdentity()
			}
			if a.JSON() {
				return a.PrintJSON(struct {
					home.Named
					Home    string `json:"home"`
					Created bool   `json:"created"`
				}{home.Named{Name: name, ID: sk.ID(), Default: name == h.DefaultIdentity()}, dir, created})
			}
			fmt.Fprintln(a.Out(), sk.ID())
			// Where and what next, on stderr: stdout is the identity alone,
			// for scripts.
			if created {
				fmt.Fprintf(a.Err(), "sublog: created the home %s with the identity %q (printed above; its secret key is in %s)\n", dir, name, filepath.Join(dir, "keys", name+".key"))
			} else {
				fmt.Fprintf(a.Err(), "sublog: added the identity %q to the home %s (use it with --as %s)\n", name, dir, name)
			}
			fmt.Fprintln(a.Err(), "sublog: next: give your identity to the peers you sync with; 'sublog trust THEIR-ID --name NAME' trusts one of theirs,")
			fmt.Fprintln(a.Err(), "sublog:       'sublog append FILE' writes a card, 'sublog up' runs this home as an instance, 'sublog --help' lists the rest")
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", "", "name of the new identity (default \"default\")")
	return c
}

func newIDCmd(a *App) *cobra.Command {
	var list bool
	c := &cobra.Command{
		Use:   "id [--as NAME] [--list]",
		Short: "Print an identity of this home (--list: all of them)",
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.Home()
			if err != nil {
				return rejected(err, "")
			}
			if list {
				ids, err := h.Identities()
				if err != nil {
					return rejected(err, "")
				}
				if a.JSON() {
					return a.PrintJSON(ids)
				}
				for _, n := range ids {
					mark := " "
					if n.Default {
						mark = "*"
					}
					fmt.Fprintf(a.Out(), "%s %-16s %s\n", mark, n.Name, n.ID)
				}
				return nil
			}
			sk, err := a.Secret()
			if err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				name := a.AsName()
				if name == "" {
					name = h.DefaultIdentity()
				}
				return a.PrintJSON(home.Named{Name: name, ID: sk.ID(), Default: name == h.DefaultIdentity()})
			}
			fmt.Fprintln(a.Out(), sk.ID())
			return nil
		},
	}
	c.Flags().BoolVar(&list, "list", false, "list every identity of the home")
	return c
}

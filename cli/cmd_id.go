package cli

import (
	"fmt"

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
			h, sk, err := home.Init(dir, name, a.Rand())
			if err != nil {
				return rejected(err, "")
			}
			if name == "" {
				name = h.DefaultIdentity()
			}
			if a.JSON() {
				return a.PrintJSON(home.Named{Name: name, ID: sk.ID(), Default: name == h.DefaultIdentity()})
			}
			fmt.Fprintln(a.Out(), sk.ID())
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

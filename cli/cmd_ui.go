package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sublog/sublog/node"
)

func init() { register(newUICmd) }

func newUICmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "ui",
		Short: "Print the link (with its access token) to the running instance's status page",
		Long: `Print the link to the status page the running instance ('sublog up') serves on
a loopback address (ui.listen in the configuration, --ui of 'sublog up'). The
link carries the page's access token: opening it sets a cookie, so the page's
own links work afterwards; without the token the page answers 401. The token
is new with every start of the instance.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var inf node.UIInfo
			if a.node != nil {
				inf = a.node.UIInfo()
			} else {
				dir, err := a.HomeDir()
				if err != nil {
					return rejected(err, "")
				}
				cl, err := node.Dial(dir)
				if err != nil {
					return rejected(err, "the status page runs with the instance: start it with 'sublog up'")
				}
				if err := cl.Get(cmd.Context(), "/ui", &inf); err != nil {
					return rejected(err, "")
				}
			}
			if !inf.Enabled {
				return rejected(errors.New("the running instance serves no status page (ui.listen is empty)"),
					"set ui.listen (for example 127.0.0.1:0) in "+node.ConfigFile+", or start it with 'sublog up --ui 127.0.0.1:0'")
			}
			if a.JSON() {
				return a.PrintJSON(inf)
			}
			fmt.Fprintln(a.Out(), inf.Link)
			return nil
		},
	}
}

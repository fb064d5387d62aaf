package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sublog/sublog/golden"
)

func init() { register(newGoldenCmd) }

func newGoldenCmd(a *App) *cobra.Command {
	g := &cobra.Command{
		Use:   "golden",
		Short: "Golden test vectors: check another implementation's vectors, or write sublog's",
	}
	g.AddCommand(&cobra.Command{
		Use:   "check DIR",
		Short: "Check every .vec file under DIR against this implementation; exit 1 on any failure",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := golden.CheckDir(a.Path(args[0]))
			if err != nil {
				return rejected(err, "vectors are files named *.vec with 'key: value' lines; see golden/vectors in the sublog source")
			}
			failed := 0
			for _, r := range res {
				if !r.OK {
					failed++
				}
			}
			if a.JSON() {
				if err := a.PrintJSON(map[string]any{"vectors": res, "failed": failed}); err != nil {
					return err
				}
			} else {
				for _, r := range res {
					if r.OK {
						fmt.Fprintf(a.Out(), "ok    %s\n", r.ID)
					} else {
						fmt.Fprintf(a.Out(), "FAIL  %s: %s\n", r.ID, r.Err)
					}
				}
				fmt.Fprintf(a.Out(), "%d vectors, %d failed\n", len(res), failed)
			}
			if failed > 0 {
				return rejected(fmt.Errorf("%d of %d vectors failed", failed, len(res)), "")
			}
			return nil
		},
	})
	g.AddCommand(&cobra.Command{
		Use:   "write DIR",
		Short: "Write sublog's own vectors into DIR (for another implementation to check)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := golden.WriteAll(a.Path(args[0])); err != nil {
				return rejected(err, "")
			}
			fmt.Fprintf(a.Out(), "wrote %d suites to %s\n", len(golden.Suites()), args[0])
			return nil
		},
	})
	return g
}

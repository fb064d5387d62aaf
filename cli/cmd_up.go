package cli

// The instance: `sublog up` runs the home as one long-lived process (the
// node package does the work), `sublog down` stops it, `sublog config`
// prints its configuration.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sublog/sublog/node"
)

func init() {
	register(newUpCmd)
	register(newDownCmd)
	register(newConfigCmd)
}

// splitList flattens repeated and comma-separated flag values.
func splitList(vs []string) []string {
	out := []string{}
	for _, v := range vs {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// upConfig is the home's config file with the flags of `up` over it.
func upConfig(a *App, cmd *cobra.Command, listen, roles []string, logFormat, logLevel string, uiListen string) (node.Config, error) {
	dir, err := a.HomeDir()
	if err != nil {
		return node.Config{}, rejected(err, "")
	}
	// A home with no configuration gets the commented defaults, so every
	// key is there to read and edit.
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		if _, err := node.WriteDefaultConfig(dir); err != nil {
			return node.Config{}, rejected(fmt.Errorf("writing the default %s: %w", node.ConfigFile, err), "")
		}
	}
	cfg, err := node.LoadConfig(dir)
	if err != nil {
		return cfg, rejected(err, "fix "+node.ConfigFile+" in the home ('sublog config --default' prints every key with its default)")
	}
	f := cmd.Flags()
	if f.Changed("listen") {
		cfg.Listen = splitList(listen)
	}
	if f.Changed("roles") {
		cfg.Roles = splitList(roles)
	}
	if f.Changed("log-format") {
		cfg.Log.Format = logFormat
	}
	if f.Changed("log-level") {
		cfg.Log.Level = logLevel
	}
	if f.Changed("ui") {
		cfg.UI.Listen = uiListen
	}
	if err := cfg.Validate(); err != nil {
		if errors.Is(err, node.ErrBadRole) {
			return cfg, usage(err)
		}
		return cfg, usage(err)
	}
	return cfg, nil
}

func newUpCmd(a *App) *cobra.Command {
	var listen, roles []string
	var logFormat, logLevel, uiListen string
	c := &cobra.Command{
		Use:   "up [--listen ADDR] [--roles host,service,signal,relay,proxy] [--log-format text|json] [--ui 127.0.0.1:PORT]",
		Short: "Run this home as one long-lived instance (foreground) until 'sublog down' or a signal",
		Long: `Run the home as one long-lived process: the only holder of its store while it
runs. Every other sublog command keeps working, through the instance's control
socket (in the home, mode 0600), with the same output and exit codes. The
instance listens for sync peers on --listen, keeps live sessions with the
identities this home trusts, follows and delegates to (reconnecting by itself),
pushes new cards to them as they are stored, and with the host role keeps the
deployed peers running, stopping one as soon as a revoke of its grant is stored.

Settings come from HOME/` + node.ConfigFile + ` ('sublog config --default' shows every key
and its default), then these flags. Roles that serve strangers (signal, relay)
run only when listed. Logs are log/slog lines on stderr. SIGINT and SIGTERM stop
it cleanly, like 'sublog down'.

The instance serves a status page on a loopback address (--ui, ui.listen; ''
for none) and prints its link with a fresh access token ('sublog ui' prints it
again); without the token the page answers 401.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := upConfig(a, cmd, listen, roles, logFormat, logLevel, uiListen)
			if err != nil {
				return err
			}
			h, err := a.Home()
			if err != nil {
				return rejected(err, "")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			n, err := node.Start(ctx, node.Options{Home: h, Config: cfg, Run: RunIn, Stderr: a.Err(), Rand: a.Rand(),
				Ready: func(inf node.Info) {
					w := a.Out()
					fmt.Fprintf(w, "sublog: up as %s (pid %d)\n", inf.ID, inf.PID)
					if len(inf.Listen) == 0 {
						fmt.Fprintf(w, "listening: nowhere (dialling out only)\n")
					}
					for _, l := range inf.Listen {
						fmt.Fprintf(w, "listening: %s\n", l)
					}
					fmt.Fprintf(w, "socket:    %s\n", inf.Socket)
					fmt.Fprintf(w, "config:    %s\n", filepath.Join(inf.Home, node.ConfigFile))
					if len(inf.Roles) == 0 {
						fmt.Fprintf(w, "roles:     none\n")
					} else {
						fmt.Fprintf(w, "roles:     %s\n", strings.Join(inf.Roles, ","))
					}
					if l := inf.UILink(); l != "" {
						fmt.Fprintf(w, "status:    %s\n", l)
					}
				}})
			if err != nil {
				if errors.Is(err, node.ErrRunning) {
					return rejected(err, "stop it with 'sublog down' first, or just use it: other commands go through it")
				}
				return rejected(err, "")
			}
			select {
			case <-ctx.Done():
			case <-n.Done():
			}
			n.Shutdown()
			return nil
		},
	}
	f := c.Flags()
	f.StringSliceVar(&listen, "listen", nil, "sync listen addresses host:port (repeatable or comma-separated; '' for none)")
	f.StringSliceVar(&roles, "roles", nil, "roles: host, service, signal, relay, proxy (comma-separated; '' for none)")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&uiListen, "ui", "127.0.0.1:0", "the status page's loopback address ('' for none)")
	return c
}

func newDownCmd(a *App) *cobra.Command {
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "down [--timeout 30s]",
		Short: "Stop this home's running instance cleanly and wait for it to end",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := a.HomeDir()
			if err != nil {
				return rejected(err, "")
			}
			cl, err := node.Dial(dir)
			if err != nil {
				return rejected(err, "start one with 'sublog up'")
			}
			pid, err := cl.Shutdown(cmd.Context(), timeout)
			if err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				return a.PrintJSON(map[string]any{"stopped": true, "pid": pid})
			}
			fmt.Fprintf(a.Out(), "sublog: instance (pid %d) stopped\n", pid)
			return nil
		},
	}
	c.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the instance to end")
	return c
}

func newConfigCmd(a *App) *cobra.Command {
	var def bool
	c := &cobra.Command{
		Use:   "config [--default]",
		Short: "Print the instance's effective configuration (the running instance's, else the home's file over the defaults)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if def {
				fmt.Fprint(a.Out(), node.DefaultYAML)
				return nil
			}
			dir, err := a.HomeDir()
			if err != nil {
				return rejected(err, "")
			}
			var cfg node.Config
			source := "file"
			if cl, err := node.Dial(dir); err == nil {
				if err := cl.Get(cmd.Context(), "/config", &cfg); err != nil {
					return rejected(err, "")
				}
				source = "running instance"
			} else if cfg, err = node.LoadConfig(dir); err != nil {
				return rejected(err, "fix "+node.ConfigFile+" in the home ('sublog config --default' prints every key with its default)")
			}
			if a.JSON() {
				return a.PrintJSON(cfg)
			}
			fmt.Fprintf(a.Out(), "# effective configuration (%s)\n%s", source, cfg.YAML())
			return nil
		},
	}
	c.Flags().BoolVar(&def, "default", false, "print the default configuration, every key commented")
	return c
}

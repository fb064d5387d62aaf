package cli

// The help of the command line: commands grouped in `sublog --help`, and an
// Examples section for every command (TestEveryCommandHasExamples).

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// helpGroups are the groups of `sublog --help`, in order.
var helpGroups = []*cobra.Group{
	{ID: "start", Title: "Getting started:"},
	{ID: "cards", Title: "Cards and logs:"},
	{ID: "services", Title: "Services and intent:"},
	{ID: "hosting", Title: "Hosting peers:"},
	{ID: "sync", Title: "Syncing and reaching peers:"},
	{ID: "instance", Title: "The instance:"},
	{ID: "other", Title: "Other:"},
}

// groupOf puts each top-level command in a group; a command not listed
// goes to "other".
var groupOf = map[string]string{
	"init": "start", "id": "start", "trust": "start", "follow": "start", "unfollow": "start",
	"append": "cards", "log": "cards", "show": "cards", "verify": "cards", "replay": "cards",
	"revoke": "cards", "crl": "cards", "caps": "cards", "capspec": "cards", "trustset": "cards",
	"golden": "cards",
	"status": "services", "plan": "services", "delegate": "services", "undelegate": "services",
	"intent": "services", "pair": "services",
	"bundle": "hosting", "grant": "hosting", "run": "hosting", "call": "hosting", "deploy": "hosting",
	"suspend": "hosting", "resume": "hosting", "move": "hosting", "remove": "hosting", "peers": "hosting",
	"blob": "hosting",
	"sync": "sync", "serve": "sync", "export": "sync", "import": "sync", "heads": "sync",
	"token": "sync", "resolve": "sync", "publish": "sync", "relay": "sync", "fetch-profile": "sync",
	"up": "instance", "down": "instance", "config": "instance", "ui": "instance",
}

// examples are the Examples sections, by command path without "sublog ".
var examples = map[string]string{
	"init":                  "sublog init\nsublog init --name work          # a second identity in the same home\nsublog --home ./lab init",
	"id":                    "sublog id\nsublog id --as work\nsublog id --list --json",
	"trust":                 "sublog trust ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u --name laptop2\nsublog trust                      # list, with petnames\nsublog trust laptop2 --remove",
	"follow":                "sublog follow ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u\nsublog follow                     # list",
	"unfollow":              "sublog unfollow laptop2",
	"append":                "sublog append note.yaml\necho '{\"kind\": \"note\", \"msg\": \"hi\"}' | sublog append -",
	"log":                   "sublog log\nsublog log laptop2 --json\nsublog log --heads",
	"show":                  "sublog show sha256:3f2a...       # full ID\nsublog show 3f2a9c1b              # a unique prefix (8+ hex digits)\nsublog show laptop2@3              # AUTHOR@SEQ, as append prints it",
	"verify":                "sublog verify\nsublog verify laptop2 --json",
	"replay":                "sublog replay\nsublog replay --audit --until 2026-12-01\nsublog replay --audit --json",
	"revoke":                "sublog revoke 3f2a9c1b --reason 'host retired'\nsublog revoke default@4 --shred",
	"crl":                   "sublog crl\nsublog crl --json",
	"crl add":               "sublog crl add 3f2a9c1b default@7",
	"caps":                  "sublog caps\nsublog caps --all --json",
	"capspec":               "sublog capspec add spec.yaml\nsublog capspec deprecate sublog/req/1.0.0",
	"capspec add":           "sublog capspec add spec.yaml\nsublog capspec add 3f2a9c1b        # a capspec card already stored",
	"capspec deprecate":     "sublog capspec deprecate sublog/req/1.0.0",
	"trustset":              "sublog trustset set team laptop2 desk\nsublog trustset list",
	"trustset set":          "sublog trustset set team laptop2 desk",
	"trustset rm":           "sublog trustset rm team",
	"trustset list":         "sublog trustset list --json",
	"golden":                "sublog golden check ./golden/vectors",
	"golden check":          "sublog golden check ./golden/vectors",
	"golden write":          "sublog golden write /tmp/vectors",
	"status":                "sublog status\nsublog status web --json",
	"plan":                  "sublog plan\nsublog plan --json",
	"delegate":              "sublog delegate laptop2\nsublog delegate laptop2 --services web,db --until 720h",
	"undelegate":            "sublog undelegate laptop2",
	"intent":                "sublog intent get web > web.yaml\nsublog intent diff web.yaml",
	"intent get":            "sublog intent get web > web.yaml   # edit it, then: sublog intent diff web.yaml; sublog append web.yaml\nsublog intent get web --owner owner",
	"intent diff":           "sublog intent diff web.yaml",
	"pair":                  "sublog delegate laptop2            # on the owner: prints a pairing token\nsublog pair sublog-pair1...         # on the device: accepts it once",
	"bundle":                "sublog bundle build ./counter\nsublog bundle inspect counter.bundle\nsublog bundle publish counter.bundle",
	"bundle build":          "sublog bundle build ./counter --out counter.bundle",
	"bundle inspect":        "sublog bundle inspect counter.bundle --json",
	"bundle publish":        "sublog bundle publish counter.bundle --as counter",
	"grant":                 "sublog grant counter.bundle --memory 64Mi --instances 2 --caps log,req\nsublog grant sha256:5e5e... --from 192.0.2.7:7411\nsublog grant counter --expires 24h   # a peer by name or identity",
	"run":                   "sublog run counter.bundle 'hello'",
	"call":                  "sublog call counter 'incr'         # a peer by its bundle name\necho incr | sublog call ybndrfg8 -   # or by a prefix of its identity",
	"deploy":                "sublog deploy counter.bundle\nsublog deploy sha256:5e5e... --from 192.0.2.7:7411\nsublog deploy --handoff counter.handoff",
	"suspend":               "sublog suspend counter",
	"resume":                "sublog resume counter",
	"remove":                "sublog remove counter",
	"move":                  "sublog move counter --to ../other-home\nsublog move counter --out counter.handoff --for hostb",
	"peers":                 "sublog peers\nsublog peers --json",
	"blob":                  "sublog blob ls\nsublog blob fetch sha256:5e5e... --from 192.0.2.7:7411\nsublog blob gc --dry-run",
	"blob ls":               "sublog blob ls --json",
	"blob put":              "sublog blob put big.bin",
	"blob fetch":            "sublog blob fetch sha256:5e5e... --from 192.0.2.7:7411",
	"blob gc":               "sublog blob gc --grace 1h --dry-run",
	"sync":                  "sublog sync 192.0.2.7:7411\nsublog sync --command 'ssh laptop sublog sync --stdio'",
	"serve":                 "sublog serve --listen 0.0.0.0:7411",
	"export":                "sublog export --out for-laptop.bundle --for laptop2\nsublog export --out all.bundle --since their-heads.json",
	"import":                "sublog import for-laptop.bundle",
	"heads":                 "sublog heads --out my-heads.json",
	"token":                 "sublog token --addr 192.0.2.7:7411 --expires 24h --qr",
	"resolve":               "sublog resolve laptop2 --token sublog1...\nsublog resolve ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u --pkarr https://relay.example --json",
	"publish":               "sublog publish --pkarr https://relay.example --addr 192.0.2.7:7411 --dry-run",
	"relay":                 "sublog relay --listen 0.0.0.0:7412",
	"fetch-profile":         "sublog fetch-profile --token sublog1...",
	"up":                    "sublog up\nsublog up --listen 0.0.0.0:7411 --roles host,service",
	"down":                  "sublog down --timeout 30s",
	"config":                "sublog config\nsublog config --default",
	"ui":                    "sublog ui                         # the status page's link, with its access token\nxdg-open \"$(sublog ui)\"",
	"completion":            "sublog completion bash > /etc/bash_completion.d/sublog\nsublog completion zsh > \"${fpath[1]}/_sublog\"\nsublog completion fish > ~/.config/fish/completions/sublog.fish",
	"completion bash":       "source <(sublog completion bash)",
	"completion zsh":        "sublog completion zsh > \"${fpath[1]}/_sublog\"",
	"completion fish":       "sublog completion fish | source",
	"completion powershell": "sublog completion powershell | Out-String | Invoke-Expression",
	"help":                  "sublog help grant",
}

// applyHelp groups the top-level commands and fills in every command's
// Examples section (indented as cobra prints it).
func applyHelp(root *cobra.Command) {
	root.AddGroup(helpGroups...)
	root.SetHelpCommandGroupID("other")
	root.SetCompletionCommandGroupID("other")
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	if comp, _, err := root.Find([]string{"completion"}); err == nil && comp != root {
		comp.Args = cobra.ArbitraryArgs
		comp.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usage(errors.New("name a shell: sublog completion bash|zsh|fish|powershell"))
			}
			return usage(fmt.Errorf("no completion for %q: sublog completion bash|zsh|fish|powershell", args[0]))
		}
	}
	for _, c := range root.Commands() {
		g, ok := groupOf[c.Name()]
		if !ok {
			g = "other"
		}
		c.GroupID = g
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		if ex, ok := examples[path]; ok && c.Example == "" {
			c.Example = "  " + strings.ReplaceAll(ex, "\n", "\n  ")
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}

// CommandPaths lists every runnable command ("grant", "blob fetch", ...),
// sorted, for tests that must cover each one.
func CommandPaths() []string {
	root := (&App{}).rootCmd()
	var out []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c != root && c.Runnable() && !c.Hidden {
			out = append(out, strings.TrimPrefix(c.CommandPath(), root.Name()+" "))
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	sort.Strings(out)
	return out
}

// Command faultylink is a userspace faulty link for the Phase 1 test bed
// (examples/phase1/bed.sh): it forwards every TCP connection accepted on
// -listen to -to, adding delay, jitter, a rate limit, loss and cuts. The
// kernels the bed runs on have no netem, and a TCP relay cannot drop bytes,
// so loss is modelled as what TCP's ends see of it (plan.go): a lost chunk
// arrives one retransmission timeout later, doubling per repeated loss, and
// holds everything behind it; too many losses in a row cut the connection.
//
// Settings change while it runs:
//
//	kill -USR1 PID   cut the link (cut-mode close: reset every connection
//	                 and refuse new ones; blackhole: nothing passes)
//	kill -USR2 PID   heal it
//	kill -HUP PID    re-read the -control file (KEY=VALUE lines: loss,
//	                 delay, jitter, rate, rto, max-retries, cut, cut-mode)
//
// Each change is logged on stderr with the settings now in force. With the
// same -seed, the same traffic meets the same faults.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, ",") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "faultylink:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("faultylink", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to accept on, HOST:PORT")
	to := fs.String("to", "", "address to forward to, HOST:PORT")
	seed := fs.Uint64("seed", 1, "seed of the fault draws")
	control := fs.String("control", "", "control file re-read on SIGHUP (KEY=VALUE lines)")
	var sets setFlags
	fs.Var(&sets, "set", "a setting KEY=VALUE (repeatable): loss=0.3 delay=200ms jitter=20ms rate=1Mi rto=200ms max-retries=6 cut=false cut-mode=close|blackhole")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" || *to == "" {
		return fmt.Errorf("-listen and -to are required")
	}
	f := DefaultFaults()
	for _, s := range sets {
		if err := f.Set(s); err != nil {
			return err
		}
	}
	if *control != "" {
		nf, err := readControl(f, *control)
		if err != nil {
			return err
		}
		f = nf
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	l := NewLink(*to, *seed, f)
	fmt.Fprintf(os.Stderr, "faultylink: %s -> %s (pid %d) %s\n", ln.Addr(), *to, os.Getpid(), f)
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sig {
			f := l.Faults()
			switch s {
			case syscall.SIGUSR1:
				f.Cut = true
			case syscall.SIGUSR2:
				f.Cut = false
			case syscall.SIGHUP:
				if *control == "" {
					fmt.Fprintln(os.Stderr, "faultylink: SIGHUP without -control: nothing to re-read")
					continue
				}
				nf, err := readControl(f, *control)
				if err != nil {
					fmt.Fprintln(os.Stderr, "faultylink: control file refused, settings unchanged:", err)
					continue
				}
				f = nf
			default:
				ln.Close()
				return
			}
			l.SetFaults(f)
			fmt.Fprintf(os.Stderr, "faultylink: %s live=%d accepted=%d refused=%d gave-up=%d forwarded=%dB\n",
				f, l.Live(), l.Accepted.Load(), l.Refused.Load(), l.GaveUp.Load(), l.Forwarded.Load())
		}
	}()
	return l.Serve(ln)
}

func readControl(base Faults, path string) (Faults, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return base, err
	}
	return Parse(base, string(b))
}

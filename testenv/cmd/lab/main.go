package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mastershrink/mastershrink/testenv"
)

const usage = `usage: lab COMMAND [flags]

  lab up     [--name N] [--masters 3] [--workers 2] [--layout seed003|kubeasz|envfile|hardway|kubespray]
             [--proxy haproxy] [--lb-hosts 0-2] [--vip]
             [--k8s v1.37.0] [--etcd v3.5.21|v3.6.x|3.4.23] [--request-timeout 10s] [--out DIR]
  lab status [--name N | --out DIR]
  lab exec   [--name N | --out DIR] HOST -- CMD [ARGS...]
  lab down   [--name N | --out DIR]

The lab runs as root. Machines are reached with 'lab exec', or over SSH from inside the lab
network namespace: ip netns exec NAME ssh -i OUT/id_ed25519 -o UserKnownHostsFile=OUT/known_hosts root@10.88.0.11
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(4)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1], os.Args[2:], os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "lab: %v\n\n%s", err, usage)
		os.Exit(4)
	case err != nil:
		fmt.Fprintf(os.Stderr, "lab: %v\n", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lab "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o testenv.Options
	fs.StringVar(&o.Name, "name", "mslab", "lab name")
	fs.StringVar(&o.OutDir, "out", "", "output folder (inventory.yaml, admin.kubeconfig, id_ed25519, known_hosts, lab.json)")
	if cmd == "up" {
		fs.IntVar(&o.Masters, "masters", 3, "masters (etcd + control plane), 1-5")
		fs.IntVar(&o.Workers, "workers", 2, "workers (nginx proxy + kwok), 0-4")
		fs.StringVar(&o.Layout, "layout", "seed003", "layout: seed003, kubeasz, envfile (flags in EnvironmentFiles, as the env-file guides), hardway (Kubernetes the hard way) or kubespray (its etcd: etcd.env, etcd's own CA, per-host certificates)")
		fs.StringVar(&o.KubernetesVersion, "k8s", "v1.37.0", "Kubernetes version")
		fs.StringVar(&o.EtcdVersion, "etcd", "v3.5.21", "etcd version (3.4.23 is Debian's package)")
		fs.DurationVar(&o.RequestTimeout, "request-timeout", 10*time.Second, "kube-apiserver --request-timeout")
		fs.StringVar(&o.Proxy, "proxy", "", "node proxy: empty for the layout's nginx, haproxy for Debian's haproxy on every node")
		fs.IntVar(&o.LBHosts, "lb-hosts", 0, "load-balancer hosts lb1, lb2 (nginx on :16443 in front of the apiservers), 0-2")
	}
	var withVIP bool
	if cmd == "up" {
		fs.BoolVar(&withVIP, "vip", false, "keepalived VIP 10.88.0.100 on the LB hosts, or on the masters (starting on the last one)")
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	o.Log = stderr
	open := func() (*testenv.Lab, error) {
		if o.OutDir != "" {
			return testenv.Open(o.OutDir)
		}
		return testenv.Open(o.Name)
	}
	switch cmd {
	case "up":
		if fs.NArg() > 0 {
			return usageError{fmt.Errorf("up takes no arguments, got %q", fs.Args())}
		}
		l, err := testenv.Up(ctx, o)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "lab %s is up\n  inventory:  %s\n  kubeconfig: %s\n  ssh key:    %s\n  known_hosts: %s\n  netns:      %s (ip netns exec %s kubectl --kubeconfig %s get nodes)\n",
			l.Name, l.Inventory, l.Kubeconfig, l.SSHKey, l.KnownHosts, l.NetNS, l.Name, l.Kubeconfig)
		if withVIP {
			kc, err := l.AddVIP(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "  VIP:        %s (kubeconfig through it: %s)\n", l.VIPFront(), kc)
		}
		return nil
	case "status":
		l, err := open()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "lab %s (layout %s, kubernetes %s, etcd %s), out %s\n", l.Name, l.Layout, l.KubernetesVersion, l.EtcdVersion, l.OutDir)
		fmt.Fprint(stdout, testenv.FormatStatus(l.Status(ctx)))
		return nil
	case "exec":
		rest := fs.Args()
		if len(rest) < 2 {
			return usageError{errors.New("exec needs HOST -- CMD")}
		}
		host, command := rest[0], rest[1:]
		if command[0] == "--" {
			command = command[1:]
		}
		if len(command) == 0 {
			return usageError{errors.New("exec needs a command after --")}
		}
		l, err := open()
		if err != nil {
			return err
		}
		out, err := l.Exec(ctx, host, command...)
		stdout.Write(out)
		if err != nil {
			return fmt.Errorf("exec on %s failed", host)
		}
		return nil
	case "down":
		l, err := open()
		if err != nil {
			// Nothing recorded: still clean whatever a crashed run of that name left.
			return testenv.Clean(o.Name, stderr)
		}
		l.Log = stderr
		return l.Down(ctx)
	default:
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

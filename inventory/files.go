package inventory

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// checkFiles reports every file on this machine the inventory names (the kubeconfig, SSH
// identity files and known_hosts files, the default ~/.ssh/known_hosts included when
// an SSH host uses it) that cannot be read, at the line that names it.
// Finding out when the first host is dialled would stop a plan halfway through observing,
// with an SSH error about one host instead of the inventory line to fix.
func (d *decoder) checkFiles(inv *Inventory, localPath func(string) string) {
	if inv.Kubeconfig != "" {
		d.checkFile("kubeconfig", localPath(inv.Kubeconfig),
			"fix kubeconfig: in the inventory (relative paths start at the inventory's folder), or copy the cluster's admin kubeconfig there")
	}
	// A cluster-wide value is checked once, at its own line, when some host goes over SSH
	// without its own value; a host's value is checked at the host's line.
	var idUsers, khUsers []Host
	for i, h := range inv.Hosts {
		if inv.SSH.Local || h.SSH.Local {
			continue
		}
		p := fmt.Sprintf("hosts[%d].ssh", i)
		if h.SSH.IdentityFile != "" {
			d.checkFile(p+".identity_file", localPath(h.SSH.IdentityFile), identityFix)
		} else {
			idUsers = append(idUsers, h)
		}
		if h.SSH.KnownHosts != "" {
			file := localPath(h.SSH.KnownHosts)
			d.checkFile(p+".known_hosts", file, knownHostsFix(inv, []Host{h}, file))
		} else {
			khUsers = append(khUsers, h)
		}
	}
	if inv.SSH.IdentityFile != "" && len(idUsers) > 0 {
		d.checkFile("ssh.identity_file", localPath(inv.SSH.IdentityFile), identityFix)
	}
	switch {
	case len(khUsers) == 0:
	case inv.SSH.KnownHosts != "":
		file := localPath(inv.SSH.KnownHosts)
		d.checkFile("ssh.known_hosts", file, knownHostsFix(inv, khUsers, file))
	default:
		// Not written, but used all the same: every SSH host key is checked against it.
		file := localPath(DefaultKnownHosts)
		if _, err := os.Stat(file); os.IsNotExist(err) {
			d.at("ssh.known_hosts", "not set, and the default %s does not exist: set ssh.known_hosts, or %s",
				file, strings.TrimPrefix(knownHostsFix(inv, khUsers, file), "fix the path, or "))
		}
	}
}

const identityFix = "fix the path (relative paths start at the inventory's folder), or drop identity_file to use the keys in ssh-agent"

// knownHostsFix is the ssh-keyscan line that creates the file for the hosts that use it.
func knownHostsFix(inv *Inventory, hosts []Host, file string) string {
	port := inv.SSH.Port
	samePort := true
	var addrs []string
	for i, h := range hosts {
		p := h.SSH.Port
		if p == 0 {
			p = inv.SSH.Port
		}
		if p == 0 {
			p = DefaultSSHPort
		}
		if i == 0 {
			port = p
		} else if p != port {
			samePort = false
		}
		if i < 3 {
			addrs = append(addrs, h.Address)
		}
	}
	if len(hosts) > 3 {
		addrs = append(addrs, "...")
	}
	cmd := "ssh-keyscan "
	if !samePort {
		cmd += "-p PORT ADDRESS"
	} else {
		if port != DefaultSSHPort {
			cmd += "-p " + strconv.Itoa(port) + " "
		}
		cmd += strings.Join(addrs, " ")
	}
	return fmt.Sprintf("fix the path, or create it with the hosts' keys: %s >> %s, and check the fingerprints", cmd, file)
}

// checkFile reports a file that is missing, a folder, or unreadable, naming the fix.
func (d *decoder) checkFile(field, file, fix string) {
	st, err := os.Stat(file)
	switch {
	case os.IsNotExist(err):
		d.at(field, "%s does not exist: %s", file, fix)
		return
	case err != nil:
		d.at(field, "%v: %s", err, fix)
		return
	case st.IsDir():
		d.at(field, "%s is a folder, want a file: %s", file, fix)
		return
	}
	f, err := os.Open(file)
	if err != nil {
		d.at(field, "%s cannot be read (%v): give this user read access, or point to a copy it can read", file, errCause(err))
		return
	}
	f.Close()
}

// errCause drops the "open PATH: " prefix the message already carries.
func errCause(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

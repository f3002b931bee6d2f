package lb

import "fmt"

// childrenCmd prints a proxy master's children, and the master itself when withMaster, one
// per line as `ps -ww -o pid=,ppid=,etimes=,args=` prints them. It reads the master's
// children list and their own /proc entries instead of running ps, because ps reads every
// process of the host whichever it prints: on a node running a hundred pods that is
// thousands of /proc entries, 20-50 ms of the node's CPU each call, and the reload wait
// asks several times a second. Where the kernel has no children list (built without
// CONFIG_PROC_CHILDREN), it is ps as before.
//
// The age is whole seconds since the process started, truncated as ps's etimes is: the
// uptime in hundredths against the start time in clock ticks.
func childrenCmd(master int, withMaster bool) string {
	return childrenOf(fmt.Sprint(master), withMaster)
}

// childrenOf is childrenCmd for a master named by a shell word: a number, or "$pid" where
// the script read it itself.
func childrenOf(master string, withMaster bool) string {
	self, selfPS := "", ""
	if withMaster {
		self, selfPS = master+" ", "-p "+master+" "
	}
	return fmt.Sprintf(`f=/proc/%[1]s/task/%[1]s/children
if [ ! -r "$f" ]; then ps -ww -o pid=,ppid=,etimes=,args= %[2]s--ppid %[1]s || true; exit 0; fi
read -r up _ < /proc/uptime; c=${up%%.*}${up#*.}; hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
kids=; read -r kids < "$f"
for p in %[3]s$kids; do
  read -r s 2>/dev/null < /proc/$p/stat || continue
  s=${s##*) }; set -- $s
  a=$(tr '\0' ' ' 2>/dev/null < /proc/$p/cmdline) || continue
  echo "$p $2 $(( (c - ${20} * 100 / hz) / 100 )) $a"
done`, master, selfPS, self)
}

// nginxWorkersOf lists an nginx master's children for the reload wait and the cut, in
// childrenCmd's columns, with no process per worker: the age column is 0 (neither needs it)
// and a worker's title is taken by the shell's own read, since nginx writes it over its
// argv as one string ("nginx: worker process is shutting down"). master is a shell word.
// Where the kernel has no children list, it is ps as in childrenCmd.
func nginxWorkersOf(master string) string {
	return fmt.Sprintf(`f=/proc/%[1]s/task/%[1]s/children
if [ ! -r "$f" ]; then ps -ww -o pid=,ppid=,etimes=,args= --ppid %[1]s || true; exit 0; fi
kids=; read -r kids < "$f"
for p in $kids; do
  a=; read -r a 2>/dev/null < /proc/$p/cmdline || [ -n "$a" ] || continue
  echo "$p %[1]s 0 $a"
done`, master)
}

// cutShuttingDown is the shell that sends SIGTERM to the nginx workers of master that are
// shutting down (still serving connections from before a reload).
func cutShuttingDown(master string) string {
	return "( " + nginxWorkersOf(master) + "\n) | while read -r p _ _ a; do case $a in *'shutting down'*) kill -TERM \"$p\" ;; esac; done"
}

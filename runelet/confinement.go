package runelet

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// confinementFields are the lines of /proc/<pid>/status that describe what the kernel lets a
// process do: its users and groups, its five capability sets, no_new_privs and seccomp.
var confinementFields = []string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
	"NoNewPrivs", "Seccomp", "Seccomp_filters"}

// confinement is a process's confinement as the kernel reports it.
type confinement struct {
	status map[string]string
	cgroup string
}

// readConfinement reads the confinement of pid ("self" for this process) from /proc.
func readConfinement(pid string) (*confinement, error) {
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return nil, err
	}
	cgroup, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		return nil, err
	}
	c := &confinement{status: map[string]string{}, cgroup: string(bytes.TrimSpace(cgroup))}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			c.status[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	for _, k := range []string{"Uid", "CapEff", "CapBnd", "NoNewPrivs", "Seccomp"} {
		if _, ok := c.status[k]; !ok {
			return nil, fmt.Errorf("/proc/%s/status has no %s line", pid, k)
		}
	}
	return c, nil
}

// differences lists, for a caller, each field in which the enclave's confinement (c) is not the
// caller's: the enclave process would get c's, not what the caller was given.
func (c *confinement) differences(caller *confinement) []string {
	var d []string
	for _, k := range confinementFields {
		if c.status[k] != caller.status[k] {
			d = append(d, fmt.Sprintf("%s %s (exec: %s)", k, orNone(c.status[k]), orNone(caller.status[k])))
		}
	}
	if c.cgroup != caller.cgroup {
		mine, theirs := cgroupLines(c.cgroup), cgroupLines(caller.cgroup)
		var cg []string
		for h, path := range mine {
			if theirs[h] != path {
				cg = append(cg, fmt.Sprintf("cgroup %s (exec: %s)", strconv.Quote(h+path), strconv.Quote(h+theirs[h])))
			}
		}
		for h, path := range theirs {
			if _, ok := mine[h]; !ok {
				cg = append(cg, fmt.Sprintf("cgroup none (exec: %s)", strconv.Quote(h+path)))
			}
		}
		sort.Strings(cg)
		d = append(d, cg...)
	}
	return d
}

// cgroupLines maps each hierarchy of /proc/<pid>/cgroup ("N:controllers:") to the path in it.
func cgroupLines(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		// "id:controllers:path"; the path may itself contain ':'.
		if f := strings.SplitN(line, ":", 3); len(f) == 3 {
			m[f[0]+":"+f[1]+":"] = f[2]
		}
	}
	return m
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

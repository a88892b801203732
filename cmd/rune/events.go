package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/types"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli"
)

var eventsCommand = cli.Command{
	Name:  "events",
	Usage: "display container events such as OOM notifications, cpu, memory, and IO usage statistics",
	ArgsUsage: `<container-id>

Where "<container-id>" is the name for the instance of the container.`,
	Description: `The events command displays information about the container. By default the
information is displayed once every 5 seconds.`,
	Flags: []cli.Flag{
		cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "set the stats collection interval"},
		cli.BoolFlag{Name: "stats", Usage: "display the container's stats then exit"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, exactArgs); err != nil {
			return err
		}
		container, err := getContainer(c)
		if err != nil {
			return err
		}
		interval := c.Duration("interval")
		if interval <= 0 {
			return errors.New("duration interval must be greater than 0")
		}
		status, err := container.Status()
		if err != nil {
			return err
		}
		if status == libcontainer.Stopped {
			return fmt.Errorf("container with id %s is not running", container.ID())
		}
		enc := json.NewEncoder(os.Stdout)
		if c.Bool("stats") {
			s, err := container.Stats()
			if err != nil {
				return err
			}
			return enc.Encode(&types.Event{Type: "stats", ID: container.ID(), Data: toEventStats(s)})
		}
		var mu sync.Mutex
		emit := func(e *types.Event) {
			mu.Lock()
			defer mu.Unlock()
			if err := enc.Encode(e); err != nil {
				logrus.Error(err)
			}
		}
		oom, err := container.NotifyOOM()
		if err != nil {
			return err
		}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case _, ok := <-oom:
				if !ok {
					// The notification channel closes when the container's cgroup goes away.
					return nil
				}
				emit(&types.Event{Type: "oom", ID: container.ID()})
			case <-tick.C:
				s, err := container.Stats()
				if err != nil {
					logrus.Error(err)
					continue
				}
				emit(&types.Event{Type: "stats", ID: container.ID(), Data: toEventStats(s)})
			}
		}
	},
}

// toEventStats maps libcontainer's statistics onto the public event schema of runc.
func toEventStats(ls *libcontainer.Stats) *types.Stats {
	cg := ls.CgroupStats
	if cg == nil {
		return nil
	}
	var s types.Stats
	s.Pids = types.Pids{Current: cg.PidsStats.Current, Limit: cg.PidsStats.Limit}
	cu := cg.CpuStats.CpuUsage
	s.CPU.Usage = types.CpuUsage{
		Total: cu.TotalUsage, Percpu: cu.PercpuUsage, PercpuKernel: cu.PercpuUsageInKernelmode,
		PercpuUser: cu.PercpuUsageInUsermode, Kernel: cu.UsageInKernelmode, User: cu.UsageInUsermode,
	}
	th := cg.CpuStats.ThrottlingData
	s.CPU.Throttling = types.Throttling{Periods: th.Periods, ThrottledPeriods: th.ThrottledPeriods, ThrottledTime: th.ThrottledTime}
	s.CPU.PSI = cg.CpuStats.PSI
	s.CPUSet = types.CPUSet(cg.CPUSetStats)
	m := cg.MemoryStats
	s.Memory = types.Memory{
		Cache: m.Cache, Usage: memoryEntry(m.Usage), Swap: memoryEntry(m.SwapUsage),
		Kernel: memoryEntry(m.KernelUsage), KernelTCP: memoryEntry(m.KernelTCPUsage), Raw: m.Stats, PSI: m.PSI,
	}
	b := cg.BlkioStats
	s.Blkio = types.Blkio{
		IoServiceBytesRecursive: blkioEntries(b.IoServiceBytesRecursive),
		IoServicedRecursive:     blkioEntries(b.IoServicedRecursive),
		IoQueuedRecursive:       blkioEntries(b.IoQueuedRecursive),
		IoServiceTimeRecursive:  blkioEntries(b.IoServiceTimeRecursive),
		IoWaitTimeRecursive:     blkioEntries(b.IoWaitTimeRecursive),
		IoMergedRecursive:       blkioEntries(b.IoMergedRecursive),
		IoTimeRecursive:         blkioEntries(b.IoTimeRecursive),
		SectorsRecursive:        blkioEntries(b.SectorsRecursive),
		PSI:                     b.PSI,
	}
	s.Hugetlb = make(map[string]types.Hugetlb, len(cg.HugetlbStats))
	for k, v := range cg.HugetlbStats {
		s.Hugetlb[k] = types.Hugetlb{Usage: v.Usage, Max: v.MaxUsage, Failcnt: v.Failcnt}
	}
	for _, ni := range ls.Interfaces {
		if ni == nil {
			continue
		}
		s.NetworkInterfaces = append(s.NetworkInterfaces, &types.NetworkInterface{
			Name: ni.Name, RxBytes: ni.RxBytes, RxPackets: ni.RxPackets, RxErrors: ni.RxErrors,
			RxDropped: ni.RxDropped, TxBytes: ni.TxBytes, TxPackets: ni.TxPackets, TxErrors: ni.TxErrors,
			TxDropped: ni.TxDropped,
		})
	}
	return &s
}

func memoryEntry(e cgroups.MemoryData) types.MemoryEntry {
	return types.MemoryEntry{Limit: e.Limit, Usage: e.Usage, Max: e.MaxUsage, Failcnt: e.Failcnt}
}

func blkioEntries(in []cgroups.BlkioStatEntry) []types.BlkioEntry {
	out := make([]types.BlkioEntry, len(in))
	for i, e := range in {
		out[i] = types.BlkioEntry{Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value}
	}
	return out
}

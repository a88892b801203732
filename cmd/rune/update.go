package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	units "github.com/docker/go-units"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/intelrdt"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli"
)

var updateCommand = cli.Command{
	Name:      "update",
	Usage:     "update container resource constraints",
	ArgsUsage: `<container-id>`,
	Flags: []cli.Flag{
		cli.StringFlag{Name: "resources, r", Usage: `path to the file containing the resources to update or '-' to read from the standard input`},
		cli.IntFlag{Name: "blkio-weight", Usage: "Specifies per cgroup weight, range is from 10 to 1000"},
		cli.StringFlag{Name: "cpu-period", Usage: "CPU CFS period to be used for hardcapping (in usecs). 0 to use system default"},
		cli.StringFlag{Name: "cpu-quota", Usage: "CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period"},
		cli.StringFlag{Name: "cpu-burst", Usage: "CPU CFS hardcap burst limit (in usecs). Allowed accumulated cpu time additionally for burst a given period"},
		cli.StringFlag{Name: "cpu-share", Usage: "CPU shares (relative weight vs. other containers)"},
		cli.StringFlag{Name: "cpu-rt-period", Usage: "CPU realtime period to be used for hardcapping (in usecs). 0 to use system default"},
		cli.StringFlag{Name: "cpu-rt-runtime", Usage: "CPU realtime hardcap limit (in usecs). Allowed cpu time in a given period"},
		cli.StringFlag{Name: "cpuset-cpus", Usage: "CPU(s) to use"},
		cli.StringFlag{Name: "cpuset-mems", Usage: "Memory node(s) to use"},
		cli.StringFlag{Name: "kernel-memory", Usage: "(obsoleted; do not use)", Hidden: true},
		cli.StringFlag{Name: "kernel-memory-tcp", Usage: "(obsoleted; do not use)", Hidden: true},
		cli.StringFlag{Name: "memory", Usage: "Memory limit (in bytes)"},
		cli.StringFlag{Name: "cpu-idle", Usage: "set cgroup SCHED_IDLE or not, 0: default behavior, 1: SCHED_IDLE"},
		cli.StringFlag{Name: "memory-reservation", Usage: "Memory reservation or soft_limit (in bytes)"},
		cli.StringFlag{Name: "memory-swap", Usage: "Total memory usage (memory + swap); set '-1' to enable unlimited swap"},
		cli.IntFlag{Name: "pids-limit", Usage: "Maximum number of pids allowed in the container"},
		cli.StringFlag{Name: "l3-cache-schema", Usage: "The string of Intel RDT/CAT L3 cache schema"},
		cli.StringFlag{Name: "mem-bw-schema", Usage: "The string of Intel RDT/MBA memory bandwidth schema"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, exactArgs); err != nil {
			return err
		}
		container, err := getContainer(c)
		if err != nil {
			return err
		}
		noCheck := false
		r := specs.LinuxResources{
			Memory:  &specs.LinuxMemory{CheckBeforeUpdate: &noCheck},
			CPU:     &specs.LinuxCPU{},
			BlockIO: &specs.LinuxBlockIO{},
			Pids:    &specs.LinuxPids{},
		}
		if in := c.String("resources"); in != "" {
			var src io.Reader = os.Stdin
			if in != "-" {
				f, err := os.Open(in)
				if err != nil {
					return err
				}
				defer f.Close()
				src = f
			}
			if err := json.NewDecoder(src).Decode(&r); err != nil {
				return fmt.Errorf("parse resources: %w", err)
			}
		} else if err := resourcesFromFlags(c, &r); err != nil {
			return err
		}
		// Decoding may have replaced the sections with nil.
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		if r.BlockIO == nil {
			r.BlockIO = &specs.LinuxBlockIO{}
		}
		if r.Pids == nil {
			r.Pids = &specs.LinuxPids{}
		}
		if r.Memory.Limit != nil && *r.Memory.Limit == -1 && r.Memory.Swap == nil {
			// An unlimited memory limit with the old swap limit would be refused by the kernel.
			zero := int64(0)
			r.Memory.Swap = &zero
		}
		if r.CPU.Idle != nil && r.CPU.Shares == nil {
			zero := uint64(0)
			r.CPU.Shares = &zero
		}
		if r.Memory.Kernel != nil || r.Memory.KernelTCP != nil { //nolint:staticcheck // still accepted, ignored
			logrus.Warn("Kernel memory settings are ignored and will be removed")
		}
		cfg := container.Config()
		res := cfg.Cgroups.Resources
		if r.BlockIO.Weight != nil {
			res.BlkioWeight = *r.BlockIO.Weight
		}
		if r.BlockIO.LeafWeight != nil {
			res.BlkioLeafWeight = *r.BlockIO.LeafWeight
		}
		for _, wd := range r.BlockIO.WeightDevice {
			res.BlkioWeightDevice = setWeightDevice(res.BlkioWeightDevice, wd)
		}
		for _, td := range r.BlockIO.ThrottleReadBpsDevice {
			res.BlkioThrottleReadBpsDevice = setThrottleDevice(res.BlkioThrottleReadBpsDevice, td)
		}
		for _, td := range r.BlockIO.ThrottleWriteBpsDevice {
			res.BlkioThrottleWriteBpsDevice = setThrottleDevice(res.BlkioThrottleWriteBpsDevice, td)
		}
		for _, td := range r.BlockIO.ThrottleReadIOPSDevice {
			res.BlkioThrottleReadIOPSDevice = setThrottleDevice(res.BlkioThrottleReadIOPSDevice, td)
		}
		for _, td := range r.BlockIO.ThrottleWriteIOPSDevice {
			res.BlkioThrottleWriteIOPSDevice = setThrottleDevice(res.BlkioThrottleWriteIOPSDevice, td)
		}
		var period uint64
		var quota int64
		if r.CPU.Period != nil {
			period = *r.CPU.Period
		}
		if r.CPU.Quota != nil {
			quota = *r.CPU.Quota
		}
		// Period and quota are set together, or whichever one was given alone.
		if (period == 0) == (quota == 0) {
			res.CpuPeriod, res.CpuQuota = period, quota
		} else if period != 0 {
			res.CpuPeriod = period
		} else {
			res.CpuQuota = quota
		}
		res.CpuBurst = r.CPU.Burst
		if r.CPU.Shares != nil {
			res.CpuShares = *r.CPU.Shares
			res.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(*r.CPU.Shares)
		}
		if r.CPU.RealtimePeriod != nil {
			res.CpuRtPeriod = *r.CPU.RealtimePeriod
		}
		if r.CPU.RealtimeRuntime != nil {
			res.CpuRtRuntime = *r.CPU.RealtimeRuntime
		}
		res.CpusetCpus = r.CPU.Cpus
		res.CpusetMems = r.CPU.Mems
		res.CPUIdle = r.CPU.Idle
		if r.Memory.Limit != nil {
			res.Memory = *r.Memory.Limit
		}
		if r.Memory.Reservation != nil {
			res.MemoryReservation = *r.Memory.Reservation
		}
		if r.Memory.Swap != nil {
			res.MemorySwap = *r.Memory.Swap
		}
		if r.Memory.CheckBeforeUpdate != nil {
			res.MemoryCheckBeforeUpdate = *r.Memory.CheckBeforeUpdate
		}
		res.PidsLimit = r.Pids.Limit
		res.Unified = r.Unified

		l3, mb := c.String("l3-cache-schema"), c.String("mem-bw-schema")
		if l3 != "" && !intelrdt.IsCATEnabled() {
			return errors.New("Intel RDT/CAT: l3 cache schema is not enabled")
		}
		if mb != "" && !intelrdt.IsMBAEnabled() {
			return errors.New("Intel RDT/MBA: memory bandwidth schema is not enabled")
		}
		if l3 != "" || mb != "" {
			if cfg.IntelRdt == nil {
				return errors.New("updating a non-existent Intel RDT configuration is not supported")
			}
			if l3 != "" {
				cfg.IntelRdt.L3CacheSchema = l3
			}
			if mb != "" {
				cfg.IntelRdt.MemBwSchema = mb
			}
		}
		// Device rules are not updatable; re-applying them would briefly deny device access.
		cfg.Cgroups.SkipDevices = true
		return container.Set(cfg)
	},
}

func resourcesFromFlags(c *cli.Context, r *specs.LinuxResources) error {
	if v := c.Int("blkio-weight"); v != 0 {
		w := uint16(v)
		r.BlockIO.Weight = &w
	}
	r.CPU.Cpus = c.String("cpuset-cpus")
	r.CPU.Mems = c.String("cpuset-mems")
	if v := c.String("cpu-idle"); v != "" {
		idle, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("invalid value for cpu-idle: %w", err)
		}
		r.CPU.Idle = &idle
	}
	for opt, dest := range map[string]**uint64{
		"cpu-burst": &r.CPU.Burst, "cpu-period": &r.CPU.Period, "cpu-rt-period": &r.CPU.RealtimePeriod, "cpu-share": &r.CPU.Shares,
	} {
		if v := c.String(opt); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return fmt.Errorf("invalid value for %s: %w", opt, err)
			}
			*dest = &n
		}
	}
	for opt, dest := range map[string]**int64{"cpu-quota": &r.CPU.Quota, "cpu-rt-runtime": &r.CPU.RealtimeRuntime} {
		if v := c.String(opt); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("invalid value for %s: %w", opt, err)
			}
			*dest = &n
		}
	}
	for opt, dest := range map[string]**int64{
		"memory": &r.Memory.Limit, "memory-swap": &r.Memory.Swap, "kernel-memory": &r.Memory.Kernel, //nolint:staticcheck
		"kernel-memory-tcp": &r.Memory.KernelTCP, "memory-reservation": &r.Memory.Reservation,
	} {
		v := c.String(opt)
		if v == "" {
			continue
		}
		n := int64(-1)
		if v != "-1" {
			var err error
			if n, err = units.RAMInBytes(v); err != nil {
				return fmt.Errorf("invalid value for %s: %w", opt, err)
			}
		}
		*dest = &n
	}
	if c.IsSet("pids-limit") {
		n := int64(c.Int("pids-limit"))
		r.Pids.Limit = &n
	}
	return nil
}

func setWeightDevice(devs []*cgroups.WeightDevice, wd specs.LinuxWeightDevice) []*cgroups.WeightDevice {
	for _, d := range devs {
		if d.Major == wd.Major && d.Minor == wd.Minor {
			if wd.Weight != nil {
				d.Weight = *wd.Weight
			}
			if wd.LeafWeight != nil {
				d.LeafWeight = *wd.LeafWeight
			}
			return devs
		}
	}
	var w, lw uint16
	if wd.Weight != nil {
		w = *wd.Weight
	}
	if wd.LeafWeight != nil {
		lw = *wd.LeafWeight
	}
	return append(devs, cgroups.NewWeightDevice(wd.Major, wd.Minor, w, lw))
}

func setThrottleDevice(devs []*cgroups.ThrottleDevice, td specs.LinuxThrottleDevice) []*cgroups.ThrottleDevice {
	for _, d := range devs {
		if d.Major == td.Major && d.Minor == td.Minor {
			d.Rate = td.Rate
			return devs
		}
	}
	return append(devs, cgroups.NewThrottleDevice(td.Major, td.Minor, td.Rate))
}

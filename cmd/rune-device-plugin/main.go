// Command rune-device-plugin is the Kubernetes device plugin that advertises a node's TEE
// capacity (SGX EPC, TDX, SEV-SNP, and rune's simulated TEE) to the kubelet and gives enclave
// containers their devices; see package deviceplugin and deploy/README.md. It stops serving
// and removes its sockets on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/inclavare-containers/inclavare-go/deviceplugin"
)

func main() {
	var cfg deviceplugin.Config
	flag.StringVar(&cfg.PluginDir, "plugin-dir", "/var/lib/kubelet/device-plugins", "the kubelet's device-plugin directory (kubelet.sock and the plugin's sockets)")
	flag.StringVar(&cfg.HostRoot, "host-root", "/", "where the node's / is mounted (sysfs, /dev and /var/run/aesmd are looked at under it)")
	flag.Int64Var(&cfg.EPCMiB, "epc-mib", 0, "EPC size in MiB to advertise instead of reading "+deviceplugin.SysfsNodeDir+"/node*/x86/sgx_total_bytes (kernels before 5.17)")
	flag.Int64Var(&cfg.MaxEPCMiB, "max-epc-mib", deviceplugin.DefaultMaxEPCMiB, "advertise at most this many MiB of EPC")
	flag.BoolVar(&cfg.SGXProvision, "sgx-provision", true, "give EPC containers the SGX provisioning device too (access to the provisioning key, for quoting without aesmd)")
	flag.BoolVar(&cfg.EPCRuntimeArgs, "epc-runtime-args", true, "annotate EPC containers with "+deviceplugin.AnnotationRuntimeArgs+"=memory=<n>M, the enclave memory limit rune passes to the enclave runtime")
	flag.IntVar(&cfg.TDXSlots, "tdx-slots", deviceplugin.DefaultSlots, "containers that may use TDX at once (0 disables "+deviceplugin.ResourceTDX+")")
	flag.IntVar(&cfg.SNPSlots, "snp-slots", deviceplugin.DefaultSlots, "containers that may use SEV-SNP at once (0 disables "+deviceplugin.ResourceSNP+")")
	flag.IntVar(&cfg.SimSlots, "sim-slots", deviceplugin.DefaultSlots, "containers that may use the simulated TEE at once (0 disables "+deviceplugin.ResourceSim+")")
	flag.DurationVar(&cfg.PollInterval, "poll-interval", deviceplugin.DefaultPollInterval, "how often to look at the TEE devices and the kubelet socket")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "rune-device-plugin: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}

	log := logrus.New()
	lvl, err := logrus.ParseLevel(*logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rune-device-plugin: -log-level: %v\n", err)
		os.Exit(2)
	}
	log.SetLevel(lvl)
	cfg.Log = log

	p, err := deviceplugin.New(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rune-device-plugin: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := p.Run(ctx); err != nil {
		log.Errorf("rune-device-plugin: %v", err)
		os.Exit(1)
	}
	log.Info("rune-device-plugin: stopped")
}

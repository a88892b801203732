package palcrash

import (
	"regexp"
	"testing"
)

const cgoCrash = `SIGSEGV: segmentation violation
PC=0x7f1c2a3b4c5d m=3 sigcode=1 addr=0x0
signal arrived during cgo execution

goroutine 7 gp=0xc000102a80 m=3 mp=0xc000080808 [syscall]:
runtime.cgocall(0x4a0140, 0xc00004ff00)
	/usr/local/go/src/runtime/cgocall.go:167 +0x4b fp=0xc00004fed8 sp=0xc00004fea0 pc=0x4795cb
github.com/inclavare-containers/inclavare-go/pal._Cfunc_palcall_pal_init_v3(0x7f1c2a3b0000, 0x1, 0x2, 0xffffffff, 0x0)
	_cgo_gotypes.go:210 +0x45 fp=0xc00004ff00 sp=0xc00004fed8 pc=0x4a0065
github.com/inclavare-containers/inclavare-go/pal.callInit(...)
	/work/main/pal/cgo.go:150 +0x4b

goroutine 1 gp=0xc000002380 m=nil [chan receive]:
github.com/inclavare-containers/inclavare-go/pal._Cfunc_palcall_pal_exec(0x1, 0x2, 0x3)
`

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name   string
		output string
		ok     bool
		want   Crash
		text   string
	}{
		{"cgo crash in pal_init v3", cgoCrash, true,
			Crash{Signal: "SIGSEGV", Description: "segmentation violation", InCgo: true, Call: "pal_init"},
			"enclave runtime crashed in pal_init: SIGSEGV: segmentation violation"},
		{"abort in v1 pal_exec", "noise before\nSIGABRT: abort\nPC=0x1 m=0 sigcode=18446744073709551610\nsignal arrived during cgo execution\n\ngoroutine 5 [syscall]:\nx/pal._Cfunc_palcall_pal_exec_v1(0x1)\n", true,
			Crash{Signal: "SIGABRT", Description: "abort", InCgo: true, Call: "pal_exec"},
			"enclave runtime crashed in pal_exec: SIGABRT: abort"},
		{"constructor crash during dlopen", "SIGBUS: bus error\nsignal arrived during cgo execution\n\ngoroutine 1 [syscall]:\nx/pal._Cfunc_palcall_dlopen(0x1)\n", true,
			Crash{Signal: "SIGBUS", Description: "bus error", InCgo: true, Call: "dlopen"},
			"enclave runtime crashed in dlopen: SIGBUS: bus error"},
		{"crash in other C code; a PAL call only in another goroutine", "SIGSEGV: segmentation violation\nsignal arrived during cgo execution\n\ngoroutine 9 [syscall]:\nmain._Cfunc_other()\n\ngoroutine 3 [syscall]:\nx/pal._Cfunc_palcall_pal_exec(0x1)\n", true,
			Crash{Signal: "SIGSEGV", Description: "segmentation violation", InCgo: true},
			"enclave runtime crashed in C code: SIGSEGV: segmentation violation"},
		{"Go crash outside cgo", "SIGILL: illegal instruction\nPC=0x1\n\ngoroutine 1 [running]:\nmain.main()\n", true,
			Crash{Signal: "SIGILL", Description: "illegal instruction"},
			"runelet crashed: SIGILL: illegal instruction"},
		{"one-line report of ReportCrashes", "init-runelet phase: pal_init\ninit-runelet: enclave runtime crashed in pal_exec: SIGSEGV: segmentation violation\n", true,
			Crash{Signal: "SIGSEGV", Description: "segmentation violation", InCgo: true, Call: "pal_exec"},
			"enclave runtime crashed in pal_exec: SIGSEGV: segmentation violation"},
		{"Go panic is not a signal crash", "panic: runtime error: invalid memory address or nil pointer dereference\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x1]\n", false, Crash{}, ""},
		{"clean output", "all fine\n", false, Crash{}, ""},
		{"empty", "", false, Crash{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := Parse([]byte(tc.output))
			if ok != tc.ok {
				t.Fatalf("Parse ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if *c != tc.want {
				t.Errorf("Parse = %+v, want %+v", *c, tc.want)
			}
			if c.Error() != tc.text {
				t.Errorf("Error() = %q, want %q", c.Error(), tc.text)
			}
		})
	}
}

var signalName = regexp.MustCompile(`^SIG[A-Z0-9]+$`)

func FuzzParse(f *testing.F) {
	f.Add([]byte(cgoCrash))
	f.Add([]byte("SIGSEGV: x\n\ngoroutine 1 [syscall]:\n._Cfunc_palcall_pal_\n"))
	f.Add([]byte("SIGSEGV: \xff\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, output []byte) {
		c, ok := Parse(output)
		if !ok {
			if c != nil {
				t.Fatal("not ok but a crash returned")
			}
			return
		}
		if !signalName.MatchString(c.Signal) || c.Description == "" || c.Error() == "" {
			t.Fatalf("implausible crash %+v", *c)
		}
	})
}

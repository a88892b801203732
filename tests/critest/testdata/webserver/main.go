// Command webserver stands in for the web server images critest runs (nginx, hostnet-nginx,
// httpd): it answers every HTTP GET with 200 and a page, and does what the specs look for in
// those images. For nginx: the process is named nginx, its command line says "master process"
// (real nginx rewrites its own argv to say so; this program runs itself again under that
// argv[0]) and its PID is in /var/run/nginx.pid. For httpd: its log says "httpd". It exits 0 on
// SIGTERM, SIGINT or SIGQUIT, as those servers do.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
)

func main() {
	name := flag.String("name", "nginx", "server name, for the log and the page")
	port := flag.Int("port", 80, "TCP port to listen on, on every address")
	pidFile := flag.String("pidfile", "", "file to write the server's PID to")
	exe := flag.String("exe", "", "this program's path in the image, run again under -title")
	title := flag.String("title", "", "argv[0] to run under")
	flag.Parse()

	if *title != "" && os.Args[0] != *title {
		// exec keeps the PID; the command line becomes the title, the process name stays the
		// file's (nginx).
		argv := append([]string{*title}, os.Args[1:]...)
		if err := syscall.Exec(*exe, argv, os.Environ()); err != nil {
			fmt.Fprintf(os.Stderr, "%s: run as %q: %v\n", *name, *title, err)
			os.Exit(1)
		}
	}
	if *pidFile != "" {
		if err := os.WriteFile(*pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", *name, err)
			os.Exit(1)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	go func() {
		<-sigs
		os.Exit(0)
	}()
	page := fmt.Sprintf("<html><body><h1>Welcome to %s!</h1></body></html>\n", *name)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains([]string{http.MethodGet, http.MethodHead}, r.Method) {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		fmt.Fprint(w, page)
	})
	addr := ":" + strconv.Itoa(*port)
	fmt.Fprintf(os.Stderr, "%s: listening on %s\n", *name, addr)
	err := http.ListenAndServe(addr, nil)
	fmt.Fprintf(os.Stderr, "%s: %v\n", *name, err)
	os.Exit(1)
}

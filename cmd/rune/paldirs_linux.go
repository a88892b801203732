package main

import (
	"os"

	"github.com/inclavare-containers/inclavare-go/enclave"
	"github.com/inclavare-containers/inclavare-go/shim/config"
)

// allowedPALDirs returns [enclave] pal_dirs of the node's configuration ($RUNE_CONFIG, else
// /etc/inclavare-containers/config.toml). The file is read only for a container that names a PAL
// library, so that no other container pays for it.
func allowedPALDirs(s *enclave.Settings) ([]string, error) {
	if _, builtin := s.Builtin(); builtin {
		return nil, nil
	}
	e, _, err := config.LoadEnclave(os.Getenv)
	if err != nil {
		return nil, err
	}
	return e.PALDirs, nil
}

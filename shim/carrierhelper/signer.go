package carrierhelper

import (
	"errors"
	"time"

	"github.com/inclavare-containers/inclavare-go/enclavemanifest"
	"github.com/inclavare-containers/inclavare-go/enclavemanifest/signservice"
	"github.com/inclavare-containers/inclavare-go/shim/config"
)

// newSigner is the signer the configuration names. It is made afresh at every create, as
// the configuration is read: a rotated key or client certificate takes effect at once.
func newSigner(s config.Signing) (enclavemanifest.Signer, error) {
	switch {
	case s.KeyFile != "":
		return enclavemanifest.LoadKeySigner(s.KeyFile)
	case s.Service != nil:
		return signservice.NewClient(signservice.ClientOptions{
			URL:            s.Service.URL,
			ClientCertFile: s.Service.ClientCert,
			ClientKeyFile:  s.Service.ClientKey,
			CACertFile:     s.Service.CACert,
			Timeout:        time.Duration(s.Service.Timeout),
		})
	case s.Ephemeral:
		return enclavemanifest.NewEphemeralSigner()
	}
	return nil, errors.New("no signer configured ([signing] key_file or [signing.service])")
}

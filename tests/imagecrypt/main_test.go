package imagecrypt

import (
	"os"
	"testing"

	"github.com/inclavare-containers/inclavare-go/tests/harness"
)

// TestMain removes the builds the harness made for this package's tests.
func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

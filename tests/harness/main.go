package harness

import (
	"os"
	"sync"
	"testing"
)

var (
	tempMu   sync.Mutex
	tempDirs []string
)

// BinaryTempDir makes a temporary directory that lives as long as the test binary (builds
// shared by its tests), which Main removes when the tests end.
func BinaryTempDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	tempMu.Lock()
	tempDirs = append(tempDirs, dir)
	tempMu.Unlock()
	return dir, nil
}

// Main runs a test package's tests (call it from TestMain) and removes every BinaryTempDir.
func Main(m *testing.M) int {
	code := m.Run()
	tempMu.Lock()
	defer tempMu.Unlock()
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
	tempDirs = nil
	return code
}
